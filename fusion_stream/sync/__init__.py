"""Synchronization policies: pure objects that turn independent streams into aligned sets.

They take ``(input_index, stamp_ns, msg)`` and return the sets each call completes; no sockets,
no clocks (the live policy is told ``now_ns``), so live, replay and tests run the same code.
:class:`SyncStage` runs them by topic name, as the sync node and the fusion node do.
"""

from fusion_stream.sync.approximate import ApproximateTimePolicy
from fusion_stream.sync.live import NewestSet, SyncReport
from fusion_stream.sync.reference import InputConfig, ReferenceWindowPolicy, SyncedSet
from fusion_stream.sync.settings import EmbeddedParams, InputParams, config_from
from fusion_stream.sync.stage import Emitted, SyncConfig, SyncInput, SyncStage
from fusion_stream.sync.stats import InputStats

__all__ = [
    "ApproximateTimePolicy",
    "EmbeddedParams",
    "Emitted",
    "InputConfig",
    "InputParams",
    "InputStats",
    "NewestSet",
    "ReferenceWindowPolicy",
    "SyncConfig",
    "SyncInput",
    "SyncReport",
    "SyncStage",
    "SyncedSet",
    "config_from",
]
