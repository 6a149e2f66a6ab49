"""`fusion-stream demo`: run the default graph (``launch/sim.yaml``) for a while and show what flows.

The simulated camera, LiDAR, radar and microphone array, ground truth and the synchronizer, each
in its own process under the supervisor. The console shows, per topic, the rate, bandwidth, loss
and the latency from capture stamp to arrival here, and for ``/sync/frames`` how many sets were
partial; for ``/detections``, detections per frame, and its stamp→here latency is the end-to-end
latency from the sensor capture stamp to the detections arriving here.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fusion_stream.core import msgs
from fusion_stream.graph import launch
from fusion_stream.graph.supervisor import Supervisor, default_launch_dir
from fusion_stream.runtime.introspect import RateMeter
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber

SYNC_TOPIC = "/sync/frames"
DETECTIONS_TOPIC = "/detections"


@dataclass
class TopicStats:
    topic: str
    meter: RateMeter = field(default_factory=lambda: RateMeter(200))
    latency_ns: list[int] = field(default_factory=list)
    count: int = 0
    lost: int = 0
    partial: int = 0
    boxes: int = 0

    def row(self) -> tuple[str, str, str, str, str, str]:
        rate = self.meter.rate()
        lat = np.asarray(self.latency_ns[-2000:], dtype=np.float64) / 1e6
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if lat.size else (float("nan"),) * 2
        extra = f"{self.lost}" + (f" ({self.partial} partial)" if self.topic == SYNC_TOPIC else "")
        if self.topic == DETECTIONS_TOPIC and self.count:
            extra += f" ({self.boxes / self.count:.1f} boxes/frame)"
        return (
            self.topic,
            str(self.count),
            f"{rate.rate_hz:.1f}" if rate else "-",
            f"{rate.bytes_per_s / 1e6:.1f}" if rate else "-",
            f"{p50:.2f} / {p99:.2f}",
            extra,
        )


HEADERS = ("topic", "msgs", "rate Hz", "MB/s", "stamp→here p50 / p99 ms", "lost")


@dataclass
class DemoResult:
    topics: dict[str, TopicStats]
    exit_codes: dict[str, int]
    failure: str | None
    log_tail: list[str]

    @property
    def ok(self) -> bool:
        return (
            self.failure is None
            and all(c == 0 for c in self.exit_codes.values())
            and all(s.count > 0 for s in self.topics.values())
        )


def run_demo(
    duration_s: float = 10.0,
    on_update: Callable[[dict[str, TopicStats]], None] | None = None,
    launch_file: str | None = None,
    args: dict[str, object] | None = None,
) -> DemoResult:
    """Launch the graph, watch its topics for ``duration_s``, stop everything cleanly."""
    graph = launch.load(launch_file or default_launch_dir() / "sim.yaml", args)
    registry = Registry(graph=f"{graph.graph}-{os.getpid()}")
    tail: deque[str] = deque(maxlen=40)
    sup = Supervisor(graph, registry=registry, output=tail.append)
    topics = sorted({t for n in graph.nodes for t in n.topics.outputs})
    stats = {t: TopicStats(t) for t in topics}
    try:
        sup.start()
        with Subscriber(topics, registry=registry, queue_size=256) as sub:
            deadline = time.monotonic() + 30.0
            while not all(registry.lookup(t) for t in topics) and not sup.done:
                if time.monotonic() > deadline:
                    sup.failure = f"topics never appeared: {[t for t in topics if not registry.lookup(t)]}"
                    break
                sup.step()
                time.sleep(0.05)
            end = time.monotonic() + duration_s
            next_update = 0.0
            while (remaining := end - time.monotonic()) > 0 and not sup.done:
                env = sub.recv_envelope(timeout=min(remaining, 0.05))
                if env is not None:
                    s = stats[env.topic]
                    s.count += 1
                    s.meter.add(time.monotonic_ns(), env.nbytes)
                    s.latency_ns.append(time.time_ns() - env.message.stamp_ns)
                    if isinstance(env.message, msgs.SyncedFrame) and env.message.missing:
                        s.partial += 1
                    elif isinstance(env.message, msgs.Detections):
                        s.boxes += len(env.message.boxes)
                sup.step()
                if on_update and time.monotonic() >= next_update:
                    on_update(stats)
                    next_update = time.monotonic() + 0.5
            for topic, lost in sub.stats.lost_by_topic.items():
                stats[topic].lost = lost
    finally:
        codes = sup.shutdown()
    return DemoResult(stats, codes, sup.failure, list(tail))
