"""Ground-truth node: the simulated world's objects near the ego, in the rig frame, on
``/ground_truth/objects``. Stamps fall on the LiDAR's capture grid (same ``rate_hz`` and
``epoch_ns``), so each box set describes the world at the start of a sweep; the scenario
parameters must match the sensors'."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.launch import NodeTopics
from fusion_stream.msgs import Detections
from fusion_stream.node import Node
from fusion_stream.runner import run_node
from fusion_stream.sim import ground_truth
from fusion_stream.sim.sensors import SimParams, open_world, publish_on_grid


@dataclass(frozen=True)
class Params(SimParams):
    rate_hz: float = 10.0
    radius_m: float = 80.0
    frame_id: str = "base_link"
    topic: str = "/ground_truth/objects"


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


def setup(node: Node, p: Params) -> None:
    world = open_world(p)

    def capture(at: int) -> Detections:
        return ground_truth(world, (at - p.epoch_ns) / 1e9, at, p.radius_m, p.frame_id)

    publish_on_grid(node, p.topic, p.rate_hz, p.epoch_ns, capture)


if __name__ == "__main__":
    raise SystemExit(run_node("ground_truth", Params, setup))
