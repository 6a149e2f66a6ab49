"""The node runtime: one process, its publishers and subscribers, timers, diagnostics, shutdown.

A node module builds a :class:`Node`, attaches callbacks with :meth:`Node.subscribe` and
:meth:`Node.timer`, and calls :meth:`Node.spin`. The runtime then

* polls every subscriber in one loop and calls its callback per message (a callback that raises
  is logged with its traceback, counted, and the node keeps running);
* publishes a :class:`~fusion_stream.core.msgs.Diagnostics` on ``/diagnostics`` every second: rates,
  drops, malformed frames, backlog and callback latency per topic, the process's CPU % and RSS,
  and WARN when a source publishes below 90 % of its nominal rate or skips frames;
* never goes silent while alive: messages are handled in batches of at most 50 ms, so timers and
  reports get their turn, and while one callback runs longer than 1.5 report periods a watchdog
  thread sends a "busy" heartbeat of its own (``busy_s``, ``busy_in``), so the supervisor can
  tell a slow node from a hung one;
* stops cleanly on SIGINT/SIGTERM: sockets closed, registry entries removed, within 2 s.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final

import zmq

from fusion_stream.core import msgs
from fusion_stream.core.wire import Envelope
from fusion_stream.errors import ParamError
from fusion_stream.runtime.clock import Clock, WallClock
from fusion_stream.runtime.procstats import CpuMeter, RateWatch, rss_bytes
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.security import CurveKeys
from fusion_stream.runtime.transport import Publisher, Subscriber

DIAGNOSTICS_TOPIC: Final = "/diagnostics"
"""Where every node publishes its health reports (and the supervisor listens for heartbeats)."""
_MAX_POLL_S: Final = 0.1  # upper bound on how late a stop request is noticed
_MAX_BATCH: Final = 64  # messages handled per subscriber per wake-up, for fairness
_MAX_BATCH_NS: Final = 50_000_000  # ... and at most this long, so timers and reports get their turn

Callback = Callable[[Envelope], None]


@dataclass
class _Window:
    """Per-topic counters since the last diagnostics report."""

    handled: int = 0
    backlog_max: int = 0
    proc_ns: list[int] = field(default_factory=list)
    transit_ns: list[int] = field(default_factory=list)


@dataclass
class _Subscription:
    sub: Subscriber
    callback: Callback
    label: str
    window: _Window = field(default_factory=_Window)
    last_malformed: int = 0
    last_lost: int = 0
    receive_errors: int = 0


@dataclass
class _Watched:
    """A publisher with a nominal rate (a sensor) and, optionally, a count of skipped frames."""

    pub: Publisher
    rate: RateWatch | None
    skipped: Callable[[], int] | None
    last_skipped: int = 0


@dataclass
class _Timer:
    period_ns: int
    callback: Callable[[], None]
    next_ns: int
    phase_ns: int | None = None


def _next_on_grid(now_ns: int, period_ns: int, phase_ns: int) -> int:
    """The first time after ``now_ns`` that is ≡ ``phase_ns`` (mod ``period_ns``)."""
    return now_ns + period_ns - (now_ns - phase_ns) % period_ns


def _pct(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] / 1e6


class Node:
    """A running node. Create publishers and subscriptions through it so they are reported."""

    def __init__(
        self,
        name: str,
        *,
        clock: Clock | None = None,
        registry: Registry | None = None,
        diagnostics_period_s: float = 1.0,
        handle_signals: bool = True,
        remap: Mapping[str, str] | None = None,
        parent_pid: int | None = None,
        binds: Mapping[str, str] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        if not name or "/" in name:
            raise ParamError("name", f"invalid node name {name!r}: it must be non-empty and without '/'")
        self.name = name
        self.remap = dict(remap or {})
        self.binds = dict(binds or {})
        """Topic → TCP endpoint to bind as well, for subscribers on other hosts (multi-host graphs)."""
        self.curve = curve
        self._parent_pid = parent_pid
        self._next_parent_check = 0.0
        self.clock: Clock = clock or WallClock()
        self.registry = registry or Registry()
        self.log = logging.getLogger(f"fusion_stream.runtime.node.{name}")
        self.stop_event = threading.Event()
        self.errors = 0
        self._stop_reason = ""
        self._publishers: list[Publisher] = []
        self._subs: list[_Subscription] = []
        self._timers: list[_Timer] = []
        self._status: tuple[msgs.Level, str] = (msgs.Level.OK, "")
        self._extra_values: list[Callable[[], dict[str, msgs.ScalarValue]]] = []
        self._closers: list[Callable[[], None]] = []
        self._pub_marks: dict[int, int] = {}
        self._watched: list[_Watched] = []
        self._cpu = CpuMeter()
        self._busy: tuple[str, float] | None = None
        """(what, since when) while a callback runs; read by the watchdog thread."""
        self._watchdog: _Watchdog | None = None
        self._poller = zmq.Poller()
        self._diag_period_ns = int(diagnostics_period_s * 1e9)
        self._last_diag_mono = time.monotonic_ns()
        self._diag_period_s = diagnostics_period_s
        self._diag = self._make_publisher(DIAGNOSTICS_TOPIC, {"msg_type": msgs.Diagnostics})
        self._closed = False
        if handle_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGTERM, self._on_signal)

    # ------------------------------------------------------------------ building

    def resolve(self, topic: str) -> str:
        """The topic name after this node's remapping (``--remap FROM:=TO``)."""
        return self.remap.get(topic, topic)

    def _make_publisher(self, topic: str, kwargs: dict[str, Any]) -> Publisher:
        # nodes on this machine connect over ipc; a multi-host graph's TCP endpoint is for the others
        remote = self.binds.get(topic)
        return Publisher(
            topic, remote_endpoint=remote, registry=self.registry, node=self.name, curve=self.curve, **kwargs
        )

    def publisher(
        self,
        topic: str,
        msg_type: type[msgs.Message] | None = None,
        *,
        nominal_hz: float | None = None,
        skipped: Callable[[], int] | None = None,
        **kwargs: Any,
    ) -> Publisher:
        """A publisher of ``topic`` (remapped) that closes with the node; ``msg_type`` registers
        the topic's type before the first message (see :class:`Publisher`).

        A source gives its ``nominal_hz`` and a count of the frames it ``skipped``: the node's
        reports then turn WARN when it falls below 90 % of that rate or skips frames."""
        pub = self._make_publisher(self.resolve(topic), {"msg_type": msg_type, **kwargs})
        self._publishers.append(pub)
        if nominal_hz is not None or skipped is not None:
            rate = RateWatch(nominal_hz) if nominal_hz is not None else None
            self._watched.append(_Watched(pub, rate, skipped))
        return pub

    def subscribe(self, topics: str | Sequence[str], callback: Callback, **kwargs: Any) -> Subscriber:
        """Call ``callback(envelope)`` for each message on ``topics`` (see :class:`Subscriber`)."""
        names = [topics] if isinstance(topics, str) else list(topics)
        sub = self._make_subscriber([self.resolve(t) for t in names], kwargs)
        label = ",".join(sub.topics)
        self._subs.append(_Subscription(sub, callback, label))
        return sub

    def _make_subscriber(self, topics: list[str], kwargs: dict[str, Any]) -> Subscriber:
        """The transport of :meth:`subscribe` (an in-process one in :mod:`fusion_stream.runtime.testing`)."""
        sub = Subscriber(topics, registry=self.registry, curve=self.curve, **kwargs)
        self._poller.register(sub.socket, zmq.POLLIN)
        return sub

    def _close_subscriber(self, sub: Subscriber) -> None:
        self._poller.unregister(sub.socket)
        sub.close()

    def timer(self, period_s: float, callback: Callable[[], None], *, phase_ns: int | None = None) -> None:
        """Call ``callback()`` every ``period_s`` seconds of the node's clock.

        With ``phase_ns``, ticks fall on clock times ≡ ``phase_ns`` (mod the period), the way a
        sensor captures on its own fixed grid whenever the process started."""
        if period_s <= 0:
            raise ParamError("period_s", f"a timer period must be > 0, got {period_s}")
        period = round(period_s * 1e9)
        now = self.clock.now_ns()
        first = now + period if phase_ns is None else _next_on_grid(now, period, phase_ns)
        self._timers.append(_Timer(period, callback, first, phase_ns))

    def set_status(self, level: msgs.Level, message: str = "") -> None:
        """The level and message of the next diagnostics reports."""
        self._status = (level, message)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the node shuts down, after its sockets are closed (finish a
        file, release a device); each runs even if an earlier one fails."""
        self._closers.append(callback)

    def add_diagnostics(self, values: Callable[[], dict[str, msgs.ScalarValue]]) -> None:
        """Add node-specific values to each diagnostics report."""
        self._extra_values.append(values)

    # ------------------------------------------------------------------ running

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(signal.Signals(signum).name)

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stop_event.is_set():
            self._stop_reason = reason
            self.stop_event.set()

    def spin(self, duration_s: float | None = None) -> int:
        """Run until stopped (signal, :meth:`request_stop`, or ``duration_s``); return 0."""
        end = None if duration_s is None else time.monotonic() + duration_s
        self.log.info("running")
        self.start_watchdog()
        try:
            while not self.stop_event.is_set():
                if end is not None and time.monotonic() >= end:
                    self.request_stop("duration elapsed")
                    break
                self.spin_once(self._poll_timeout_s(end))
        finally:
            self.close()
        return 0

    def _poll_timeout_s(self, end: float | None) -> float:
        timeout = _MAX_POLL_S
        now = self.clock.now_ns()
        for t in self._timers:
            timeout = min(timeout, max(0.0, (t.next_ns - now) / 1e9))
        if end is not None:
            timeout = min(timeout, max(0.0, end - time.monotonic()))
        return timeout

    def spin_once(self, timeout_s: float = 0.0) -> None:
        """Wait up to ``timeout_s`` for messages, then dispatch messages, timers and diagnostics."""
        ready = dict(self._poller.poll(int(timeout_s * 1000))) if self._subs else {}
        if not self._subs and timeout_s > 0:
            self.stop_event.wait(timeout_s)
        for s in self._subs:
            if s.sub.socket in ready:
                self._dispatch(s)
        self._fire_timers()
        for s in self._subs:
            s.sub.refresh_if_due()
        if time.monotonic_ns() - self._last_diag_mono >= self._diag_period_ns:
            self.publish_diagnostics()
        if self._parent_pid is not None and time.monotonic() >= self._next_parent_check:
            self._next_parent_check = time.monotonic() + 0.5
            if os.getppid() != self._parent_pid:  # the supervisor died: never outlive it
                self.request_stop("supervisor gone")

    def _fire_timers(self) -> None:
        """Call the callback of every timer due on the node's clock (once, however late)."""
        now = self.clock.now_ns()
        for t in self._timers:
            if t.next_ns - now > t.period_ns:  # a replay clock went back (a looping bag): start over
                t.next_ns = now
            if now >= t.next_ns:  # skip missed ticks, never burst
                if t.phase_ns is None:
                    t.next_ns = max(t.next_ns + t.period_ns, now)
                else:
                    t.next_ns = _next_on_grid(max(now, t.next_ns), t.period_ns, t.phase_ns)
                self._guard(t.callback, "timer")

    def _dispatch(self, s: _Subscription) -> None:
        n = 0
        batch_end = time.monotonic_ns() + _MAX_BATCH_NS
        while n < _MAX_BATCH and (n == 0 or time.monotonic_ns() < batch_end):
            try:
                env = s.sub.recv_envelope(timeout=0)
            except Exception:  # the receive path of one topic must not take down the node
                self.errors += 1
                s.receive_errors += 1
                if s.receive_errors == 1:
                    self.log.exception("receiving %s failed; further failures are only counted", s.label)
                break
            if env is None:
                break
            n += 1
            t0 = time.monotonic_ns()
            s.window.transit_ns.append(time.time_ns() - env.pub_ns)
            self._guard(functools.partial(s.callback, env), s.label)
            s.window.proc_ns.append(time.monotonic_ns() - t0)
        s.window.handled += n
        s.window.backlog_max = max(s.window.backlog_max, n - 1)

    def _guard(self, fn: Callable[[], None], where: str) -> None:
        with self.working_on(where):
            try:
                fn()
            except Exception:  # a bug in one callback must not take down the other streams
                self.errors += 1
                self.log.exception("callback for %s raised; message skipped", where)

    @contextlib.contextmanager
    def working_on(self, where: str) -> Iterator[None]:
        """Mark the node's thread busy with ``where``: what the watchdog's heartbeats name."""
        self._busy = (where, time.monotonic())
        try:
            yield
        finally:
            self._busy = None

    def start_watchdog(self) -> None:
        """Start the thread that sends "busy" heartbeats while the node's thread cannot report.
        :meth:`spin` starts it; the runner starts it before ``setup``, which may compile kernels
        or load a model for longer than the supervisor's start-up grace."""
        if self._watchdog is None:
            self._watchdog = _Watchdog(self)
            self._watchdog.start()

    def busy(self) -> tuple[str, float] | None:
        """What the node's thread is running now and for how many seconds, or None when idle."""
        busy = self._busy
        return None if busy is None else (busy[0], time.monotonic() - busy[1])

    # ------------------------------------------------------------------ diagnostics

    def diagnostics(self) -> msgs.Diagnostics:
        """Build (and reset the window of) this node's health report."""
        now_mono = time.monotonic_ns()
        period_s = max(1e-9, (now_mono - self._last_diag_mono) / 1e9)
        self._last_diag_mono = now_mono
        values: dict[str, msgs.ScalarValue] = {
            "errors": self.errors,
            "cpu_pct": round(self._cpu.percent(), 1),
            "rss_mb": round(rss_bytes() / 2**20, 1),
        }
        problems: list[str] = []
        now_s = now_mono / 1e9
        for watch in self._watched:
            if watch.rate is not None:
                rate = watch.rate.add(now_s, watch.pub.stats.sent)
                values[f"pub.{watch.pub.topic}.nominal_hz"] = watch.rate.nominal_hz
                if rate is not None:
                    values[f"pub.{watch.pub.topic}.rate_hz_5s"] = round(rate, 2)
                if watch.rate.short(rate):
                    problems.append(f"{watch.pub.topic} at {rate:.1f} Hz of {watch.rate.nominal_hz:g}")
            if watch.skipped is not None:
                skipped = watch.skipped()
                if skipped > watch.last_skipped:
                    problems.append(f"{skipped - watch.last_skipped} frames skipped on {watch.pub.topic}")
                watch.last_skipped = skipped
        for p in self._publishers:
            last = self._pub_marks.get(id(p), 0)
            self._pub_marks[id(p)] = p.stats.sent
            values[f"pub.{p.topic}.rate_hz"] = round((p.stats.sent - last) / period_s, 3)
            values[f"pub.{p.topic}.sent"] = p.stats.sent
            if p.shm_segment is not None:  # shared memory on: how many frames went without a copy
                values[f"pub.{p.topic}.shm_loans"] = p.stats.shm_loans
                values[f"pub.{p.topic}.shm_fallback"] = p.stats.shm_fallback
        for s in self._subs:
            st, w = s.sub.stats, s.window
            key = f"sub.{s.label}"
            malformed = sum(st.malformed.values())
            values[f"{key}.rate_hz"] = round(w.handled / period_s, 3)
            values[f"{key}.received"] = st.received
            values[f"{key}.lost"] = st.lost
            values[f"{key}.superseded"] = st.superseded
            values[f"{key}.malformed"] = malformed
            values[f"{key}.receive_errors"] = s.receive_errors
            values[f"{key}.backlog_max"] = w.backlog_max
            values[f"{key}.proc_ms_p50"] = round(_pct(w.proc_ns, 0.5), 4)
            values[f"{key}.proc_ms_max"] = round(_pct(w.proc_ns, 1.0), 4)
            values[f"{key}.transit_ms_p50"] = round(_pct(w.transit_ns, 0.5), 4)
            for reason, count in st.malformed.items():
                values[f"{key}.malformed.{reason}"] = count
            if malformed > s.last_malformed:
                problems.append(f"{malformed - s.last_malformed} malformed on {s.label}")
            if st.lost > s.last_lost:
                problems.append(f"{st.lost - s.last_lost} lost on {s.label}")
            s.last_malformed, s.last_lost = malformed, st.lost
            s.window = _Window()
        for extra in self._extra_values:
            values.update(extra())
        level, message = self._status  # after the extras: a status they set is this report's
        if problems and level == msgs.Level.OK:
            level, message = msgs.Level.WARN, "; ".join(problems)
        return msgs.Diagnostics(
            stamp_ns=self.clock.now_ns(), node=self.name, level=level, message=message, values=values
        )

    def publish_diagnostics(self) -> None:
        self._diag.publish(self.diagnostics())

    def last_report_age_s(self) -> float:
        return (time.monotonic_ns() - self._last_diag_mono) / 1e9

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Say goodbye on /diagnostics, close every socket and remove registry entries."""
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.stop()
        try:
            final = self.diagnostics()
            self._diag.publish(
                msgs.Diagnostics(
                    stamp_ns=final.stamp_ns,
                    node=self.name,
                    level=msgs.Level.STALE,
                    message=f"stopped ({self._stop_reason or 'closed'})",
                    values=final.values,
                )
            )
        finally:
            for s in self._subs:
                self._close_subscriber(s.sub)
            for p in self._publishers:
                p.close()
            self._diag.close()
            for closer in self._closers:
                self._guard(closer, "on_close")
            self.log.info("stopped (%s)", self._stop_reason or "closed")

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Watchdog(threading.Thread):
    """Sends a "busy" heartbeat on ``/diagnostics`` while the node's own thread cannot.

    The node's thread reports between callbacks; one callback longer than 1.5 report periods
    (a slow model, a blocking device read) would otherwise look exactly like a hang. This thread
    owns its own socket (ZeroMQ sockets are not shared between threads) and says what the node
    is busy with and for how long, so the supervisor keeps a slow node and can still kill one
    that is stuck (``busy_s`` beyond its ``hang_timeout_s``)."""

    def __init__(self, node: Node) -> None:
        super().__init__(name=f"watchdog-{node.name}", daemon=True)
        self.node = node
        self._halt = threading.Event()

    def run(self) -> None:
        node = self.node
        period = node._diag_period_s
        # bound now, so subscribers are connected long before the first busy heartbeat
        pub = node._make_publisher(DIAGNOSTICS_TOPIC, {"msg_type": msgs.Diagnostics})
        try:
            while not self._halt.wait(period / 4):
                if node.last_report_age_s() < 1.5 * period:
                    continue
                what, busy_s = node.busy() or ("the runtime", node.last_report_age_s())
                pub.publish(
                    msgs.Diagnostics(
                        stamp_ns=node.clock.now_ns(),
                        node=node.name,
                        level=msgs.Level.WARN,
                        message=f"busy for {busy_s:.1f} s in {what}",
                        values={"busy_s": round(busy_s, 2), "busy_in": what},
                    )
                )
        finally:
            pub.close()

    def stop(self) -> None:
        self._halt.set()
        if self is not threading.current_thread():
            self.join(timeout=2.0)
