"""Time sources: the wall clock live, a replay clock driven by bag time.

Nodes ask their clock for "now" and sleep on it, so the same timeout code follows wall time on a
vehicle and bag time in replay (where time may run faster, slower, or stop).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Current time, integer nanoseconds since the Unix epoch (or bag time)."""
        ...

    def sleep_until(self, t_ns: int, stop: threading.Event | None = None) -> bool:
        """Block until ``now_ns() >= t_ns``; False if ``stop`` was set first."""
        ...


class WallClock:
    """System time (``CLOCK_REALTIME``): what sensor stamps are compared with live."""

    def now_ns(self) -> int:
        return time.time_ns()

    def sleep_until(self, t_ns: int, stop: threading.Event | None = None) -> bool:
        while True:
            remaining = (t_ns - time.time_ns()) / 1e9
            if remaining <= 0:
                return True
            if stop is None:
                time.sleep(remaining)
            elif stop.wait(remaining):
                return False


class ReplayClock:
    """Time set by whoever replays a bag; it only moves when told to.

    ``set(t)`` with ``t`` earlier than now is refused unless ``reset=True`` (a looping bag), so
    consumers never see time go backwards by accident.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._cond = threading.Condition()

    def now_ns(self) -> int:
        with self._cond:
            return self._now

    def set(self, t_ns: int, *, reset: bool = False) -> None:
        with self._cond:
            if t_ns < self._now and not reset:
                raise ValueError(f"replay clock cannot go back from {self._now} to {t_ns} without reset=True")
            self._now = t_ns
            self._cond.notify_all()

    def sleep_until(self, t_ns: int, stop: threading.Event | None = None) -> bool:
        with self._cond:
            while self._now < t_ns:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.05)
            return True
