"""Camera node: RGB ``Image`` frames stamped with their capture time.

``source: sim`` renders the simulated world through the rig's intrinsics (about 640×384, 15 Hz)."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.errors import ParamError
from fusion_stream.launch import NodeTopics
from fusion_stream.msgs import Image
from fusion_stream.node import Node
from fusion_stream.runner import run_node
from fusion_stream.sim.camera import CameraModel
from fusion_stream.sim.sensors import FrameGrid, SimParams, open_sensor, open_world


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
    if p.rate_hz <= 0:
        raise ParamError("rate_hz", f"must be > 0, got {p.rate_hz}")
    assert sensor.intrinsics is not None  # calib.load guarantees it for cameras
    model = CameraModel(sensor.intrinsics, sensor.distortion)
    pub = node.publisher(p.topic)
    grid = FrameGrid(round(1e9 / p.rate_hz), p.epoch_ns)
    node.add_diagnostics(lambda: {"frames_skipped": grid.skipped})

    def tick() -> None:
        k = grid.due(node.clock.now_ns())
        if k is None:
            return
        capture = grid.capture_ns(k)
        frame = model.render(world, (capture - p.epoch_ns) / 1e9, sensor.extrinsics, stamp_ns=capture)
        pub.publish(Image(stamp_ns=capture - sensor.time_offset_ns, frame_id=sensor.name, data=frame.rgb))

    node.timer(grid.period_ns / 1e9, tick, phase_ns=p.epoch_ns)


if __name__ == "__main__":
    raise SystemExit(run_node("camera", Params, setup))
