"""Test-pattern source: publishes synthetic frames of one kind at a fixed rate.

Useful to exercise a graph without sensors or the simulator (``kind`` is image, points, radar or
audio), and as the smallest example of a sensor node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fusion_stream.core import msgs
from fusion_stream.errors import ParamError
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics
from fusion_stream.runtime.runner import run_node
from fusion_stream.sources import testpattern

_DEFAULT_TOPICS = {
    "image": "/camera/pattern/image",
    "points": "/lidar/pattern/points",
    "radar": "/radar/pattern/points",
    "audio": "/audio/pattern/chunk",
}

_TYPES: dict[str, type[msgs.Message]] = {
    "image": msgs.Image,
    "points": msgs.PointCloud,
    "radar": msgs.RadarScan,
    "audio": msgs.AudioChunk,
}


@dataclass(frozen=True)
class Params:
    kind: str = "points"
    topic: str = ""
    rate_hz: float = 10.0
    width: int = 640
    height: int = 384
    points: int = 120_000
    sample_rate: int = 48_000
    channels: int = 4
    crash_after_s: float = -1.0
    """Fault injection for testing supervision: exit with code 3 after this many seconds (0: at
    start-up). Negative: never."""
    hang_after_s: float = -1.0
    """Fault injection: stop responding (block the loop, no more /diagnostics) after this long."""
    tick_cost_s: float = 0.0
    """Fault injection: each tick blocks this long, like a slow model (a slow node, not a hung one)."""
    shm: bool | None = None
    """Large arrays through shared memory to subscribers on this machine (``ipc://`` only); unset:
    ``$FUSION_STREAM_SHM``, else on where ``/dev/shm`` exists."""


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic or _DEFAULT_TOPICS.get(p.kind, ""),))


def check(p: Params) -> None:
    """What can be judged before the node starts (``fusion-stream launch`` calls it; so does setup)."""
    if p.kind not in _DEFAULT_TOPICS:
        raise ParamError("kind", f"must be one of {', '.join(_DEFAULT_TOPICS)}, got {p.kind!r}")
    if p.rate_hz <= 0:
        raise ParamError("rate_hz", f"must be > 0, got {p.rate_hz}")


def setup(node: Node, p: Params) -> None:
    check(p)
    pub = node.publisher(p.topic or _DEFAULT_TOPICS[p.kind], _TYPES[p.kind], nominal_hz=p.rate_hz, shm=p.shm)
    samples = round(p.sample_rate / p.rate_hz)
    state = {"first_sample": 0, "start_ns": node.clock.now_ns()}

    def tick() -> None:
        now = node.clock.now_ns()
        if p.tick_cost_s > 0:
            time.sleep(p.tick_cost_s)
        if p.kind == "image":
            pub.publish(testpattern.image(now, p.width, p.height))
        elif p.kind == "points":
            pub.publish(testpattern.point_cloud(now, p.points))
        elif p.kind == "radar":
            pub.publish(testpattern.radar_scan(now))
        else:
            first = state["first_sample"]
            pub.publish(testpattern.audio_chunk(first, p.sample_rate, samples, p.channels, state["start_ns"]))
            state["first_sample"] = first + samples

    node.timer(1.0 / p.rate_hz, tick)
    if p.crash_after_s == 0:
        raise SystemExit(3)
    if p.crash_after_s > 0:

        def crash() -> None:
            node.log.error("crash_after_s=%g reached: exiting with code 3", p.crash_after_s)
            raise SystemExit(3)

        node.timer(p.crash_after_s, crash)
    if p.hang_after_s >= 0:

        def hang() -> None:
            node.log.error("hang_after_s=%g reached: blocking the loop", p.hang_after_s)
            while True:
                time.sleep(3600)

        node.timer(max(p.hang_after_s, 1e-3), hang)


if __name__ == "__main__":
    raise SystemExit(run_node("pattern", Params, setup))
