"""Ground-truth node: publishes the simulated world's objects near the ego, in the rig frame,
on ``/ground_truth/objects`` at the LiDAR rate (the scenario must match the sensors')."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.errors import ParamError
from fusion_stream.launch import NodeTopics
from fusion_stream.node import Node
from fusion_stream.runner import run_node
from fusion_stream.sim import Scenario, World, ground_truth


@dataclass(frozen=True)
class Params:
    seed: int = 0
    actors: int = 24
    rate_hz: float = 10.0
    radius_m: float = 80.0
    start_ns: int = 0
    """Wall-clock time of the scenario's t = 0; 0: when the node starts."""
    topic: str = "/ground_truth/objects"


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


def setup(node: Node, p: Params) -> None:
    try:
        world = World(Scenario(seed=p.seed, actors=p.actors))
    except ValueError as err:
        raise ParamError("actors", str(err)) from err
    if p.rate_hz <= 0:
        raise ParamError("rate_hz", f"must be > 0, got {p.rate_hz}")
    pub = node.publisher(p.topic)
    start = p.start_ns or node.clock.now_ns()

    def tick() -> None:
        now = node.clock.now_ns()
        pub.publish(ground_truth(world, (now - start) / 1e9, now, p.radius_m))

    node.timer(1.0 / p.rate_hz, tick)


if __name__ == "__main__":
    raise SystemExit(run_node("ground_truth", Params, setup))
