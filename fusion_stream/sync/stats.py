"""Per-input accounting shared by the synchronization policies.

Every message a policy receives ends exactly once as *used* (it went into at least one emitted
set) or *dropped* with a reason, or is still *pending*; ``received == used + dropped + pending``
always holds, so diagnostics and tests can prove that nothing vanished silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

# Why a message was dropped.
QUEUE_OVERFLOW: Final = "queue_overflow"
"""Its input's queue was full (a sensor faster than the others, or one input stalled)."""
UNMATCHED: Final = "unmatched"
"""No valid set can contain it (too far from every other input, or too old for any future set)."""
SUPERSEDED: Final = "superseded"
"""A better-matching message of the same input was chosen instead."""
LATE: Final = "late"
"""It arrived after the set it belonged to was emitted."""
DUPLICATE: Final = "duplicate"
"""Same input, same stamp as a message already queued."""
FUTURE: Final = "future"
"""Its stamp is implausibly far ahead of the clock (a broken sensor clock)."""
RESET: Final = "reset"
"""Discarded when the policy reset after time jumped backwards (a looping bag)."""


@dataclass
class InputStats:
    """What happened to the messages of one input."""

    received: int = 0
    used: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    out_of_order: int = 0
    """Messages whose stamp was older than the previous one's (kept, but worth a warning)."""

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def pending(self) -> int:
        return self.received - self.used - self.dropped_total
