"""``fusion-stream foxglove``: the running graph's topics live in Foxglove, via foxglove-sdk.

Each topic gets a Foxglove channel of the matching well-known schema, so the 3D, Image and Audio
panels work without configuration: images → ``RawImage``/``CompressedImage``, LiDAR and radar →
``PointCloud`` (every float32 field, so colour-by-intensity or radial velocity works), detections
and ground truth → ``SceneUpdate`` (a cube per box in class colours, a label above), audio →
``RawAudio`` (16-bit PCM), diagnostics → ``Log``. With a rig file the sensor frames are published
on ``/tf`` so clouds in sensor frames sit where they belong.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from fusion_stream.core import calib, msgs
from fusion_stream.core.geometry import yaw_to_quaternion
from fusion_stream.core.render import CLASS_COLORS
from fusion_stream.core.wire import Envelope
from fusion_stream.errors import FusionStreamError, UsageError
from fusion_stream.runtime.registry import Registry
from fusion_stream.viewer.tap import TopicTap

log = logging.getLogger(__name__)

TF_TOPIC = "/tf"
_GT_COLOR = (160, 160, 160)


def _sdk() -> tuple[Any, Any, Any]:
    try:
        import foxglove
        import foxglove.messages as fm
        from foxglove import channels
    except ImportError as err:
        raise FusionStreamError(
            f"the Foxglove bridge needs foxglove-sdk: pip install 'fusion-stream[foxglove]' ({err})"
        ) from err
    return foxglove, channels, fm


def _time(fm: Any, ns: int) -> Any:
    return fm.Timestamp(ns // 1_000_000_000, ns % 1_000_000_000)


def _pose(fm: Any, xyz: tuple[float, float, float] | np.ndarray, quat: tuple[float, float, float, float]) -> Any:
    return fm.Pose(
        position=fm.Vector3(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
        orientation=fm.Quaternion(x=quat[0], y=quat[1], z=quat[2], w=quat[3]),
    )


def scene_update(fm: Any, det: msgs.Detections, *, ground_truth: bool = False) -> Any:
    """One entity per box: a translucent cube and its label (class, score, siren)."""
    entities = []
    for i, box in enumerate(det.boxes):
        r, g, b = _GT_COLOR if ground_truth else CLASS_COLORS.get(box.label, (230, 230, 230))
        quat = yaw_to_quaternion(box.yaw)
        cube = fm.CubePrimitive(
            pose=_pose(fm, box.center, quat),
            size=fm.Vector3(x=box.size[0], y=box.size[1], z=box.size[2]),
            color=fm.Color(r=r / 255, g=g / 255, b=b / 255, a=0.25 if ground_truth else 0.45),
        )
        text = f"{box.label} {box.score:.2f}" + (" SIREN" if box.attributes.get("siren") else "")
        label = fm.TextPrimitive(
            pose=_pose(fm, (box.center[0], box.center[1], box.center[2] + box.size[2] / 2 + 0.5), (0.0, 0.0, 0.0, 1.0)),
            billboard=True,
            font_size=14.0,
            scale_invariant=True,
            color=fm.Color(r=1.0, g=1.0, b=1.0, a=1.0),
            text=text,
        )
        entities.append(
            fm.SceneEntity(
                timestamp=_time(fm, det.stamp_ns),
                frame_id=det.frame_id or "base_link",
                id=f"{i}",
                lifetime=fm.Duration(0, 300_000_000),
                cubes=[cube],
                texts=[] if ground_truth else [label],
            )
        )
    return fm.SceneUpdate(entities=entities)


def point_cloud(fm: Any, cloud: msgs.PointCloud | msgs.RadarScan) -> Any:
    f32 = fm.PackedElementFieldNumericType.Float32
    fields = [fm.PackedElementField(name=name, offset=4 * i, type=f32) for i, name in enumerate(cloud.fields)]
    return fm.PointCloud(
        timestamp=_time(fm, cloud.stamp_ns),
        frame_id=cloud.frame_id,
        pose=_pose(fm, (0, 0, 0), (0.0, 0.0, 0.0, 1.0)),
        point_stride=4 * len(cloud.fields),
        fields=fields,
        data=np.ascontiguousarray(cloud.data).tobytes(),
    )


def raw_image(fm: Any, image: msgs.Image) -> Any:
    return fm.RawImage(
        timestamp=_time(fm, image.stamp_ns),
        frame_id=image.frame_id,
        width=image.width,
        height=image.height,
        encoding=image.encoding,
        step=image.width * image.data.shape[2],
        data=np.ascontiguousarray(image.data).tobytes(),
    )


def raw_audio(fm: Any, chunk: msgs.AudioChunk) -> Any:
    data = chunk.data
    pcm = data if data.dtype == np.int16 else np.clip(data * 32767.0, -32768, 32767).astype(np.int16)
    return fm.RawAudio(
        timestamp=_time(fm, chunk.stamp_ns),
        data=np.ascontiguousarray(pcm.T).astype("<i2").tobytes(),
        format="pcm-s16",
        sample_rate=chunk.sample_rate,
        number_of_channels=chunk.channels,
    )


def transforms(fm: Any, rig: calib.Rig, stamp_ns: int) -> Any:
    out = []
    for sensor in rig.sensors.values():
        t = sensor.extrinsics.translation
        q = calib.quaternion_xyzw(sensor.extrinsics.rotation)
        out.append(
            fm.FrameTransform(
                timestamp=_time(fm, stamp_ns),
                parent_frame_id=rig.frame_id,
                child_frame_id=sensor.name,
                translation=fm.Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2])),
                rotation=fm.Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]),
            )
        )
    return fm.FrameTransforms(transforms=out)


class FoxgloveBridge:
    """Relays the graph to Foxglove clients until :meth:`stop`; one thread owns the sockets."""

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        rig: calib.Rig | None = None,
        host: str = "127.0.0.1",
        port: int = 8765,
    ) -> None:
        self.foxglove, self._channels_mod, self.fm = _sdk()
        self.registry = registry or Registry()
        self.rig = rig
        self.context = self.foxglove.Context()
        try:
            self.server = self.foxglove.start_server(name="fusion_stream", host=host, port=port, context=self.context)
        except RuntimeError as err:
            raise UsageError(f"cannot serve Foxglove on {host}:{port}: {err} (choose another --port)") from err
        self.port = int(self.server.port)
        self._channels: dict[str, Any] = {}
        self._next_tf = 0.0
        self.tap = TopicTap(self._on_envelope, registry=self.registry, on_tick=self._tick, name="foxglove-bridge")
        self.relayed = 0
        self.failed = 0

    def start(self) -> FoxgloveBridge:
        self.tap.start()
        return self

    def stop(self) -> None:
        self.tap.stop()
        self.server.stop()

    def _channel(self, topic: str, kind: str) -> Any:
        key = f"{topic}|{kind}"
        chan = self._channels.get(key)
        if chan is None:
            chan = getattr(self._channels_mod, kind)(topic, context=self.context)
            self._channels[key] = chan
        return chan

    def relay(self, topic: str, msg: msgs.Message) -> None:
        """Log one of our messages to the Foxglove channel of its topic."""
        fm = self.fm
        if isinstance(msg, msgs.Image):
            self._channel(topic, "RawImageChannel").log(raw_image(fm, msg), log_time=msg.stamp_ns)
        elif isinstance(msg, msgs.CompressedImage):
            image = fm.CompressedImage(
                timestamp=_time(fm, msg.stamp_ns), frame_id=msg.frame_id, data=msg.data, format=msg.format
            )
            self._channel(topic, "CompressedImageChannel").log(image, log_time=msg.stamp_ns)
        elif isinstance(msg, msgs.PointCloud | msgs.RadarScan):
            self._channel(topic, "PointCloudChannel").log(point_cloud(fm, msg), log_time=msg.stamp_ns)
        elif isinstance(msg, msgs.Detections):
            update = scene_update(fm, msg, ground_truth=topic.startswith("/ground_truth"))
            self._channel(topic, "SceneUpdateChannel").log(update, log_time=msg.stamp_ns)
        elif isinstance(msg, msgs.AudioChunk):
            self._channel(topic, "RawAudioChannel").log(raw_audio(fm, msg), log_time=msg.stamp_ns)
        elif isinstance(msg, msgs.Diagnostics):
            level = {0: fm.LogLevel.Info, 1: fm.LogLevel.Warning, 2: fm.LogLevel.Error, 3: fm.LogLevel.Warning}[
                int(msg.level)
            ]
            text = msg.message or ", ".join(f"{k}={v}" for k, v in list(msg.values.items())[:8])
            entry = fm.Log(timestamp=_time(fm, msg.stamp_ns), level=level, message=text, name=msg.node, file="", line=0)
            self._channel(topic, "LogChannel").log(entry, log_time=msg.stamp_ns)
        else:
            return
        self.relayed += 1

    def _tick(self) -> None:
        now = time.monotonic()
        if self.rig is not None and now >= self._next_tf:
            self._channel(TF_TOPIC, "FrameTransformsChannel").log(transforms(self.fm, self.rig, time.time_ns()))
            self._next_tf = now + 1.0

    def _on_envelope(self, topic: str, env: Envelope) -> None:
        try:
            self.relay(topic, env.message)
        except (ValueError, TypeError) as err:  # one bad message; keep bridging
            self.failed += 1
            log.warning("cannot relay a %s on %s: %s", type(env.message).__name__, topic, err)
