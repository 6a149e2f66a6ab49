"""Conversion between fusion_stream messages and ROS 2 messages — the only place that knows both.

Writing (:func:`to_ros`) is lossless for everything we publish: arrays keep their dtype and
bytes, stamps their nanoseconds. Detections go to ``vision_msgs/Detection3DArray``; what that type
has no field for (velocity, track id, attributes such as the siren) travels as compact JSON in
each ``Detection3D.id``. Reading (:func:`from_ros`) also accepts what other drivers record:
PointCloud2 of any field layout and datatype, Image in common encodings, CompressedImage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from fusion_stream.bag import rostypes as rt
from fusion_stream.core import msgs
from fusion_stream.core.geometry import quaternion_to_yaw, yaw_to_quaternion
from fusion_stream.errors import FormatError, MessageError

Kind = Literal["lidar", "radar"]

_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_FLOAT32 = 7
_RADAR_VELOCITY = ("radial_velocity", "doppler", "v_r", "velocity", "vr")
_RADAR_RCS = ("rcs", "RCS", "rcs_dbsm")
_TIME_FIELDS = {  # field name -> scale to seconds, for per-point time offsets
    "time_offset": 1.0,
    "time": 1.0,  # velodyne_pointcloud: float32 seconds after the stamp
    "t": 1e-9,  # ouster: uint32 nanoseconds after the stamp
    "time_stamp": 1e-9,  # nebula: uint32 nanoseconds after the stamp
    "offset_time": 1e-9,  # livox
}
_RING_FIELDS = ("ring", "channel", "laser_id")
_INTENSITY_FIELDS = ("intensity", "reflectivity", "i")


def _t(store: Any, name: str) -> Any:
    return store.types[name]


def _stamp(store: Any, ns: int) -> Any:
    return _t(store, "builtin_interfaces/msg/Time")(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(store: Any, msg: msgs.Header) -> Any:
    return _t(store, "std_msgs/msg/Header")(stamp=_stamp(store, msg.stamp_ns), frame_id=msg.frame_id)


def stamp_ns(ros_header_or_time: Any) -> int:
    """Nanoseconds of a ROS ``Header`` or ``Time`` (negative times from broken clocks → error)."""
    t = getattr(ros_header_or_time, "stamp", ros_header_or_time)
    ns = int(t.sec) * 1_000_000_000 + int(t.nanosec)
    if ns < 0:
        raise FormatError(f"negative header stamp {t.sec}.{t.nanosec:09d}")
    return ns


def _quaternion(store: Any, yaw: float) -> Any:
    x, y, z, w = yaw_to_quaternion(yaw)
    return _t(store, "geometry_msgs/msg/Quaternion")(x=x, y=y, z=z, w=w)


def _yaw(q: Any) -> float:
    return quaternion_to_yaw(q.x, q.y, q.z, q.w)


# --------------------------------------------------------------------------- ours → ROS


def _pointcloud2(store: Any, cloud: msgs.PointCloud | msgs.RadarScan) -> Any:
    n, f = cloud.data.shape
    field_t = _t(store, "sensor_msgs/msg/PointField")
    fields = [field_t(name=name, offset=4 * i, datatype=_FLOAT32, count=1) for i, name in enumerate(cloud.fields)]
    data = np.ascontiguousarray(cloud.data).view(np.uint8).reshape(-1)
    return _t(store, rt.POINT_CLOUD2)(
        header=_header(store, cloud),
        height=1,
        width=n,
        fields=fields,
        is_bigendian=False,
        point_step=4 * f,
        row_step=4 * f * n,
        data=data,
        is_dense=bool(np.isfinite(cloud.data).all()),
    )


def _box_extras(box: msgs.Box3D) -> str:
    extras: dict[str, Any] = {}
    if box.velocity != (0.0, 0.0):
        extras["v"] = list(box.velocity)
    if box.track_id != -1:
        extras["track"] = box.track_id
    if box.attributes:
        extras["attr"] = dict(box.attributes)
    return json.dumps(extras, separators=(",", ":")) if extras else ""


def _detection3d_array(store: Any, det: msgs.Detections) -> Any:
    header = _header(store, det)
    point_t, pose_t = _t(store, "geometry_msgs/msg/Point"), _t(store, "geometry_msgs/msg/Pose")
    items = []
    for box in det.boxes:
        pose = pose_t(
            position=point_t(x=box.center[0], y=box.center[1], z=box.center[2]), orientation=_quaternion(store, box.yaw)
        )
        hypothesis = _t(store, "vision_msgs/msg/ObjectHypothesisWithPose")(
            hypothesis=_t(store, "vision_msgs/msg/ObjectHypothesis")(class_id=box.label, score=box.score),
            pose=_t(store, "geometry_msgs/msg/PoseWithCovariance")(pose=pose, covariance=np.zeros(36, np.float64)),
        )
        bbox = _t(store, "vision_msgs/msg/BoundingBox3D")(
            center=pose, size=_t(store, "geometry_msgs/msg/Vector3")(x=box.size[0], y=box.size[1], z=box.size[2])
        )
        items.append(
            _t(store, "vision_msgs/msg/Detection3D")(
                header=header, results=[hypothesis], bbox=bbox, id=_box_extras(box)
            )
        )
    return _t(store, rt.DETECTION3D_ARRAY)(header=header, detections=items)


def _diagnostic_array(store: Any, d: msgs.Diagnostics) -> Any:
    kv = _t(store, "diagnostic_msgs/msg/KeyValue")
    values = [kv(key=k, value=json.dumps(v)) for k, v in d.values.items()]
    status = _t(store, "diagnostic_msgs/msg/DiagnosticStatus")(
        level=int(d.level), name=d.node, message=d.message, hardware_id=d.frame_id, values=values
    )
    return _t(store, rt.DIAGNOSTIC_ARRAY)(header=_header(store, d), status=[status])


def _synced_frame(store: Any, frame: msgs.SyncedFrame) -> Any:
    member_t = _t(store, "fusion_stream_msgs/msg/SyncedMember")
    members = [
        member_t(input=name, stamps=[_stamp(store, m.stamp_ns) for m in items]) for name, items in frame.members.items()
    ]
    return _t(store, rt.SYNCED_FRAME)(header=_header(store, frame), members=members, missing=list(frame.missing))


def to_ros(msg: msgs.Message) -> tuple[str, Any]:
    """(ROS type name, ROS message object) for one of our messages."""
    store = rt.typestore()
    if isinstance(msg, msgs.Image):
        h, w, c = msg.data.shape
        data = np.ascontiguousarray(msg.data).reshape(-1)
        return rt.IMAGE, _t(store, rt.IMAGE)(
            header=_header(store, msg), height=h, width=w, encoding=msg.encoding, is_bigendian=0, step=w * c, data=data
        )
    if isinstance(msg, msgs.CompressedImage):
        data = np.frombuffer(msg.data, np.uint8)
        return rt.COMPRESSED_IMAGE, _t(store, rt.COMPRESSED_IMAGE)(
            header=_header(store, msg), format=msg.format, data=data
        )
    if isinstance(msg, msgs.PointCloud | msgs.RadarScan):
        return rt.POINT_CLOUD2, _pointcloud2(store, msg)
    if isinstance(msg, msgs.AudioChunk):
        data = (
            np.ascontiguousarray(msg.data.astype(msg.data.dtype.newbyteorder("<"), copy=False))
            .view(np.uint8)
            .reshape(-1)
        )
        return rt.AUDIO_CHUNK, _t(store, rt.AUDIO_CHUNK)(
            header=_header(store, msg),
            sample_rate=msg.sample_rate,
            first_sample=msg.first_sample,
            channels=msg.channels,
            samples=msg.samples,
            encoding=str(msg.data.dtype.name),
            data=data,
        )
    if isinstance(msg, msgs.Detections):
        return rt.DETECTION3D_ARRAY, _detection3d_array(store, msg)
    if isinstance(msg, msgs.Diagnostics):
        return rt.DIAGNOSTIC_ARRAY, _diagnostic_array(store, msg)
    if isinstance(msg, msgs.ClockTick):
        return rt.CLOCK, _t(store, rt.CLOCK)(clock=_stamp(store, msg.stamp_ns))
    if isinstance(msg, msgs.SyncedFrame):
        return rt.SYNCED_FRAME, _synced_frame(store, msg)
    raise FormatError(f"no ROS type for {type(msg).__name__}")


def serialize(msg: msgs.Message) -> tuple[str, bytes]:
    """(ROS type name, CDR bytes) of one of our messages."""
    typename, ros = to_ros(msg)
    return typename, bytes(rt.typestore().serialize_cdr(ros, typename))


# --------------------------------------------------------------------------- ROS → ours


def _first(names: tuple[str, ...], available: Mapping[str, Any]) -> str | None:
    return next((n for n in names if n in available), None)


def cloud_from_pointcloud2(ros: Any, kind: Kind | None = None) -> msgs.PointCloud | msgs.RadarScan:
    """A PointCloud2 of any layout as our float32 cloud. ``kind`` forces LiDAR or radar; without
    it, clouds with a radial-velocity and an RCS field are radar."""
    fields = {f.name: f for f in ros.fields if f.count >= 1}
    missing = [a for a in ("x", "y", "z") if a not in fields]
    if missing:
        raise FormatError(f"PointCloud2 has no {missing} field; it has {list(fields)}")
    n = int(ros.width) * int(ros.height)
    step = int(ros.point_step)
    raw = np.asarray(ros.data, dtype=np.uint8)
    if raw.size < n * step:
        raise FormatError(f"PointCloud2 data is {raw.size} bytes, {n} points × {step} B need {n * step}")
    if int(ros.height) > 1 and int(ros.row_step) != int(ros.width) * step:  # padded rows
        raw = raw[: int(ros.height) * int(ros.row_step)].reshape(int(ros.height), -1)[:, : int(ros.width) * step]
    rows = np.ascontiguousarray(raw[: n * step]).reshape(n, step) if n else np.zeros((0, step), np.uint8)
    order = ">" if ros.is_bigendian else "<"

    def column(name: str) -> np.ndarray:
        f = fields[name]
        code = _POINTFIELD_DTYPES.get(int(f.datatype))
        if code is None:
            raise FormatError(f"PointCloud2 field {name!r} has unknown datatype {f.datatype}")
        width = np.dtype(code).itemsize
        if f.offset + width > step:
            raise FormatError(f"PointCloud2 field {name!r} at offset {f.offset} runs past point_step {step}")
        raw_col = np.ascontiguousarray(rows[:, f.offset : f.offset + width]).view(order + code).reshape(-1)
        return raw_col.astype(np.float32)

    velocity = _first(_RADAR_VELOCITY, fields)
    rcs = _first(_RADAR_RCS, fields)
    is_radar = kind == "radar" or (kind is None and velocity is not None and rcs is not None)
    stamp = stamp_ns(ros.header)
    if is_radar:
        if velocity is None or rcs is None:
            raise FormatError(f"radar PointCloud2 needs a radial velocity and an RCS field; it has {list(fields)}")
        return msgs.RadarScan.from_fields(  # type: ignore[return-value]
            stamp_ns=stamp,
            frame_id=ros.header.frame_id,
            x=column("x"),
            y=column("y"),
            z=column("z"),
            radial_velocity=column(velocity),
            rcs=column(rcs),
        )
    columns = {"x": column("x"), "y": column("y"), "z": column("z")}
    intensity = _first(_INTENSITY_FIELDS, fields)
    columns["intensity"] = column(intensity) if intensity else np.zeros(n, np.float32)
    ring = _first(_RING_FIELDS, fields)
    if ring:
        columns["ring"] = column(ring)
    time_name = _first(tuple(_TIME_FIELDS), fields)
    if time_name:
        columns["time_offset"] = column(time_name) * np.float32(_TIME_FIELDS[time_name])
    return msgs.PointCloud.from_fields(stamp_ns=stamp, frame_id=ros.header.frame_id, **columns)  # type: ignore[return-value]


def _image(ros: Any) -> msgs.Image:
    h, w, step = int(ros.height), int(ros.width), int(ros.step)
    encoding = {"8UC1": "mono8", "8UC3": "bgr8", "8UC4": "bgra8"}.get(ros.encoding, ros.encoding)
    channels = msgs.IMAGE_ENCODINGS.get(encoding)
    data = np.asarray(ros.data, dtype=np.uint8)
    if channels is not None:
        if data.size < h * step or step < w * channels:
            raise FormatError(f"Image {w}x{h} {ros.encoding}: {data.size} bytes with step {step} is too short")
        pixels = data[: h * step].reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    elif encoding in ("mono16", "16UC1"):  # depth or 16-bit mono: keep the high byte for display
        order = ">" if ros.is_bigendian else "<"
        words = data[: h * step].reshape(h, step)[:, : 2 * w].copy().view(order + "u2").reshape(h, w)
        pixels, encoding = (words >> 8).astype(np.uint8)[..., None], "mono8"
    else:
        raise FormatError(
            f"Image encoding {ros.encoding!r} is not supported; use one of {list(msgs.IMAGE_ENCODINGS)} or mono16"
        )
    return msgs.Image(
        stamp_ns=stamp_ns(ros.header),
        frame_id=ros.header.frame_id,
        data=np.ascontiguousarray(pixels),
        encoding=encoding,
    )


def _compressed(ros: Any) -> msgs.CompressedImage:
    fmt = ros.format.lower()
    kind = "png" if "png" in fmt else "jpeg" if ("jpeg" in fmt or "jpg" in fmt) else None
    if kind is None:
        raise FormatError(f"CompressedImage format {ros.format!r} is neither jpeg nor png")
    return msgs.CompressedImage(
        stamp_ns=stamp_ns(ros.header), frame_id=ros.header.frame_id, data=bytes(ros.data), format=kind
    )


def _audio(ros: Any) -> msgs.AudioChunk:
    if ros.encoding not in ("float32", "int16"):
        raise FormatError(f"AudioChunk encoding {ros.encoding!r} is neither float32 nor int16")
    dtype = np.dtype(ros.encoding).newbyteorder("<")
    data = np.asarray(ros.data, dtype=np.uint8)
    expected = int(ros.channels) * int(ros.samples) * dtype.itemsize
    if data.size != expected:
        raise FormatError(
            f"AudioChunk holds {data.size} bytes, {ros.channels} × {ros.samples} {ros.encoding} need {expected}"
        )
    samples = data.view(dtype).astype(dtype.newbyteorder("="), copy=False).reshape(int(ros.channels), int(ros.samples))
    return msgs.AudioChunk(
        stamp_ns=stamp_ns(ros.header),
        frame_id=ros.header.frame_id,
        data=samples,
        sample_rate=int(ros.sample_rate),
        first_sample=int(ros.first_sample),
    )


def _box(det: Any) -> msgs.Box3D:
    if not det.results:
        raise FormatError("Detection3D without a hypothesis (class and score)")
    hyp = det.results[0].hypothesis
    extras: dict[str, Any] = {}
    if det.id.startswith("{"):
        try:
            extras = json.loads(det.id)
        except json.JSONDecodeError as err:
            raise FormatError(f"Detection3D.id is not our JSON: {det.id!r}") from err
    c, s = det.bbox.center.position, det.bbox.size
    track = extras.get("track", -1 if not det.id.isdigit() else int(det.id))
    return msgs.Box3D(
        center=(c.x, c.y, c.z),
        size=(s.x, s.y, s.z),
        yaw=_yaw(det.bbox.center.orientation),
        velocity=tuple(extras.get("v", (0.0, 0.0))),
        label=hyp.class_id,
        score=min(max(hyp.score, 0.0), 1.0),
        track_id=int(track),
        attributes=extras.get("attr", {}),
    )


def _diagnostics(ros: Any) -> msgs.Diagnostics:
    if not ros.status:
        raise FormatError("DiagnosticArray without a status")
    st = ros.status[0]

    def value(text: str) -> msgs.ScalarValue:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return text  # written by another tool: a plain string
        return parsed if isinstance(parsed, bool | int | float | str) else text

    return msgs.Diagnostics(
        stamp_ns=stamp_ns(ros.header),
        frame_id=st.hardware_id,
        node=st.name or "unknown",
        level=msgs.Level(min(int(st.level), 3)),
        message=st.message,
        values={kv.key: value(kv.value) for kv in st.values},
    )


CONVERTIBLE = (
    rt.IMAGE,
    rt.COMPRESSED_IMAGE,
    rt.POINT_CLOUD2,
    rt.AUDIO_CHUNK,
    rt.DETECTION3D_ARRAY,
    rt.DIAGNOSTIC_ARRAY,
    rt.CLOCK,
)
"""ROS types that :func:`from_ros` turns into fusion_stream messages (synced-frame indexes are not
messages one can republish: the synchronizer makes them again)."""


def from_ros(typename: str, ros: Any, *, kind: Kind | None = None) -> msgs.Message:
    """Our message for a ROS message; :class:`FormatError` for a type we have none for."""
    try:
        if typename == rt.POINT_CLOUD2:
            return cloud_from_pointcloud2(ros, kind)
        if typename == rt.IMAGE:
            return _image(ros)
        if typename == rt.COMPRESSED_IMAGE:
            return _compressed(ros)
        if typename == rt.AUDIO_CHUNK:
            return _audio(ros)
        if typename == rt.DETECTION3D_ARRAY:
            return msgs.Detections(
                stamp_ns=stamp_ns(ros.header),
                frame_id=ros.header.frame_id,
                boxes=tuple(_box(d) for d in ros.detections),
            )
        if typename == rt.DIAGNOSTIC_ARRAY:
            return _diagnostics(ros)
        if typename == rt.CLOCK:
            return msgs.ClockTick(stamp_ns=stamp_ns(ros.clock))
    except MessageError as err:
        raise FormatError(f"{typename}: {err}") from err
    raise FormatError(f"no fusion_stream message for ROS type {typename!r}; convertible are {list(CONVERTIBLE)}")


def deserialize(typename: str, cdr: bytes | memoryview, *, kind: Kind | None = None) -> msgs.Message:
    """Our message from CDR bytes of a ROS 2 message of ``typename``."""
    try:
        ros = rt.typestore().deserialize_cdr(bytes(cdr), typename)
    except KeyError as err:
        raise FormatError(f"unknown message type {typename!r}") from err
    except Exception as err:  # rosbags raises assorted errors on short or garbled CDR
        raise FormatError(f"{typename}: CDR data does not decode ({type(err).__name__}: {err})") from err
    return from_ros(typename, ros, kind=kind)


# --------------------------------------------------------------------------- for viewers

MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
_GT_RGB = (0.6, 0.6, 0.6)


def detection_markers(det: msgs.Detections, *, ground_truth: bool = False) -> tuple[str, bytes]:
    """A ``MarkerArray`` drawing the boxes (translucent cubes in class colours, a label above),
    which Foxglove's and RViz's 3D views show without plugins (neither draws vision_msgs)."""
    from fusion_stream.core.render import CLASS_COLORS

    store = rt.typestore()
    marker_t, color_t = _t(store, "visualization_msgs/msg/Marker"), _t(store, "std_msgs/msg/ColorRGBA")
    point_t, pose_t, vec_t = (_t(store, f"geometry_msgs/msg/{n}") for n in ("Point", "Pose", "Vector3"))
    header = _header(store, det)
    lifetime = _t(store, "builtin_interfaces/msg/Duration")(sec=0, nanosec=300_000_000)
    empty_image = _t(store, rt.COMPRESSED_IMAGE)(header=header, format="", data=np.zeros(0, np.uint8))
    mesh = _t(store, "visualization_msgs/msg/MeshFile")(filename="", data=np.zeros(0, np.uint8))
    items = []

    def marker(
        i: int, kind: int, pose: Any, scale: Any, rgba: tuple[float, float, float, float], text: str = ""
    ) -> Any:
        return marker_t(
            header=header, ns="labels" if text else "boxes", id=i, type=kind, action=0, pose=pose, scale=scale,
            color=color_t(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3]), lifetime=lifetime, frame_locked=False,
            points=[], colors=[], texture_resource="", texture=empty_image, uv_coordinates=[], text=text,
            mesh_resource="", mesh_file=mesh, mesh_use_embedded_materials=False,
        )  # fmt: skip

    for i, box in enumerate(det.boxes):
        r, g, b = _GT_RGB if ground_truth else (c / 255 for c in CLASS_COLORS.get(box.label, (230, 230, 230)))
        pose = pose_t(
            position=point_t(x=box.center[0], y=box.center[1], z=box.center[2]), orientation=_quaternion(store, box.yaw)
        )
        items.append(
            marker(
                i, 1, pose, vec_t(x=box.size[0], y=box.size[1], z=box.size[2]), (r, g, b, 0.3 if ground_truth else 0.5)
            )
        )
        if not ground_truth:
            above = pose_t(
                position=point_t(x=box.center[0], y=box.center[1], z=box.center[2] + box.size[2] / 2 + 0.6),
                orientation=_quaternion(store, 0.0),
            )
            text = f"{box.label} {box.score:.2f}" + (" SIREN" if box.attributes.get("siren") else "")
            items.append(marker(i, 9, above, vec_t(x=0.0, y=0.0, z=0.6), (1.0, 1.0, 1.0, 1.0), text))
    return MARKER_ARRAY, bytes(store.serialize_cdr(_t(store, MARKER_ARRAY)(markers=items), MARKER_ARRAY))


def tf_static(rig: Any, stamp: int) -> tuple[str, bytes]:
    """The rig's sensor poses as a ``tf2_msgs/TFMessage`` (rig frame → each sensor's frame)."""
    from fusion_stream.core.calib import quaternion_xyzw

    store = rt.typestore()
    transforms = []
    for sensor in rig.sensors.values():
        t = sensor.extrinsics.translation
        x, y, z, w = quaternion_xyzw(sensor.extrinsics.rotation)
        transforms.append(
            _t(store, "geometry_msgs/msg/TransformStamped")(
                header=_t(store, "std_msgs/msg/Header")(stamp=_stamp(store, stamp), frame_id=rig.frame_id),
                child_frame_id=sensor.name,
                transform=_t(store, "geometry_msgs/msg/Transform")(
                    translation=_t(store, "geometry_msgs/msg/Vector3")(x=float(t[0]), y=float(t[1]), z=float(t[2])),
                    rotation=_t(store, "geometry_msgs/msg/Quaternion")(x=x, y=y, z=z, w=w),
                ),
            )
        )
    return TF_MESSAGE, bytes(store.serialize_cdr(_t(store, TF_MESSAGE)(transforms=transforms), TF_MESSAGE))
