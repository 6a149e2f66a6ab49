"""Publish a bag's messages into a running graph, with the recorded timing or in lockstep.

Timed replay sends each message when ``(log_time − first_log_time) / rate`` has passed, and keeps
a :class:`~fusion_stream.runtime.clock.ReplayClock` at the bag time of the last message sent. Lockstep
replay ignores the timing: before each new reference message (the sweep that starts a synced
set) it waits until the pipeline has answered the previous one on the acknowledgement topic, so
nothing is dropped for being late and a run is as fast as the pipeline allows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusion_stream.bag import convert
from fusion_stream.bag.mapping import Converted, StreamStats, TopicMap, messages
from fusion_stream.bag.reader import Bag, BagInfo
from fusion_stream.core import msgs, wire
from fusion_stream.errors import UsageError
from fusion_stream.runtime.clock import ReplayClock
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Publisher, Subscriber

log = logging.getLogger(__name__)

DEFAULT_ACK_TOPIC = "/detections"


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay: rate, looping, start and length, which topics and names, lockstep with acks."""

    rate: float = 1.0
    loop: bool = False
    start_s: float = 0.0
    """Skip this much of the bag's start."""
    duration_s: float | None = None
    topics: Sequence[str] | None = None
    """Recorded topic names to replay (default: every convertible one)."""
    remap: Mapping[str, str] = field(default_factory=dict)
    lockstep: bool = False
    reference_topic: str | None = None
    """Lockstep: the topic whose messages start synced sets (default: the first point-cloud topic)."""
    ack_topic: str = DEFAULT_ACK_TOPIC
    ack_timeout_s: float = 5.0
    wait_s: float = 1.0
    """Time given to subscribers to connect before the first message."""
    clock_topic: str | None = None
    """Publish the bag time as ``ClockTick`` on this topic (``/clock``), every message and every
    20 ms between them, for nodes started with ``fusion-stream launch --clock``."""

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise UsageError(f"--rate must be > 0, got {self.rate}")
        if self.start_s < 0:
            raise UsageError(f"--start must be >= 0, got {self.start_s}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UsageError(f"--duration must be > 0, got {self.duration_s}")
        for name in self.remap.values():
            wire.check_topic(name)


@dataclass
class ReplayStats:
    published: Counter[str] = field(default_factory=Counter)
    loops: int = 0
    ack_timeouts: int = 0
    stream: StreamStats = field(default_factory=StreamStats)
    late_ms_max: float = 0.0
    """How far behind its schedule the latest-sent message was (timed replay)."""


def _reference_topic(info: BagInfo, options: ReplayOptions, topic_map: TopicMap) -> str:
    if options.reference_topic:
        return options.reference_topic
    for t in info.topics:
        if t.typename == "sensor_msgs/msg/PointCloud2" and "radar" not in topic_map.rename(t.topic):
            return t.topic
    raise UsageError(f"{info.path}: no point-cloud topic to step on; name one with --lockstep-topic")


class Replayer:
    """Publishes a bag's messages on their topics at their recorded pace (scaled by ``rate``)."""

    def __init__(
        self,
        path: Path | str,
        options: ReplayOptions | None = None,
        *,
        topic_map: TopicMap | None = None,
        registry: Registry | None = None,
        clock: ReplayClock | None = None,
    ) -> None:
        self.options = options or ReplayOptions()
        self.topic_map = topic_map or TopicMap()
        self.registry = registry or Registry()
        self.clock = clock or ReplayClock()
        self.stats = ReplayStats()
        self.bag = Bag(path)
        try:
            self.info = self.bag.info()
            self.topic_map.check(t.topic for t in self.info.topics)
            recorded = {t.topic for t in self.info.topics}
            if self.options.topics is not None:
                absent = sorted(set(self.options.topics) - recorded)
                if absent:
                    raise UsageError(f"{self.bag.path}: no topic {absent} in the bag; it has {sorted(recorded)}")
            self.selected = sorted(
                t.topic
                for t in self.info.topics
                if t.typename in convert.CONVERTIBLE
                and t.typename != "fusion_stream_msgs/msg/SyncedFrame"
                and (self.options.topics is None or t.topic in self.options.topics)
            )
            self.reference = (
                _reference_topic(self.info, self.options, self.topic_map) if self.options.lockstep else None
            )
        except BaseException:
            self.bag.close()
            raise
        self._publishers: dict[str, Publisher] = {}
        self._clock_pub: Publisher | None = None

    def _tick(self, bag_ns: int) -> None:
        self.clock.set(max(bag_ns, self.clock.now_ns()))
        if self._clock_pub is not None:
            self._clock_pub.publish(msgs.ClockTick(stamp_ns=self.clock.now_ns()))

    def output_topic(self, recorded: str) -> str:
        name = self.topic_map.rename(recorded)
        return self.options.remap.get(name, self.options.remap.get(recorded, name))

    def _publisher(self, topic: str) -> Publisher:
        pub = self._publishers.get(topic)
        if pub is None:
            pub = self._publishers[topic] = Publisher(topic, registry=self.registry, node="replay", queue_size=10_000)
        return pub

    def _window(self) -> tuple[int, int | None]:
        start = self.info.start_ns + int(self.options.start_s * 1e9)
        end = None if self.options.duration_s is None else start + int(self.options.duration_s * 1e9)
        return start, end

    def _stream(self) -> Iterator[Converted]:
        start, end = self._window()
        return messages(
            self.bag, self.topic_map, topics=self.selected, start_ns=start, end_ns=end, stats=self.stats.stream
        )

    def run(
        self, stop: threading.Event | None = None, on_message: Callable[[Converted], None] | None = None
    ) -> ReplayStats:
        """Replay until the end (or forever with ``loop``) or until ``stop`` is set."""
        stop = stop or threading.Event()
        for name in self.selected:
            self._publisher(self.output_topic(name))
        if self.options.clock_topic and self._clock_pub is None:
            self._clock_pub = Publisher(
                self.options.clock_topic, registry=self.registry, node="replay", msg_type=msgs.ClockTick
            )
        ack = (
            Subscriber(self.options.ack_topic, registry=self.registry, queue_size=10_000)
            if self.options.lockstep
            else None
        )
        try:
            if stop.wait(self.options.wait_s):
                return self.stats
            while not stop.is_set():
                self._one_pass(stop, ack, on_message)
                if not self.options.loop or stop.is_set():
                    break
                self.stats.loops += 1
        finally:
            if ack is not None:
                ack.close()
        return self.stats

    def _one_pass(
        self, stop: threading.Event, ack: Subscriber | None, on_message: Callable[[Converted], None] | None
    ) -> None:
        start_ns, _ = self._window()
        self.clock.set(start_ns, reset=True)
        self._tick(start_ns)
        wall0 = time.monotonic()
        pending_ref: int | None = None
        for item in self._stream():
            if stop.is_set():
                return
            if ack is not None:
                if item.topic == self.topic_map.rename(self.reference or ""):
                    if pending_ref is not None:
                        self._wait_ack(ack, pending_ref, stop)
                    pending_ref = item.message.stamp_ns
            else:
                due = wall0 + (item.log_ns - start_ns) / 1e9 / self.options.rate
                delay = due - time.monotonic()
                while self._clock_pub is not None and due - time.monotonic() > 0.02:  # the clock runs on
                    if stop.wait(0.02):
                        return
                    self._tick(start_ns + int((time.monotonic() - wall0) * self.options.rate * 1e9))
                if (rest := due - time.monotonic()) > 0 and stop.wait(rest):
                    return
                self.stats.late_ms_max = max(self.stats.late_ms_max, -delay * 1e3)
            self._tick(item.log_ns)
            out = self.output_topic_for(item)
            self._publisher(out).publish(item.message)
            self.stats.published[out] += 1
            if on_message is not None:
                on_message(item)
        if ack is not None and pending_ref is not None:
            self._wait_ack(ack, pending_ref, stop)

    def output_topic_for(self, item: Converted) -> str:
        return self.options.remap.get(item.topic, item.topic)

    def _wait_ack(self, ack: Subscriber, stamp_ns: int, stop: threading.Event) -> None:
        deadline = time.monotonic() + self.options.ack_timeout_s
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stats.ack_timeouts += 1
                if self.stats.ack_timeouts == 1:
                    log.warning(
                        "lockstep: nothing on %s for the set at %d within %.1f s; going on (is the pipeline running?)",
                        self.options.ack_topic,
                        stamp_ns,
                        self.options.ack_timeout_s,
                    )
                return
            msg = ack.recv(timeout=min(remaining, 0.1))
            if msg is not None and isinstance(msg, msgs.Header) and msg.stamp_ns >= stamp_ns:
                return

    def close(self) -> None:
        if self._clock_pub is not None:
            self._clock_pub.close()
        for pub in self._publishers.values():
            pub.close()
        self._publishers.clear()
        self.bag.close()

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
