"""The sync stage in a running node: what the sync node and the fusion node's in-process sync share.

:class:`SyncReport` turns the stage's counters into the ``sync.*`` diagnostics values and a status
(WARN while sets go partial or wrong types arrive), the same in whichever node the stage runs.

:class:`NewestSet` puts the stage in front of a consumer that may be slower than the reference
sensor (the fusion network): every message still goes into the stage, since a set needs every
message of the other inputs within its window, but of the sets emitted while the consumer was busy
only the newest waits for it; the older ones are counted as skipped. A late detection is worth
less than a fresh one, and a queue behind a slow model only grows.

What came in while the model ran is read afterwards, publisher by publisher (ZeroMQ takes its
queues round-robin, not in arrival order): a sweep read before a camera frame that came earlier
would close that frame's set without it. So the messages read together are offered in the order
they came, each with the time it came, and are judged as the sync node, never busy for long,
would have judged them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fusion_stream.core import msgs
from fusion_stream.sync.stage import Emitted, SyncStage


def arrival_ns(now_ns: int, waited_ns: int, cap_ns: int) -> int:
    """When a message that has ``waited_ns`` (wall clock, since it was published) in the socket
    arrived, on the clock that reads ``now_ns``; ``waited_ns`` is clamped to [0, ``cap_ns``], as
    another host's clock may be off."""
    return now_ns - min(max(0, waited_ns), cap_ns)


class SyncReport:
    """The stage's diagnostics values and status, per diagnostics window."""

    def __init__(self, stage: SyncStage) -> None:
        self.stage = stage
        self._latency_ns: list[int] = []
        self._sets = 0
        self._partial = 0
        self._reported_wrong = 0

    def emitted(self, e: Emitted, now_ns: int) -> None:
        """Count a set the stage emitted at ``now_ns`` (wall clock, like its arrival times)."""
        self._latency_ns.append(now_ns - e.last_arrival_ns)
        self._sets += 1
        self._partial += bool(e.frame.missing)

    def report(self) -> tuple[dict[str, msgs.ScalarValue], msgs.Level, str]:
        """Values, level and message for this window (which starts over)."""
        values = self.stage.diagnostics()
        lat = sorted(self._latency_ns)
        values["sync.added_latency_ms_p50"] = round(lat[len(lat) // 2] / 1e6, 3) if lat else 0.0
        values["sync.added_latency_ms_max"] = round(lat[-1] / 1e6, 3) if lat else 0.0
        wrong = sum(self.stage.wrong_type.values())
        problems = []
        if wrong > self._reported_wrong:  # logged once per input and type: the status says it goes on
            inputs = sorted({name for name, _ in self.stage.wrong_type})
            problems.append(f"{wrong - self._reported_wrong} messages of a wrong type on {', '.join(inputs)}")
            self._reported_wrong = wrong
        if self._partial:
            problems.append(f"{self._partial} of {self._sets} sets partial")
        self._latency_ns.clear()
        self._sets = self._partial = 0
        return values, (msgs.Level.WARN if problems else msgs.Level.OK), "; ".join(problems)


class NewestSet:
    """The stage feeding a consumer that takes one set at a time and may fall behind.

    ``on_set`` sees every emitted set as it is emitted (to publish it, say); :meth:`take` gives the
    newest one not yet taken, and the sets it passes over are counted in :attr:`skipped`."""

    def __init__(
        self,
        stage: SyncStage,
        now_ns: Callable[[], int],
        on_set: Callable[[Emitted], None] | None = None,
    ) -> None:
        self.stage = stage
        self.report = SyncReport(stage)
        self.skipped = 0
        """Sets emitted while the consumer was busy and passed over for a newer one."""
        self._now_ns = now_ns
        self._on_set = on_set
        self._newest: Emitted | None = None
        self._read: list[tuple[int, int, str, msgs.Message]] = []
        self._read_since = 0.0

    def add(self, topic: str, msg: msgs.Message, arrival_ns: int) -> None:
        """A message read from an input ``topic`` that arrived at ``arrival_ns`` (on the clock the
        stage runs on); it goes to the stage at the next :meth:`flush`."""
        if not self._read:
            self._read_since = time.monotonic()
        self._read.append((arrival_ns, len(self._read), topic, msg))

    def backlog_s(self) -> float:
        """How long the oldest message read but not offered yet has been held (0: none)."""
        return time.monotonic() - self._read_since if self._read else 0.0

    def flush(self) -> None:
        """Offer what was read since the last flush, in the order it arrived."""
        read, self._read = sorted(self._read, key=lambda r: r[:2]), []
        for arrival, _, topic, msg in read:
            self._keep(self.stage.offer(topic, msg, arrival))

    def poll(self, now_ns: int) -> None:
        """Offer what was read, then emit the sets whose deadline passed by ``now_ns``."""
        self.flush()
        self._keep(self.stage.poll(now_ns))

    @property
    def ready(self) -> bool:
        return self._newest is not None

    def take(self) -> Emitted | None:
        """The newest emitted set not taken yet, or None."""
        e, self._newest = self._newest, None
        return e

    def _keep(self, emitted: list[Emitted]) -> None:
        for e in emitted:
            self.report.emitted(e, self._now_ns())
            if self._on_set is not None:
                self._on_set(e)
            if self._newest is not None:
                self.skipped += 1
            self._newest = e
