"""What this process costs: CPU share and resident memory, for each node's ``/diagnostics``.

Read from the kernel's own accounting (``os.times`` and ``/proc/self/statm``), so it costs a few
microseconds per report and needs no third-party package.
"""

from __future__ import annotations

import os
import resource
import time
from collections import deque
from pathlib import Path
from typing import Final

from fusion_stream.errors import ParamError

_PAGE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATM: Final = Path("/proc/self/statm")


def rss_bytes() -> int:
    """Resident memory now (Linux), else the peak so far (``ru_maxrss``)."""
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CpuMeter:
    """CPU time of every thread of this process, as a percentage of one core since the last call."""

    def __init__(self) -> None:
        self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        t = os.times()
        return time.monotonic(), t.user + t.system

    def percent(self) -> float:
        wall0, cpu0 = self._last
        self._last = wall1, cpu1 = self._now()
        return 100.0 * (cpu1 - cpu0) / max(wall1 - wall0, 1e-6)


class RateWatch:
    """Whether a publisher keeps its nominal rate, judged over a sliding window (default 5 s).

    A one-second window misjudges a 15 Hz source by the phase of its frames alone (14 or 16 in a
    second); five seconds give a stable figure without hiding a real shortfall for long."""

    def __init__(self, nominal_hz: float, *, window_s: float = 5.0, tolerance: float = 0.9) -> None:
        if nominal_hz <= 0:
            raise ParamError("nominal_hz", f"a nominal rate must be > 0 Hz, got {nominal_hz}")
        self.nominal_hz = nominal_hz
        self.window_s = window_s
        self.tolerance = tolerance
        self._marks: deque[tuple[float, int]] = deque()

    def add(self, now_s: float, sent: int) -> float | None:
        """Record the publisher's total count at ``now_s``; the windowed rate once a window is full."""
        self._marks.append((now_s, sent))
        while len(self._marks) > 2 and now_s - self._marks[1][0] >= self.window_s:
            self._marks.popleft()
        t0, n0 = self._marks[0]
        if now_s - t0 < self.window_s * 0.95 or sent == 0:
            return None
        return (sent - n0) / (now_s - t0)

    def short(self, rate_hz: float | None) -> bool:
        return rate_hz is not None and rate_hz < self.tolerance * self.nominal_hz
