"""Library side of the topic tools (`fusion-stream topics | echo | hz | status`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from fusion_stream.core import msgs
from fusion_stream.core.wire import Envelope
from fusion_stream.runtime.introspect import Rate, RateMeter
from fusion_stream.runtime.node import DIAGNOSTICS_TOPIC
from fusion_stream.runtime.registry import GraphInfo, Registry, TopicEntry, running_graphs
from fusion_stream.runtime.transport import Subscriber


def list_topics(registry: Registry | None = None) -> list[TopicEntry]:
    """Every live publisher of the graph, sorted by topic."""
    return (registry or Registry()).entries()


def echo(
    topic: str,
    *,
    count: int | None = None,
    wait_s: float = 5.0,
    idle_timeout_s: float | None = None,
    registry: Registry | None = None,
) -> Iterator[Envelope]:
    """Messages of ``topic`` as they arrive; waits up to ``wait_s`` for a publisher to appear.

    Stops after ``count`` messages or ``idle_timeout_s`` without one (never, if both are None).
    """
    with Subscriber(topic, registry=registry, timeout=idle_timeout_s) as sub:
        sub.wait_for_publishers(wait_s)
        for n, env in enumerate(sub.envelopes(), start=1):
            yield env
            if count is not None and n >= count:
                return


def measure_hz(
    topic: str,
    *,
    window: int = 100,
    report_every_s: float = 1.0,
    duration_s: float | None = None,
    wait_s: float = 5.0,
    registry: Registry | None = None,
) -> Iterator[Rate | None]:
    """Yield the rate of ``topic`` every ``report_every_s`` (None while fewer than 2 arrived)."""
    meter = RateMeter(window)
    end = None if duration_s is None else time.monotonic() + duration_s
    with Subscriber(topic, registry=registry) as sub:
        sub.wait_for_publishers(wait_s)
        next_report = time.monotonic() + report_every_s
        while end is None or time.monotonic() < end:
            env = sub.recv_envelope(timeout=max(0.0, next_report - time.monotonic()))
            if env is not None:
                meter.add(time.monotonic_ns(), env.nbytes + env.shm_bytes)  # the payload, wherever it came through
            if time.monotonic() >= next_report:
                next_report += report_every_s
                yield meter.rate()


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """The latest report of one node, with the topics it publishes from the registry."""

    node: str
    report: msgs.Diagnostics | None
    publishes: tuple[str, ...]
    received_at_ns: int
    busy: str = ""
    """The node's watchdog said it is busy in one long callback (after its last full report)."""

    def rate(self, topic: str) -> float | None:
        return self._number(f"pub.{topic}.rate_hz")

    def _number(self, key: str) -> float | None:
        value = None if self.report is None else self.report.values.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def cpu_pct(self) -> float | None:
        """Share of one core the node's process used over its last report period."""
        return self._number("cpu_pct")

    @property
    def rss_mb(self) -> float | None:
        return self._number("rss_mb")


def collect_status(listen_s: float = 1.5, *, registry: Registry | None = None) -> list[NodeStatus]:
    """Listen to ``/diagnostics`` for ``listen_s`` and return the latest report per node.

    Nodes that are registered but sent nothing in that time appear with ``report=None``.
    """
    registry = registry or Registry()
    latest: dict[str, tuple[msgs.Diagnostics, int]] = {}
    busy: dict[str, str] = {}
    end = time.monotonic() + listen_s
    with Subscriber(DIAGNOSTICS_TOPIC, registry=registry) as sub:
        while (remaining := end - time.monotonic()) > 0:
            msg = sub.recv(timeout=remaining)
            if not isinstance(msg, msgs.Diagnostics):
                continue
            if "busy_s" in msg.values:  # a watchdog's heartbeat: keep the last full report
                busy[msg.node] = msg.message
                if msg.node not in latest:
                    latest[msg.node] = (msg, time.time_ns())
            else:
                busy.pop(msg.node, None)
                latest[msg.node] = (msg, time.time_ns())
    publishes: dict[str, set[str]] = {}
    for e in registry.entries():
        if e.topic != DIAGNOSTICS_TOPIC:
            publishes.setdefault(e.node or f"pid {e.pid}", set()).add(e.topic)
        else:
            publishes.setdefault(e.node or f"pid {e.pid}", set())
    names = sorted(set(latest) | set(publishes))
    return [
        NodeStatus(
            node=n,
            report=latest[n][0] if n in latest else None,
            publishes=tuple(sorted(publishes.get(n, ()))),
            received_at_ns=latest[n][1] if n in latest else 0,
            busy=busy.get(n, ""),
        )
        for n in names
    ]


def list_graphs() -> list[GraphInfo]:
    """The graphs running on this machine (in this runtime directory), with their publishers."""
    return running_graphs()
