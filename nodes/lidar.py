"""LiDAR node: one ``PointCloud`` per rotation, in the sensor frame, with ``ring`` and per-point
``time_offset`` (seconds after the stamp, which is the start of the sweep).

``source: sim`` ray-casts the simulated world (32 or 64 beams, 10 Hz)."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.errors import ParamError
from fusion_stream.launch import NodeTopics
from fusion_stream.msgs import PointCloud
from fusion_stream.node import Node
from fusion_stream.runner import run_node
from fusion_stream.sim import lidar
from fusion_stream.sim.capture import lidar_sweep
from fusion_stream.sim.sensors import SimParams, open_sensor, open_world, publish_on_grid


@dataclass(frozen=True)
class Params(SimParams):
    sensor: str = "lidar_top"
    topic: str = "/lidar/top/points"
    beams: int = 32
    rate_hz: float = 10.0


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


def setup(node: Node, p: Params) -> None:
    world = open_world(p)
    sensor = open_sensor(p, p.sensor, "lidar")
    try:
        spec = lidar.LidarSpec.preset(p.beams, p.rate_hz)
    except ValueError as err:
        raise ParamError("beams" if "beams" in str(err) else "rate_hz", str(err)) from err

    def capture(start: int) -> PointCloud:
        return lidar_sweep(world, sensor, spec, start, p.epoch_ns)

    # a sweep is complete one period after it started
    publish_on_grid(node, p.topic, p.rate_hz, p.epoch_ns, capture, ready_after_ns=round(1e9 / p.rate_hz))


if __name__ == "__main__":
    raise SystemExit(run_node("lidar", Params, setup))
