"""Typed sensor messages: frozen dataclasses holding numpy arrays.

Every message has ``stamp_ns`` (capture time, integer nanoseconds since the Unix epoch, or bag
time in replay) and ``frame_id`` (the coordinate frame its geometry is in). Fields are validated
on construction, so a message that exists is a message every consumer can trust; arrays are
kept as given (no copy) when they already have the right dtype.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

import numpy as np

from fusion_stream.errors import MessageError, UnknownNameError

_INT64_MAX = 2**63 - 1
_U8 = (np.dtype(np.uint8),)
_F32 = (np.dtype(np.float32),)
_AUDIO_DTYPES = (np.dtype(np.float32), np.dtype(np.int16))
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ScalarValue: TypeAlias = bool | int | float | str


def _freeze_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
        )
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@dataclass(frozen=True, kw_only=True, eq=False)
class _Frozen:
    """Equality that compares numpy arrays by value (dtype, shape and contents)."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_values_equal(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))

    __hash__ = None  # type: ignore[assignment]

    def _fail(self, field_name: str, reason: str) -> MessageError:
        return MessageError(type(self).__name__, field_name, reason)


@dataclass(frozen=True, kw_only=True, eq=False)
class Header(_Frozen):
    """Fields every message carries: capture stamp and coordinate frame."""

    stamp_ns: int
    frame_id: str = ""

    def __post_init__(self) -> None:
        stamp = self.stamp_ns
        if type(stamp) is not int:  # plain ints (the usual case) skip the slower checks
            if isinstance(stamp, bool) or not isinstance(stamp, int | np.integer):
                raise self._fail("stamp_ns", f"must be an int of nanoseconds, got {stamp!r}")
            stamp = int(stamp)
            object.__setattr__(self, "stamp_ns", stamp)
        if not 0 <= stamp <= _INT64_MAX:
            raise self._fail("stamp_ns", f"must be in [0, 2**63), got {stamp}")
        if not isinstance(self.frame_id, str):
            raise self._fail("frame_id", f"must be a str, got {type(self.frame_id).__name__}")

    def _array(self, name: str, value: Any, allowed: tuple[np.dtype[Any], ...], ndim: int) -> np.ndarray:
        """Check an array field's type, dtype and number of dimensions (no copy, no conversion)."""
        if not isinstance(value, np.ndarray):
            raise self._fail(name, f"must be a numpy array, got {type(value).__name__}")
        if value.dtype not in allowed:
            names = " or ".join(str(d) for d in allowed)
            raise self._fail(name, f"dtype must be {names}, got {value.dtype}")
        if value.ndim != ndim:
            raise self._fail(name, f"must have {ndim} dimensions, got shape {value.shape}")
        return value


# --------------------------------------------------------------------------- images

IMAGE_ENCODINGS: Mapping[str, int] = MappingProxyType({"mono8": 1, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4})
"""Supported raw encodings (ROS sensor_msgs/Image names) and their channel counts."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Image(Header):
    """A raw camera image, ``data`` is H×W×C uint8 in the layout ``encoding`` names."""

    data: np.ndarray
    encoding: str = "rgb8"

    def __post_init__(self) -> None:
        super().__post_init__()
        data = self._array("data", self.data, _U8, 3)
        channels = IMAGE_ENCODINGS.get(self.encoding)
        if channels is None:
            raise self._fail("encoding", f"unknown {self.encoding!r}; use one of {list(IMAGE_ENCODINGS)}")
        if data.shape[2] != channels:
            raise self._fail("data", f"encoding {self.encoding} needs {channels} channels, got shape {data.shape}")

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])


_MAGIC = {"jpeg": b"\xff\xd8", "png": b"\x89PNG\r\n\x1a\n"}


@dataclass(frozen=True, kw_only=True, eq=False)
class CompressedImage(Header):
    """A JPEG or PNG encoded camera image; the bytes must start with that format's signature."""

    data: bytes
    format: str = "jpeg"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.data, bytearray | memoryview):
            object.__setattr__(self, "data", bytes(self.data))
        if not isinstance(self.data, bytes):
            raise self._fail("data", f"must be bytes, got {type(self.data).__name__}")
        magic = _MAGIC.get(self.format)
        if magic is None:
            raise self._fail("format", f"must be 'jpeg' or 'png', got {self.format!r}")
        if not self.data.startswith(magic):
            raise self._fail("data", f"does not start with the {self.format} signature")


# --------------------------------------------------------------------------- point sets


@functools.lru_cache(maxsize=256)
def _field_names_problem(fields: tuple[object, ...], required: tuple[str, ...]) -> str | None:
    """What is wrong with a field list, or None. Cached: a stream repeats the same few lists."""
    if len(set(fields)) != len(fields):
        return f"names repeat: {list(fields)}"
    for name in fields:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            return f"{name!r} is not a valid field name"
    missing = [f for f in required if f not in fields]
    if missing:
        return f"missing required {missing}; has {list(fields)}"
    return None


@dataclass(frozen=True, kw_only=True, eq=False)
class _FieldCloud(Header):
    """N points, each a row of named float32 fields, stored as one contiguous N×F array.

    One array (not one per field) keeps the wire zero-copy and hands pillarization a matrix.
    """

    REQUIRED: ClassVar[tuple[str, ...]] = ()

    data: np.ndarray
    fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        fields = self.fields
        if type(fields) is not tuple or not fields:
            fields = tuple(fields) or self.REQUIRED
            object.__setattr__(self, "fields", fields)
        data = self._array("data", self.data, _F32, 2)
        if data.shape[1] != len(fields):
            raise self._fail("data", f"has {data.shape[1]} columns but {len(fields)} fields {list(fields)}")
        problem = _field_names_problem(fields, self.REQUIRED)
        if problem:
            raise self._fail("fields", problem)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def field(self, name: str) -> np.ndarray:
        """The column of one field (a view, no copy)."""
        try:
            return self.data[:, self.fields.index(name)]
        except ValueError:
            raise UnknownNameError(
                "field", name, f"{type(self).__name__} has no field {name!r}; fields are {self.fields}"
            ) from None

    @property
    def xyz(self) -> np.ndarray:
        """N×3 positions (a view when x, y, z are the first three fields)."""
        if self.fields[:3] == ("x", "y", "z"):
            return self.data[:, :3]
        return np.stack([self.field("x"), self.field("y"), self.field("z")], axis=1)

    @classmethod
    def from_fields(cls, *, stamp_ns: int, frame_id: str = "", **columns: Any) -> _FieldCloud:
        """Build from one 1-D array per field, in keyword order."""
        names = tuple(columns)
        cols = [np.asarray(c, dtype=np.float32).reshape(-1) for c in columns.values()]
        lengths = {len(c) for c in cols}
        if len(lengths) > 1:
            raise MessageError(cls.__name__, "fields", f"columns differ in length: {sorted(lengths)}")
        data = np.stack(cols, axis=1) if cols else np.zeros((0, 0), np.float32)
        return cls(stamp_ns=stamp_ns, frame_id=frame_id, data=np.ascontiguousarray(data), fields=names)


@dataclass(frozen=True, kw_only=True, eq=False)
class PointCloud(_FieldCloud):
    """A LiDAR sweep: x, y, z (m), intensity, and optionally ``ring`` and ``time_offset``.

    ``time_offset`` is seconds after ``stamp_ns`` at which each point was measured, so motion
    during the sweep can be compensated (float32 seconds is sub-nanosecond within a sweep).
    """

    REQUIRED: ClassVar[tuple[str, ...]] = ("x", "y", "z", "intensity")


@dataclass(frozen=True, kw_only=True, eq=False)
class RadarScan(_FieldCloud):
    """Radar detections: x, y, z (m), radial_velocity (m/s, + away), rcs (dBsm)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("x", "y", "z", "radial_velocity", "rcs")


# --------------------------------------------------------------------------- audio


@dataclass(frozen=True, kw_only=True, eq=False)
class AudioChunk(Header):
    """Channels × samples of audio; ``stamp_ns`` is the capture time of the first sample.

    ``first_sample`` counts samples since the stream started, so a consumer can prove that no
    sample was lost or repeated between chunks.
    """

    data: np.ndarray
    sample_rate: int
    first_sample: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._array("data", self.data, _AUDIO_DTYPES, 2)
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise self._fail("sample_rate", f"must be a positive int (Hz), got {self.sample_rate!r}")
        if isinstance(self.first_sample, bool) or not isinstance(self.first_sample, int) or self.first_sample < 0:
            raise self._fail("first_sample", f"must be an int >= 0, got {self.first_sample!r}")

    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def samples(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration_ns(self) -> int:
        return self.samples * 1_000_000_000 // self.sample_rate


# --------------------------------------------------------------------------- detections


def _float_tuple(owner: _Frozen, name: str, value: Any, n: int) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise owner._fail(name, f"must be {n} numbers, got {value!r}") from None
    if len(out) != n or not all(np.isfinite(out)):
        raise owner._fail(name, f"must be {n} finite numbers, got {value!r}")
    object.__setattr__(owner, name, out)
    return out


@dataclass(frozen=True, kw_only=True, eq=False)
class Box3D(_Frozen):
    """One 3-D object: centre (m), size (length, width, height m), yaw (rad about +z),
    velocity (vx, vy m/s), class label, score in [0, 1], and free-form attributes
    (e.g. ``{"siren": True}``). ``track_id`` is -1 when the object is not tracked."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0
    velocity: tuple[float, float] = (0.0, 0.0)
    label: str = ""
    score: float = 1.0
    track_id: int = -1
    attributes: Mapping[str, ScalarValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _float_tuple(self, "center", self.center, 3)
        size = _float_tuple(self, "size", self.size, 3)
        if min(size) < 0:
            raise self._fail("size", f"must not be negative, got {size}")
        _float_tuple(self, "velocity", self.velocity, 2)
        object.__setattr__(self, "yaw", float(self.yaw))
        object.__setattr__(self, "score", float(self.score))
        if not np.isfinite(self.yaw):
            raise self._fail("yaw", f"must be finite, got {self.yaw}")
        if not 0.0 <= self.score <= 1.0:
            raise self._fail("score", f"must be in [0, 1], got {self.score}")
        if not isinstance(self.label, str):
            raise self._fail("label", f"must be a str, got {type(self.label).__name__}")
        if isinstance(self.track_id, bool) or not isinstance(self.track_id, int):
            raise self._fail("track_id", f"must be an int, got {self.track_id!r}")
        _check_scalar_map(self, "attributes", self.attributes)


def _check_scalar_map(owner: _Frozen, name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise owner._fail(name, f"must be a mapping, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, bool | int | float | str):
            raise owner._fail(name, f"entry {k!r}: keys must be str and values bool/int/float/str")
    object.__setattr__(owner, name, _freeze_mapping(value))


@dataclass(frozen=True, kw_only=True, eq=False)
class Detections(Header):
    """The 3-D objects found (or, on ``/ground_truth/objects``, present) at ``stamp_ns``."""

    boxes: tuple[Box3D, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        boxes = tuple(self.boxes)
        for i, box in enumerate(boxes):
            if not isinstance(box, Box3D):
                raise self._fail("boxes", f"item {i} is a {type(box).__name__}, not a Box3D")
        object.__setattr__(self, "boxes", boxes)

    def __len__(self) -> int:
        return len(self.boxes)

    def __iter__(self) -> Iterator[Box3D]:
        return iter(self.boxes)


# --------------------------------------------------------------------------- diagnostics


class Level(enum.IntEnum):
    """Health levels, numbered as ROS diagnostic_msgs/DiagnosticStatus."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass(frozen=True, kw_only=True, eq=False)
class Diagnostics(Header):
    """A node's health report: level, a one-line message and named values (rates, drops...)."""

    node: str
    level: Level = Level.OK
    message: str = ""
    values: Mapping[str, ScalarValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.node, str) or not self.node:
            raise self._fail("node", f"must be a non-empty str, got {self.node!r}")
        try:
            object.__setattr__(self, "level", Level(self.level))
        except ValueError:
            raise self._fail("level", f"must be one of {[lv.name for lv in Level]}, got {self.level!r}") from None
        if not isinstance(self.message, str):
            raise self._fail("message", f"must be a str, got {type(self.message).__name__}")
        _check_scalar_map(self, "values", self.values)


# --------------------------------------------------------------------------- time


@dataclass(frozen=True, kw_only=True, eq=False)
class ClockTick(Header):
    """The replay clock: ``stamp_ns`` is the bag time now (published on ``/clock`` by
    ``fusion-stream replay --clock``; nodes started with that clock follow it, not wall time)."""


# --------------------------------------------------------------------------- synced sets

SensorMessage: TypeAlias = Image | CompressedImage | PointCloud | RadarScan | AudioChunk | Detections
"""Messages that can be members of a :class:`SyncedFrame`."""


@dataclass(frozen=True, kw_only=True, eq=False)
class SyncedFrame(Header):
    """Time-aligned messages from several inputs, keyed by input name.

    An input may contribute several messages (e.g. every audio chunk overlapping the window), so
    each member is a tuple. ``missing`` names inputs that had nothing in time; the consumer runs
    without them rather than waiting.
    """

    members: Mapping[str, tuple[SensorMessage, ...]]
    missing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.members, Mapping):
            raise self._fail("members", f"must be a mapping, got {type(self.members).__name__}")
        frozen: dict[str, tuple[SensorMessage, ...]] = {}
        for name, value in self.members.items():
            items = tuple(value) if isinstance(value, list | tuple) else (value,)
            for msg in items:
                if not isinstance(msg, SENSOR_TYPES):
                    raise self._fail("members", f"{name!r} holds a {type(msg).__name__}, not a sensor message")
            frozen[str(name)] = items
        object.__setattr__(self, "members", MappingProxyType(frozen))
        missing = tuple(self.missing)
        object.__setattr__(self, "missing", missing)
        both = set(missing) & set(frozen)
        if both:
            raise self._fail("missing", f"inputs {sorted(both)} are both present and missing")

    def first(self, name: str) -> SensorMessage | None:
        """The first message of input ``name``, or None when it is missing."""
        items = self.members.get(name, ())
        return items[0] if items else None


SENSOR_TYPES: tuple[type, ...] = (Image, CompressedImage, PointCloud, RadarScan, AudioChunk, Detections)

Message: TypeAlias = SensorMessage | SyncedFrame | Diagnostics | ClockTick
"""Any message that can be published."""

MESSAGE_TYPES: tuple[type, ...] = (*SENSOR_TYPES, SyncedFrame, Diagnostics, ClockTick)
