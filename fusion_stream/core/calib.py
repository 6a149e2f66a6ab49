"""Rig calibration: where each sensor sits, how cameras project, when sensors' clocks lag.

``calib/<rig>.yaml`` is read once by :func:`load` into frozen objects, validated, with errors
that name the file and the key (``sensors.camera_front.intrinsics.fx``)::

    rig: sim
    frame_id: base_link
    sensors:
      camera_front:
        type: camera
        extrinsics: {translation: [1.5, 0.0, 1.6], rotation_rpy_deg: [-90, 0, -90]}
        intrinsics: {width: 640, height: 384, fx: 400, fy: 400, cx: 320, cy: 192}
        distortion: [0, 0, 0, 0, 0]        # plumb_bob k1 k2 p1 p2 k3
        time_offset_ms: 0
      mic_array:
        type: microphones
        extrinsics: {translation: [0, 0, 1.8]}
        microphones: [[0.1, 0.1, 0], [-0.1, 0.1, 0], [-0.1, -0.1, 0], [0.1, -0.1, 0]]

Extrinsics map sensor coordinates to rig coordinates (``p_rig = R p_sensor + t``); rotations are
roll-pitch-yaw in degrees (applied as Rz(yaw) Ry(pitch) Rx(roll)) or a quaternion ``[x, y, z, w]``.
Camera coordinates follow the optical convention (x right, y down, z forward).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fusion_stream.core.yamlio import read_mapping
from fusion_stream.errors import CalibrationError, ParamError, UnknownNameError

__all__ = ["CalibrationError", "Intrinsics", "Rig", "Sensor", "Transform", "load"]

SensorType = Literal["camera", "lidar", "radar", "microphones"]
_TYPES = ("camera", "lidar", "radar", "microphones")


@dataclass(frozen=True, eq=False)
class Transform:
    """A rigid transform as a 4×4 matrix (read-only)."""

    matrix: np.ndarray

    @classmethod
    def identity(cls) -> Transform:
        return cls(_frozen(np.eye(4)))

    @classmethod
    def from_rpy(cls, translation: tuple[float, float, float], rpy_rad: tuple[float, float, float]) -> Transform:
        r, p, y = rpy_rad
        rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
        ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
        rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
        return cls._from(rz @ ry @ rx, translation)

    @classmethod
    def from_quaternion(
        cls, translation: tuple[float, float, float], xyzw: tuple[float, float, float, float]
    ) -> Transform:
        x, y, z, w = np.asarray(xyzw, dtype=np.float64) / np.linalg.norm(xyzw)
        rot = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        return cls._from(rot, translation)

    @classmethod
    def _from(cls, rotation: np.ndarray, translation: tuple[float, float, float]) -> Transform:
        m = np.eye(4)
        m[:3, :3] = rotation
        m[:3, 3] = translation
        return cls(_frozen(m))

    @property
    def rotation(self) -> np.ndarray:
        return self.matrix[:3, :3]

    @property
    def translation(self) -> np.ndarray:
        return self.matrix[:3, 3]

    def inverse(self) -> Transform:
        rot_t = self.rotation.T
        return Transform._from(rot_t, tuple(-rot_t @ self.translation))  # type: ignore[arg-type]

    def __matmul__(self, other: Transform) -> Transform:
        return Transform(_frozen(self.matrix @ other.matrix))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """N×3 points in the source frame → N×3 in the target frame (float64)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return np.asarray(pts @ self.rotation.T + self.translation)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Intrinsics:
    """A camera's pinhole model: image size, focal lengths and principal point (px)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Sensor:
    """One sensor of the rig: its type, where it sits (sensor → rig) and its clock offset."""

    name: str
    type: SensorType
    extrinsics: Transform
    """Sensor → rig."""
    time_offset_ns: int = 0
    """Add to the sensor's stamps to get rig time."""
    intrinsics: Intrinsics | None = None
    distortion: tuple[float, ...] = ()
    microphones: np.ndarray | None = None
    """M×3 microphone positions in the sensor frame (``microphones`` sensors)."""

    def project(self, points_rig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (N×2, float) of rig-frame points, and a mask of those in front and in the image.

        Uses the pinhole model with plumb_bob distortion."""
        if self.intrinsics is None:
            raise ParamError("sensor", f"sensor {self.name!r} is a {self.type}, not a camera")
        cam = self.extrinsics.inverse().apply(points_rig)
        z = cam[:, 2]
        in_front = z > 1e-6
        safe_z = np.where(in_front, z, 1.0)
        x, y = cam[:, 0] / safe_z, cam[:, 1] / safe_z
        if any(self.distortion):
            k1, k2, p1, p2, k3 = (list(self.distortion) + [0.0] * 5)[:5]
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
            x, y = (
                x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
            )
        k = self.intrinsics
        uv = np.stack([k.fx * x + k.cx, k.fy * y + k.cy], axis=1)
        inside = in_front & (uv[:, 0] >= 0) & (uv[:, 0] < k.width) & (uv[:, 1] >= 0) & (uv[:, 1] < k.height)
        return uv, inside


@dataclass(frozen=True)
class Rig:
    """The calibrated rig: its frame and its sensors by name (``rig["lidar"]``), read by :func:`load`."""

    name: str
    frame_id: str
    sensors: Mapping[str, Sensor] = field(default_factory=dict)
    path: str = ""

    def __getitem__(self, name: str) -> Sensor:
        try:
            return self.sensors[name]
        except KeyError:
            raise UnknownNameError(
                "sensor", name, f"rig {self.name!r} has no sensor {name!r}; it has {sorted(self.sensors)}"
            ) from None

    def of_type(self, kind: SensorType) -> list[Sensor]:
        return [s for s in self.sensors.values() if s.type == kind]


# --------------------------------------------------------------------------- loading


# Physically sensible bounds: anything outside is a typo or a hostile file, and would otherwise
# overflow (1e15 ms is beyond int64 nanoseconds) or make consumers allocate 1e9 x 1e9 images.
MAX_TRANSLATION_M = 1000.0
"""A sensor within a kilometre of the rig origin (a vehicle, or a site for fixed sensors)."""
MAX_ANGLE_DEG = 360.0
MAX_TIME_OFFSET_MS = 86_400_000.0
"""One day: larger offsets are a clock in another epoch, not a lag."""
MAX_IMAGE_PX = 16384
MAX_IMAGE_PIXELS = 100_000_000
"""Width × height: the largest camera sensors have ~100 MP."""
MAX_FOCAL_PX = 1e6
MAX_DISTORTION = 100.0
"""plumb_bob coefficients are O(1); 100 is far beyond any real lens."""
MAX_MIC_OFFSET_M = 10.0
"""Microphone positions relative to the array's own frame."""
MAX_MICROPHONES = 256
MAX_SENSORS = 256


def _show(raw: Any) -> str:
    """A bad value for an error message: numbers as written (short), anything else by type only
    (a file's content is not echoed: it may be long, or not meant to be printed)."""
    if raw is None or isinstance(raw, bool | int | float):
        text = repr(raw) if not isinstance(raw, int) or abs(raw) < 10**30 else f"an integer of {len(str(raw))} digits"
        return text
    return f"a {type(raw).__name__}"


def _number(
    raw: Any, path: str, key: str, lo: float, hi: float, what: str = "a number", *, above_lo: bool = False
) -> float:
    """``raw`` as a finite float in [lo, hi] (or (lo, hi] with ``above_lo``); a CalibrationError
    naming the key otherwise (never an OverflowError for 1e303 or a 400-digit integer)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise CalibrationError(path, key, f"must be {what}, got {_show(raw)}")
    try:
        v = float(raw)
    except OverflowError:
        v = math.inf
    if not math.isfinite(v) or v > hi or v < lo or (above_lo and v == lo):
        interval = f"{'(' if above_lo else '['}{lo:g}, {hi:g}]"
        raise CalibrationError(path, key, f"must be {what} in {interval}, got {_show(raw)}")
    return v


def _numbers(raw: Any, n: int | None, path: str, key: str, bound: float) -> tuple[float, ...]:
    """A list of ``n`` numbers, each within ±``bound``."""
    if not isinstance(raw, list | tuple) or (n is not None and len(raw) != n):
        want = f"{n} numbers" if n else "a list of numbers"
        got = f"{len(raw)} values" if isinstance(raw, list | tuple) else _show(raw)
        raise CalibrationError(path, key, f"must be {want}, got {got}")
    return tuple(_number(v, path, f"{key}[{i}]", -bound, bound) for i, v in enumerate(raw))


def _extrinsics(raw: Any, path: str, key: str) -> Transform:
    if raw is None:
        raise CalibrationError(path, key, "missing: every sensor needs its pose in the rig frame")
    if not isinstance(raw, Mapping):
        raise CalibrationError(path, key, "must be a mapping with translation and a rotation")
    unknown = set(raw) - {"translation", "rotation_rpy_deg", "rotation_quaternion"}
    if unknown:
        raise CalibrationError(path, f"{key}.{sorted(unknown)[0]}", "unknown key")
    t = _numbers(raw.get("translation", [0, 0, 0]), 3, path, f"{key}.translation", MAX_TRANSLATION_M)
    translation = (t[0], t[1], t[2])
    if "rotation_rpy_deg" in raw and "rotation_quaternion" in raw:
        raise CalibrationError(path, key, "give rotation_rpy_deg or rotation_quaternion, not both")
    if "rotation_quaternion" in raw:
        q = _numbers(raw["rotation_quaternion"], 4, path, f"{key}.rotation_quaternion", 2.0)
        if abs(math.sqrt(sum(v * v for v in q)) - 1.0) > 1e-3:
            raise CalibrationError(
                path, f"{key}.rotation_quaternion", f"must be a unit quaternion [x, y, z, w], got {q}"
            )
        return Transform.from_quaternion(translation, (q[0], q[1], q[2], q[3]))
    rpy = _numbers(raw.get("rotation_rpy_deg", [0, 0, 0]), 3, path, f"{key}.rotation_rpy_deg", MAX_ANGLE_DEG)
    return Transform.from_rpy(translation, (math.radians(rpy[0]), math.radians(rpy[1]), math.radians(rpy[2])))


def _intrinsics(raw: Any, path: str, key: str) -> Intrinsics:
    if not isinstance(raw, Mapping):
        raise CalibrationError(path, key, "a camera needs intrinsics {width, height, fx, fy, cx, cy}")
    size: dict[str, int] = {}
    for name in ("width", "height"):
        v = _number(raw.get(name), path, f"{key}.{name}", 0, MAX_IMAGE_PX, "a whole number of pixels", above_lo=True)
        if v != int(v):
            raise CalibrationError(path, f"{key}.{name}", f"must be a whole number of pixels, got {_show(v)}")
        size[name] = int(v)
    if size["width"] * size["height"] > MAX_IMAGE_PIXELS:
        raise CalibrationError(path, key, f"width x height is more than {MAX_IMAGE_PIXELS} pixels")
    focal = {
        n: _number(raw.get(n), path, f"{key}.{n}", 0, MAX_FOCAL_PX, "a focal length in pixels", above_lo=True)
        for n in ("fx", "fy")
    }
    # the principal point lies in (or near) the image
    cx = _number(raw.get("cx"), path, f"{key}.cx", 0, 2 * size["width"], "a pixel column", above_lo=True)
    cy = _number(raw.get("cy"), path, f"{key}.cy", 0, 2 * size["height"], "a pixel row", above_lo=True)
    return Intrinsics(size["width"], size["height"], focal["fx"], focal["fy"], cx, cy)


def _sensor(name: str, raw: Any, path: str) -> Sensor:
    key = f"sensors.{name}"
    if not isinstance(raw, Mapping):
        raise CalibrationError(path, key, "must be a mapping")
    kind = raw.get("type")
    if kind not in _TYPES:
        raise CalibrationError(path, f"{key}.type", f"must be one of {list(_TYPES)}, got {kind!r}")
    known = {"type", "extrinsics", "time_offset_ms", "intrinsics", "distortion", "microphones"}
    unknown = set(raw) - known
    if unknown:
        raise CalibrationError(path, f"{key}.{sorted(unknown)[0]}", f"unknown key; known: {sorted(known)}")
    offset = _number(
        raw.get("time_offset_ms", 0),
        path,
        f"{key}.time_offset_ms",
        -MAX_TIME_OFFSET_MS,
        MAX_TIME_OFFSET_MS,
        "a number of milliseconds",
    )
    intrinsics = None
    distortion: tuple[float, ...] = ()
    mics = None
    if kind == "camera":
        intrinsics = _intrinsics(raw.get("intrinsics"), path, f"{key}.intrinsics")
        distortion = _numbers(raw.get("distortion", [0, 0, 0, 0, 0]), 5, path, f"{key}.distortion", MAX_DISTORTION)
    if kind == "microphones":
        rows = raw.get("microphones")
        if not isinstance(rows, list) or not 2 <= len(rows) <= MAX_MICROPHONES:
            raise CalibrationError(
                path, f"{key}.microphones", f"needs 2 to {MAX_MICROPHONES} microphone positions [x, y, z]"
            )
        mics = _frozen(
            np.array([_numbers(r, 3, path, f"{key}.microphones[{i}]", MAX_MIC_OFFSET_M) for i, r in enumerate(rows)])
        )
    return Sensor(
        name=name,
        type=kind,
        extrinsics=_extrinsics(raw.get("extrinsics"), path, f"{key}.extrinsics"),
        time_offset_ns=round(offset * 1e6),
        intrinsics=intrinsics,
        distortion=distortion,
        microphones=mics,
    )


def load(path: Path | str) -> Rig:
    """Read and validate a rig calibration file."""
    path = Path(path)
    where = str(path)
    raw = read_mapping(
        path,
        lambda reason: CalibrationError(where, "<file>", reason),
        missing="no such calibration file",
        expected="with rig, frame_id, sensors",
    )
    sensors_raw = raw.get("sensors")
    if not isinstance(sensors_raw, Mapping) or not sensors_raw:
        raise CalibrationError(where, "sensors", "must map sensor names to their calibration")
    if len(sensors_raw) > MAX_SENSORS:
        raise CalibrationError(where, "sensors", f"more than {MAX_SENSORS} sensors")
    sensors = {str(name): _sensor(str(name), s, where) for name, s in sensors_raw.items()}
    frame_id = raw.get("frame_id", "base_link")
    if not isinstance(frame_id, str) or not frame_id:
        raise CalibrationError(where, "frame_id", f"must be a frame name, got {frame_id!r}")
    return Rig(str(raw.get("rig", path.stem)), frame_id, sensors, where)


def rpy_deg(rotation: np.ndarray) -> tuple[float, float, float]:
    """Roll, pitch, yaw (degrees, the ``rotation_rpy_deg`` convention) of a rotation matrix."""
    pitch = math.asin(max(-1.0, min(1.0, -float(rotation[2, 0]))))
    roll = math.atan2(float(rotation[2, 1]), float(rotation[2, 2]))
    yaw = math.atan2(float(rotation[1, 0]), float(rotation[0, 0]))
    return (math.degrees(roll), math.degrees(pitch), math.degrees(yaw))


def summary(rig: Rig) -> list[tuple[str, str, str, str, str, str]]:
    """One row of text per sensor: name, type, translation, roll/pitch/yaw, time offset, details."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    for s in rig.sensors.values():
        t = ", ".join(f"{v:.3f}" for v in s.extrinsics.translation)
        rpy = ", ".join(f"{round(v, 1) + 0.0:.1f}" for v in rpy_deg(s.extrinsics.rotation))
        if s.intrinsics is not None:
            k = s.intrinsics
            details = f"{k.width}x{k.height} fx={k.fx:g} fy={k.fy:g} cx={k.cx:g} cy={k.cy:g}"
            if any(s.distortion):
                details += " distortion=" + ",".join(f"{d:g}" for d in s.distortion)
        elif s.microphones is not None:
            spread = float(np.max(np.linalg.norm(s.microphones[:, None] - s.microphones[None], axis=2)))
            details = f"{len(s.microphones)} microphones, aperture {spread:.3f} m"
        else:
            details = ""
        rows.append((s.name, s.type, t, rpy, f"{s.time_offset_ns / 1e6:g}", details))
    return rows


def quaternion_xyzw(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """Unit quaternion (x, y, z, w) of a rotation matrix, w ≥ 0 (the ``rotation_quaternion`` form)."""
    m = np.asarray(rotation, dtype=np.float64)
    tr = float(np.trace(m))
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k]) * 2
        v = [0.0, 0.0, 0.0]
        v[i] = 0.25 * s
        v[j] = (m[j, i] + m[i, j]) / s
        v[k] = (m[k, i] + m[i, k]) / s
        q = (v[0], v[1], v[2], (m[k, j] - m[j, k]) / s)
    x, y, z, w = (float(c) for c in q)
    return (-x, -y, -z, -w) if w < 0 else (x, y, z, w)


def to_yaml(rig: Rig, comment: str = "") -> str:
    """The rig as a calibration file :func:`load` reads back (rotations as quaternions, full
    float precision, so a round trip keeps every transform to ~1e-15)."""
    import yaml

    sensors: dict[str, Any] = {}
    for s in rig.sensors.values():
        entry: dict[str, Any] = {
            "type": s.type,
            "extrinsics": {
                "translation": [float(v) for v in s.extrinsics.translation],
                "rotation_quaternion": list(quaternion_xyzw(s.extrinsics.rotation)),
            },
            "time_offset_ms": s.time_offset_ns / 1e6,
        }
        if s.intrinsics is not None:
            k = s.intrinsics
            entry["intrinsics"] = {
                "width": int(k.width),
                "height": int(k.height),
                "fx": float(k.fx),
                "fy": float(k.fy),
                "cx": float(k.cx),
                "cy": float(k.cy),
            }
            entry["distortion"] = [float(d) for d in s.distortion]
        if s.microphones is not None:
            entry["microphones"] = [[float(v) for v in row] for row in s.microphones]
        sensors[s.name] = entry
    body = yaml.safe_dump(
        {"rig": rig.name, "frame_id": rig.frame_id, "sensors": sensors},
        sort_keys=False,
        width=120,
        default_flow_style=None,
    )
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return header + body


def save(rig: Rig, path: Path | str, comment: str = "") -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(to_yaml(rig, comment))
    return p
