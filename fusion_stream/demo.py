"""`fusion-stream demo`: several sensor processes publish over ZeroMQ while this one watches.

Until the simulated rig lands, the graph is test-pattern sources (camera, LiDAR, radar, audio)
at realistic sizes and rates. The console shows, per topic, the rate, bandwidth, message loss
and the latency from capture stamp to arrival here, then a final summary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fusion_stream.introspect import RateMeter
from fusion_stream.process import NodeProcess, spawn_node, stop_all
from fusion_stream.registry import ENV_GRAPH, Registry
from fusion_stream.transport import Subscriber

SOURCES: tuple[tuple[str, dict[str, object]], ...] = (
    ("camera", {"kind": "image", "topic": "/camera/front/image", "rate_hz": 20, "width": 640, "height": 384}),
    ("lidar", {"kind": "points", "topic": "/lidar/top/points", "rate_hz": 10, "points": 120_000}),
    ("radar", {"kind": "radar", "topic": "/radar/front/points", "rate_hz": 13}),
    ("audio", {"kind": "audio", "topic": "/audio/array/chunk", "rate_hz": 50, "channels": 4}),
)


@dataclass
class TopicStats:
    topic: str
    meter: RateMeter = field(default_factory=lambda: RateMeter(200))
    latency_ns: list[int] = field(default_factory=list)
    count: int = 0
    lost: int = 0

    def row(self) -> tuple[str, str, str, str, str, str]:
        rate = self.meter.rate()
        lat = np.asarray(self.latency_ns[-2000:], dtype=np.float64) / 1e6
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if lat.size else (float("nan"),) * 2
        return (
            self.topic,
            str(self.count),
            f"{rate.rate_hz:.1f}" if rate else "-",
            f"{rate.bytes_per_s / 1e6:.1f}" if rate else "-",
            f"{p50:.2f} / {p99:.2f}",
            str(self.lost),
        )


@dataclass(frozen=True)
class DemoResult:
    topics: dict[str, TopicStats]
    exit_codes: dict[str, int]

    @property
    def ok(self) -> bool:
        return all(c == 0 for c in self.exit_codes.values()) and all(s.count > 0 for s in self.topics.values())


HEADERS = ("topic", "msgs", "rate Hz", "MB/s", "latency p50 / p99 ms", "lost")


def run_demo(duration_s: float = 10.0, on_update: Callable[[dict[str, TopicStats]], None] | None = None) -> DemoResult:
    """Start the sources, watch their topics for ``duration_s``, stop everything cleanly."""
    graph = f"demo-{os.getpid()}"
    registry = Registry(graph=graph)
    procs: list[NodeProcess] = []
    stats = {str(p["topic"]): TopicStats(str(p["topic"])) for _, p in SOURCES}
    try:
        for name, params in SOURCES:
            procs.append(spawn_node("nodes.pattern", name, params, env={ENV_GRAPH: graph}))
        with Subscriber(list(stats), registry=registry, queue_size=256) as sub:
            sub.wait_for_publishers(20.0)
            end = time.monotonic() + duration_s
            next_update = 0.0
            while (remaining := end - time.monotonic()) > 0:
                env = sub.recv_envelope(timeout=min(remaining, 0.25))
                if env is not None:
                    s = stats[env.topic]
                    s.count += 1
                    s.meter.add(time.monotonic_ns(), env.nbytes)
                    s.latency_ns.append(time.time_ns() - env.message.stamp_ns)
                if on_update and time.monotonic() >= next_update:
                    on_update(stats)
                    next_update = time.monotonic() + 0.5
                dead = [p.name for p in procs if p.returncode is not None]
                if dead:
                    break
            for topic, lost in sub.stats.lost_by_topic.items():
                stats[topic].lost = lost
    finally:
        codes = stop_all(procs)
    return DemoResult(stats, codes)
