"""Synchronization policies: pure objects that turn independent streams into aligned sets.

They take ``(input_index, stamp_ns, msg)`` and return the sets each call completes; no sockets,
no clocks (the live policy is told ``now_ns``), so live, replay and tests run the same code.
"""

from fusion_stream.sync.approximate import ApproximateTimePolicy
from fusion_stream.sync.reference import InputConfig, ReferenceWindowPolicy, SyncedSet
from fusion_stream.sync.stats import InputStats

__all__ = ["ApproximateTimePolicy", "InputConfig", "InputStats", "ReferenceWindowPolicy", "SyncedSet"]
