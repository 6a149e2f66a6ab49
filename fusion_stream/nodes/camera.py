"""Camera node: RGB ``Image`` frames (or JPEG ``CompressedImage`` with ``jpeg: true``) stamped
with their capture time.

``source`` picks where frames come from:

* ``sim`` renders the simulated world through the rig's intrinsics (about 640×384, 15 Hz);
* ``folder`` plays the images of ``path`` (.png/.jpg by name, or a KITTI object folder) on the
  capture grid at ``rate_hz``, stamped with the grid time, so it lines up with the LiDAR and
  labels of the same KITTI frame;
* ``video`` plays the video file ``path`` in real time, stamped playback start + file time;
* ``device`` (``device``: index or /dev/videoN) and ``url`` (``url``: rtsp://, http://…) stream a
  live camera, stamped with the host time at grab; a camera that fails or disappears is retried
  with backoff while ``/diagnostics`` reports WARN.

Recordings loop unless ``loop: false`` (then the node exits 0 after the last frame)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_stream.core.msgs import CompressedImage, Image
from fusion_stream.errors import ParamError
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics
from fusion_stream.runtime.params import existing
from fusion_stream.runtime.runner import run_node
from fusion_stream.sim.camera import CameraModel
from fusion_stream.sim.capture import camera_image
from fusion_stream.sim.sensors import SimParams, check_sim, open_sensor, open_world, publish_on_grid
from fusion_stream.sources import camera
from fusion_stream.sources.playback import publish_recording

SOURCES = ("sim", "folder", "video", "device", "url")


@dataclass(frozen=True)
class Params(SimParams):
    sensor: str = "camera_front"
    """Rig sensor name; also the ``frame_id`` of real-source frames."""
    topic: str = "/camera/front/image"
    rate_hz: float = 15.0
    """Capture grid of ``sim`` and ``folder``; the frame rate requested from a ``device``."""
    path: str = ""
    device: int | str = 0
    url: str = ""
    jpeg: bool = False
    quality: int = 90
    loop: bool = True


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


def _need(value: str, key: str, what: str, source: str) -> str:
    if not value:
        raise ParamError(key, f"source: {source} needs {key}: {what}")
    return value


def check(p: Params) -> None:
    """What can be judged before the node starts (``fusion-stream launch`` calls it; so does setup)."""
    if p.source not in SOURCES:
        raise ParamError("source", f"must be one of {', '.join(SOURCES)}, got {p.source!r}")
    if p.source == "sim":
        check_sim(p, p.sensor, "camera")
        return
    camera.check_quality(p.quality)
    if p.source == "folder":
        existing("path", _need(p.path, "path", "an image or KITTI folder", p.source), "an image or KITTI folder")
    elif p.source == "video":
        existing("path", _need(p.path, "path", "a video file", p.source), "a video file")
    elif p.source == "url":
        _need(p.url, "url", "a stream address", p.source)


def setup(node: Node, p: Params) -> None:
    check(p)
    if p.source == "sim":
        setup_sim(node, p)
        return
    if p.source == "folder":
        folder = camera.ImageFolder(existing("path", p.path, "an image or KITTI folder"))
        node.log.info("playing %d images of %s at %g Hz", len(folder), folder.root, p.rate_hz)
        publish_recording(
            node,
            p.topic,
            p.rate_hz,
            p.epoch_ns,
            len(folder),
            lambda i, at: folder.message(i, at, p.sensor, jpeg=p.jpeg, quality=p.quality),
            loop=p.loop,
            msg_type=CompressedImage if p.jpeg else Image,
        )
    elif p.source == "video":
        path = str(existing("path", p.path, "a video file"))
        camera.publish_video(node, p.topic, path, p.sensor, loop=p.loop, jpeg=p.jpeg, quality=p.quality)
    else:
        source = p.device if p.source == "device" else p.url
        fps = p.rate_hz if p.source == "device" else 0.0
        camera.publish_live(node, p.topic, source, p.sensor, fps=fps, jpeg=p.jpeg, quality=p.quality)


def setup_sim(node: Node, p: Params) -> None:
    world = open_world(p)
    sensor = open_sensor(p, p.sensor, "camera")
    assert sensor.intrinsics is not None  # calib.load guarantees it for cameras
    model = CameraModel(sensor.intrinsics, sensor.distortion)

    def capture(at: int, out: np.ndarray) -> Image:
        return camera_image(world, sensor, model, at, p.epoch_ns, out=out)

    # each frame is rendered straight into a loan of the publisher's shared-memory pool (or a
    # plain array without one): published with no copy
    shape = (sensor.intrinsics.height, sensor.intrinsics.width, 3)
    publish_on_grid(node, p.topic, p.rate_hz, p.epoch_ns, capture, msg_type=Image, lend=(shape, np.uint8))


if __name__ == "__main__":
    raise SystemExit(run_node("camera", Params, setup))
