"""Time sources: the wall clock live, a replay clock driven by bag time.

Nodes ask their clock for "now" and sleep on it, so the same timeout code follows wall time on a
vehicle and bag time in replay (where time may run faster, slower, or stop).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol


class Clock(Protocol):
    """What a node asks for the time: :class:`WallClock` live, a :class:`ReplayClock` in replay and tests."""

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


CLOCK_TOPIC = "/clock"
ENV_CLOCK = "FUSION_STREAM_CLOCK"
"""Set (to a topic, usually ``/clock``) in a node's environment: the node follows that replay
clock instead of wall time (``fusion-stream launch FILE --clock``)."""


class TopicClock(ReplayClock):
    """A replay clock set by ``ClockTick`` messages on a topic (published by ``fusion-stream
    replay --clock``), so a node's timeouts and deadlines follow bag time in another process.

    Until the first tick, time stands at 0: deadlines wait for the bag instead of expiring."""

    def __init__(self, topic: str = CLOCK_TOPIC, registry: Any = None) -> None:
        super().__init__(0)
        from fusion_stream.runtime.transport import Subscriber

        self.topic = topic
        self._sub = Subscriber(topic, registry=registry, latest=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="topic-clock", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        from fusion_stream.core.msgs import ClockTick

        while not self._stop.is_set():
            msg = self._sub.recv(timeout=0.1)
            if isinstance(msg, ClockTick):
                # a replay that loops or restarts goes back in time: follow it
                self.set(msg.stamp_ns, reset=msg.stamp_ns < self.now_ns())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sub.close()
