"""The latest messages of a graph as the pictures the viewer shows (pure: messages in, images out).

Messages are sorted by type, not by topic name, so any graph is shown: the newest ``Image`` is
the camera, the newest ``PointCloud`` the LiDAR, ``RadarScan`` the radar, the last audio chunks
the microphone array; ``Detections`` on the ground-truth topic are drawn grey under the rest.
"""

from __future__ import annotations

import io
import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from fusion_stream.core import calib, msgs, render
from fusion_stream.model import preprocess
from fusion_stream.model.config import ModelConfig

log = logging.getLogger(__name__)

GROUND_TRUTH_TOPIC = "/ground_truth/objects"
AUDIO_WINDOW_CHUNKS = 5


@dataclass
class Latest:
    """The newest message of each kind (the viewer's whole memory of the graph)."""

    camera: msgs.Image | msgs.CompressedImage | None = None
    lidar: msgs.PointCloud | None = None
    radar: msgs.RadarScan | None = None
    audio: deque[msgs.AudioChunk] = field(default_factory=lambda: deque(maxlen=AUDIO_WINDOW_CHUNKS))
    detections: msgs.Detections | None = None
    ground_truth: msgs.Detections | None = None
    version: int = 0
    """Bumped on every update, so a picture is only redrawn when something changed."""

    def update(self, topic: str, msg: msgs.Message) -> None:
        if isinstance(msg, msgs.Image | msgs.CompressedImage):
            self.camera = msg
        elif isinstance(msg, msgs.PointCloud):
            self.lidar = msg
        elif isinstance(msg, msgs.RadarScan):
            self.radar = msg
        elif isinstance(msg, msgs.AudioChunk):
            self.audio.append(msg)
        elif isinstance(msg, msgs.Detections):
            if topic == GROUND_TRUTH_TOPIC:
                self.ground_truth = msg
            else:
                self.detections = msg
        else:
            return
        self.version += 1


def _sensor(rig: calib.Rig, kind: calib.SensorType, frame_id: str) -> calib.Sensor | None:
    """The rig sensor a message came from: by frame id, else the rig's first of that kind."""
    if frame_id in rig.sensors and rig[frame_id].type == kind:
        return rig[frame_id]
    found = rig.of_type(kind)
    return found[0] if found else None


def _rgb(image: msgs.Image | msgs.CompressedImage) -> np.ndarray:
    if isinstance(image, msgs.CompressedImage):
        from PIL import Image as PILImage

        return np.asarray(PILImage.open(io.BytesIO(image.data)).convert("RGB"))
    data = image.data
    if image.encoding == "mono8":
        return np.repeat(data, 3, axis=2)
    if image.encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(data[:, :, 2::-1])
    return np.ascontiguousarray(data[:, :, :3])


def lidar_in_rig(latest: Latest, rig: calib.Rig) -> np.ndarray | None:
    if latest.lidar is None:
        return None
    sensor = _sensor(rig, "lidar", latest.lidar.frame_id)
    xyz = latest.lidar.xyz.astype(np.float64)
    return sensor.extrinsics.apply(xyz) if sensor is not None else xyz


def camera_picture(latest: Latest, rig: calib.Rig) -> np.ndarray | None:
    """The camera image with LiDAR points by depth and the detections (class, score, siren)."""
    if latest.camera is None:
        return None
    try:
        rgb = _rgb(latest.camera)
    except OSError as err:  # a JPEG/PNG that does not decode: nothing to show, say why
        log.warning("cannot decode the %s image at %d: %s", latest.camera.format, latest.camera.stamp_ns, err)  # type: ignore[union-attr]
        return None
    sensor = _sensor(rig, "camera", latest.camera.frame_id)
    if sensor is None or sensor.intrinsics is None:
        return rgb
    if (sensor.intrinsics.width, sensor.intrinsics.height) != (rgb.shape[1], rgb.shape[0]):
        return rgb  # a different camera than the rig's: show it without projections
    boxes = latest.detections.boxes if latest.detections is not None else ()
    return render.camera_overlay(rgb, sensor, lidar_in_rig(latest, rig), boxes, radius=1)


def bird_eye_picture(latest: Latest, rig: calib.Rig, extent_m: float = 40.0) -> np.ndarray:
    radar_xyz = radar_v = None
    if latest.radar is not None:
        sensor = _sensor(rig, "radar", latest.radar.frame_id)
        xyz = latest.radar.xyz.astype(np.float64)
        radar_xyz = sensor.extrinsics.apply(xyz) if sensor is not None else xyz
        radar_v = latest.radar.field("radial_velocity")
    return render.bird_eye_view(
        lidar_in_rig(latest, rig),
        latest.detections.boxes if latest.detections is not None else (),
        radar_xyz,
        radar_v,
        ground_truth=latest.ground_truth.boxes if latest.ground_truth is not None else (),
        extent_m=extent_m,
        pixels_per_m=7.0,
    )


def audio_picture(latest: Latest, rig: calib.Rig, cfg: ModelConfig | None = None) -> np.ndarray | None:
    """SRP-PHAT power over azimuth from the last chunks (the fusion network's own audio front end)."""
    if not latest.audio:
        return None
    mics = rig.of_type("microphones")
    if not mics or mics[0].microphones is None:
        return None
    chunks = list(latest.audio)
    if len({c.channels for c in chunks}) != 1 or chunks[0].channels != len(mics[0].microphones):
        return None
    samples = np.concatenate([c.data.astype(np.float32) for c in chunks], axis=1)
    cfg = cfg or ModelConfig()
    features = preprocess.audio_inputs(
        samples, chunks[-1].sample_rate, mics[0].extrinsics.apply(mics[0].microphones), cfg
    )
    return render.audio_polar(features[: cfg.azimuth_bins])


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
