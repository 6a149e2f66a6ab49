"""Recording a running graph into MCAP, as a part of any :class:`~fusion_stream.runtime.node.Node`.

Messages are written as they arrive, stamped with their arrival time (MCAP log time) and their
publisher's send time (publish time). Drops are never silent: sequence gaps per publisher are
counted per topic, reported in ``/diagnostics`` (WARN) and in the final summary.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from fusion_stream.bag.writer import BagWriter
from fusion_stream.core import msgs
from fusion_stream.core.wire import Envelope
from fusion_stream.errors import FusionStreamError, UsageError
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.transport import Subscriber

log = logging.getLogger(__name__)

RECORDER_QUEUE = 10_000
"""Messages a publisher may queue for the recorder while it compresses a chunk (HWM)."""


@dataclass
class RecordStats:
    messages: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    lost: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    @property
    def total_lost(self) -> int:
        return sum(self.lost.values())


class Recorder:
    """Subscribes ``node`` to ``topics`` (or every topic, as they appear, with ``all_topics``)
    and writes what arrives to ``writer``."""

    def __init__(
        self,
        node: Node,
        writer: BagWriter,
        topics: Sequence[str] = (),
        *,
        all_topics: bool = False,
        exclude: Sequence[str] = (),
    ) -> None:
        if not topics and not all_topics:
            raise UsageError("name the topics to record, or record all of them (--all)")
        self.node = node
        self.writer = writer
        self.all_topics = all_topics
        self.exclude = set(exclude)
        self.stats = RecordStats()
        self._subs: list[Subscriber] = []
        self._subscribed: set[str] = set()
        if topics:
            self._subscribe(list(topics))
        if all_topics:
            self._discover()
            node.timer(0.25, self._discover)
        node.add_diagnostics(self._diagnostics)

    @property
    def topics(self) -> list[str]:
        return sorted(self._subscribed)

    def _subscribe(self, topics: list[str]) -> None:
        sub = self.node.subscribe(topics, self._on_message, queue_size=RECORDER_QUEUE)
        self._subs.append(sub)
        self._subscribed.update(sub.topics)
        log.info("recording %s", ", ".join(sub.topics))

    def _discover(self) -> None:
        found = {e.topic for e in self.node.registry.entries()} - self._subscribed - self.exclude
        if found:
            self._subscribe(sorted(found))

    def _on_message(self, env: Envelope) -> None:
        try:
            self.writer.write(env.topic, env.message, time.time_ns(), publish_ns=env.pub_ns)
        except FusionStreamError as err:
            if not self.stats.failed[env.topic]:
                log.error("cannot record a message of %s: %s (further failures are counted)", env.topic, err)
            self.stats.failed[env.topic] += 1
            return
        self.stats.messages[env.topic] += 1
        self.stats.bytes = self.writer.stats.bytes

    def _update_lost(self) -> None:
        for sub in self._subs:
            for topic, n in sub.stats.lost_by_topic.items():
                self.stats.lost[topic] = n

    def _diagnostics(self) -> dict[str, msgs.ScalarValue]:
        self._update_lost()
        lost = self.stats.total_lost
        if lost:
            worst = ", ".join(f"{t} {n}" for t, n in self.stats.lost.most_common(3))
            self.node.set_status(msgs.Level.WARN, f"{lost} messages dropped before recording ({worst})")
        values: dict[str, msgs.ScalarValue] = {
            "record.messages": sum(self.stats.messages.values()),
            "record.megabytes": round(self.stats.bytes / 1e6, 3),
            "record.lost": lost,
            "record.files": len(self.writer.stats.files),
        }
        return values

    def summary(self) -> RecordStats:
        self._update_lost()
        return self.stats
