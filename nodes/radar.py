"""Radar node: ``RadarScan`` detection lists (x, y, z, radial_velocity, rcs, range, azimuth,
elevation) in the sensor frame.

``source: sim`` detects objects in the simulated world (13 Hz, with false alarms)."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.errors import ParamError
from fusion_stream.launch import NodeTopics
from fusion_stream.msgs import RadarScan
from fusion_stream.node import Node
from fusion_stream.runner import run_node
from fusion_stream.sim import radar
from fusion_stream.sim.capture import radar_scan
from fusion_stream.sim.sensors import SimParams, open_sensor, open_world, publish_on_grid


@dataclass(frozen=True)
class Params(SimParams):
    sensor: str = "radar_front"
    topic: str = "/radar/front/points"
    rate_hz: float = 13.0
    false_alarms: float = 3.0


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


def setup(node: Node, p: Params) -> None:
    world = open_world(p)
    sensor = open_sensor(p, p.sensor, "radar")
    try:
        spec = radar.RadarSpec(rate_hz=p.rate_hz, false_alarms=p.false_alarms)
    except ValueError as err:
        raise ParamError("rate_hz", str(err)) from err

    def capture(at: int) -> RadarScan:
        return radar_scan(world, sensor, spec, at, p.epoch_ns)

    publish_on_grid(node, p.topic, p.rate_hz, p.epoch_ns, capture)


if __name__ == "__main__":
    raise SystemExit(run_node("radar", Params, setup))
