"""``range_filter``: republishes detections, keeping the boxes within ``max_range_m`` of the ego
(and at least ``min_score``), e.g. to feed a planner only what it must react to.

A node type is three names: ``Params`` (a dataclass: the launch file's ``params:`` are checked
against it before anything starts), ``topics`` (what it subscribes to and publishes, so the
launcher can check the graph's wiring) and ``setup`` (creates its publishers and subscriptions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fusion_stream.core.msgs import Detections
from fusion_stream.core.wire import Envelope
from fusion_stream.errors import ParamError
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics


@dataclass(frozen=True)
class Params:
    input: str = "/detections"
    output: str = "/detections/near"
    max_range_m: float = 30.0
    min_score: float = 0.0


def topics(p: Params) -> NodeTopics:
    return NodeTopics(inputs=(p.input,), outputs=(p.output,))


def setup(node: Node, p: Params) -> None:
    if not p.max_range_m > 0:
        raise ParamError("max_range_m", f"must be > 0 m, got {p.max_range_m}")
    if not 0.0 <= p.min_score <= 1.0:
        raise ParamError("min_score", f"must be in [0, 1], got {p.min_score}")
    pub = node.publisher(p.output, Detections)

    def keep_near(env: Envelope) -> None:
        dets = env.message
        if not isinstance(dets, Detections):
            return
        near = tuple(
            b for b in dets.boxes if math.hypot(b.center[0], b.center[1]) <= p.max_range_m and b.score >= p.min_score
        )
        pub.publish(Detections(stamp_ns=dets.stamp_ns, frame_id=dets.frame_id, boxes=near))

    node.subscribe(p.input, keep_near)
