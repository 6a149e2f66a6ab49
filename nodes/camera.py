"""Camera node: RGB ``Image`` frames stamped with their capture time.

``source: sim`` renders the simulated world through the rig's intrinsics (about 640×384, 15 Hz)."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.launch import NodeTopics
from fusion_stream.msgs import Image
from fusion_stream.node import Node
from fusion_stream.runner import run_node
from fusion_stream.sim.camera import CameraModel
from fusion_stream.sim.capture import camera_image
from fusion_stream.sim.sensors import SimParams, open_sensor, open_world, publish_on_grid


@dataclass(frozen=True)
class Params(SimParams):
    sensor: str = "camera_front"
    topic: str = "/camera/front/image"
    rate_hz: float = 15.0


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


def setup(node: Node, p: Params) -> None:
    world = open_world(p)
    sensor = open_sensor(p, p.sensor, "camera")
    assert sensor.intrinsics is not None  # calib.load guarantees it for cameras
    model = CameraModel(sensor.intrinsics, sensor.distortion)

    def capture(at: int) -> Image:
        return camera_image(world, sensor, model, at, p.epoch_ns)

    publish_on_grid(node, p.topic, p.rate_hz, p.epoch_ns, capture)


if __name__ == "__main__":
    raise SystemExit(run_node("camera", Params, setup))
