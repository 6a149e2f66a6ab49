"""The bytes on the wire: the only module that knows them.

A message travels as one ZeroMQ multipart message::

    [topic] [header] [array 0] [array 1] ...

``topic`` is the UTF-8 topic name (ZeroMQ filters subscriptions on it). ``header`` is
``b"FSW" + version byte`` followed by a msgpack document, decoded with a strict schema (msgspec):
sequence number, publisher id, publish and capture stamps, frame id, the type-specific fields and
the dtype and shape of each array. Each array is its own frame, sent and received without a copy.

Frames arrive from the network, so decoding treats them as hostile: nothing is executed (no
pickle), every size is checked against the frame lengths and a byte limit *before* anything is
allocated, and any defect raises :class:`~fusion_stream.errors.WireError` with a short reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias

import msgspec
import numpy as np

from fusion_stream.core import msgs
from fusion_stream.errors import MessageError, MessageTypeError, TopicNameError, WireError

WIRE_VERSION: Final = 1
"""The byte after the magic; a decoder refuses any other (``docs/wire.md`` is its specification)."""
MAGIC: Final = b"FSW"
PREFIX: Final = MAGIC + bytes([WIRE_VERSION])

DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
"""Largest total array payload accepted per message unless a decoder is told otherwise (ten times
a 128-beam LiDAR sweep or a 4K RGB frame; a subscriber that needs more says so)."""
MAX_HEADER_BYTES: Final = 1024 * 1024
MAX_ARRAYS: Final = 256
MAX_FRAMES: Final = MAX_ARRAYS + 2
"""Topic, header and one frame per array: a message with more frames is refused unread."""
MAX_NDIM: Final = 4
MAX_ELEMENTS: Final = 2**31 - 1
"""Largest product of an array's dimensions, zeros not counted. An array with a zero in its shape
has no bytes, so the byte checks pass it whatever its other dimensions are; numpy cannot even
represent some of those shapes (``[0, 2**64 - 1]``)."""
MAX_TOPIC_LEN: Final = 255
INLINE_MAX_BYTES: Final = 2048
"""Arrays up to this size travel inside the header: a frame of their own costs more than a copy."""

_TOPIC_RE = re.compile(r"^(/[A-Za-z0-9_\-.~]+)+$")

# Explicit little-endian dtype strings; anything else is refused (no object arrays, ever).
_DTYPES: Final = {
    np.dtype(d).str: np.dtype(d) for d in ("u1", "i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8")
}

SHM_MAGIC: Final = b"FSM"
SHM_VERSION: Final = 1
"""Version of the shared-memory descriptor frame (``docs/wire.md``, "Shared-memory arrays")."""
SHM_PREFIX: Final = SHM_MAGIC + bytes([SHM_VERSION])
MAX_DESCRIPTOR_BYTES: Final = 512
"""A descriptor frame is ~60 bytes; only a frame this small whose size differs from its array's
declared size is read as one (a real array frame always has exactly the declared size)."""

Frame: TypeAlias = bytes | memoryview | np.ndarray


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid name (``/a/b_c``), else raise TopicNameError saying why."""
    if not isinstance(topic, str) or not _TOPIC_RE.match(topic) or len(topic) > MAX_TOPIC_LEN:
        raise TopicNameError(
            topic,
            "use '/'-separated parts of letters, digits, '_', '-', '.', '~' (like /lidar/top/points), "
            f"at most {MAX_TOPIC_LEN} characters",
        )
    return topic


# --------------------------------------------------------------------------- header schema

Scalar: TypeAlias = bool | int | float | str


class ArraySpec(msgspec.Struct, array_like=True, frozen=True):
    dtype: str
    shape: tuple[int, ...]
    inline: bytes | None = None
    """The array's bytes when small enough to ride in the header; None: it has its own frame."""


class ImageBody(msgspec.Struct, tag="Image", array_like=True, frozen=True):
    encoding: str


class CompressedImageBody(msgspec.Struct, tag="CompressedImage", array_like=True, frozen=True):
    format: str


class PointCloudBody(msgspec.Struct, tag="PointCloud", array_like=True, frozen=True):
    fields: tuple[str, ...]


class RadarScanBody(msgspec.Struct, tag="RadarScan", array_like=True, frozen=True):
    fields: tuple[str, ...]


class AudioChunkBody(msgspec.Struct, tag="AudioChunk", array_like=True, frozen=True):
    sample_rate: int
    first_sample: int


class DetectionsBody(msgspec.Struct, tag="Detections", array_like=True, frozen=True):
    labels: tuple[str, ...]
    track_ids: tuple[int, ...]
    attributes: tuple[dict[str, Scalar], ...]


class DiagnosticsBody(msgspec.Struct, tag="Diagnostics", array_like=True, frozen=True):
    node: str
    level: int
    message: str
    values: dict[str, Scalar]


SensorBody: TypeAlias = (
    ImageBody | CompressedImageBody | PointCloudBody | RadarScanBody | AudioChunkBody | DetectionsBody
)


class Member(msgspec.Struct, array_like=True, frozen=True):
    name: str
    stamp_ns: int
    frame_id: str
    body: SensorBody
    n_arrays: int


class SyncedFrameBody(msgspec.Struct, tag="SyncedFrame", array_like=True, frozen=True):
    members: tuple[Member, ...]
    missing: tuple[str, ...]


class ClockBody(msgspec.Struct, tag="Clock", array_like=True, frozen=True):
    pass


Body: TypeAlias = SensorBody | SyncedFrameBody | DiagnosticsBody | ClockBody


class Header(msgspec.Struct, array_like=True, frozen=True):
    seq: int
    src: int
    pub_ns: int
    stamp_ns: int
    frame_id: str
    body: Body
    arrays: tuple[ArraySpec, ...]


class _Origin(msgspec.Struct, array_like=True, frozen=True):
    """The first two fields of a :class:`Header` (the rest is ignored when decoding)."""

    seq: int
    src: int


class ShmRef(msgspec.Struct, array_like=True, frozen=True):
    """Where an array lies in a publisher's shared-memory pool: the body of a descriptor frame."""

    segment: str
    """Name of the segment (a file in ``/dev/shm``), checked by the subscriber before opening."""
    offset: int
    """Byte offset of the array's first byte in the segment."""
    nbytes: int
    generation: int
    """The slot's generation when the array was written; a mismatch at receive time: ``stale``."""


class ShmSink(Protocol):
    """A publisher's pool: reserves a slot for an array and says where; the copy may wait for
    :meth:`flush`, which the sender calls after sending (:mod:`fusion_stream.runtime.shm`)."""

    @property
    def threshold(self) -> int: ...

    def put(self, arr: np.ndarray) -> ShmRef | None:
        """Where ``arr`` will lie once flushed; None if no slot is free (it then travels as bytes)."""
        ...

    def flush(self) -> None:
        """Write what :meth:`put` reserved room for; readers wait for it."""
        ...

    def owns(self, arr: np.ndarray) -> bool:
        """Whether ``arr`` was lent out of the pool (it is then sent as a descriptor, whatever its size)."""
        ...


ShmResolver: TypeAlias = Callable[[ShmRef], memoryview]
"""A subscriber's view of a descriptor's bytes (exactly ``nbytes``), or :class:`WireError`."""

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(Header)
_ORIGIN_DECODER: Final = msgspec.msgpack.Decoder(_Origin)
_SHM_DECODER: Final = msgspec.msgpack.Decoder(ShmRef)

# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded message with its transport metadata."""

    topic: str
    message: msgs.Message
    seq: int
    src: int
    """Random id of the publishing socket, so sequence gaps are tracked per publisher."""
    pub_ns: int
    """Wall-clock time at publish (ns); ``pub_ns - message.stamp_ns`` is the age at publish."""
    nbytes: int
    """Bytes of all frames together."""
    shm_bytes: int = 0
    """Bytes of the arrays that came through shared memory (not in ``nbytes``: only their
    descriptors travelled)."""


# --------------------------------------------------------------------------- encoding

_DET_COLUMNS: Final = 10  # cx cy cz l w h yaw vx vy score


def _sensor_body(msg: msgs.SensorMessage) -> tuple[SensorBody, list[np.ndarray]]:
    if isinstance(msg, msgs.Image):
        return ImageBody(msg.encoding), [msg.data]
    if isinstance(msg, msgs.PointCloud):
        return PointCloudBody(msg.fields), [msg.data]
    if isinstance(msg, msgs.RadarScan):
        return RadarScanBody(msg.fields), [msg.data]
    if isinstance(msg, msgs.AudioChunk):
        return AudioChunkBody(msg.sample_rate, msg.first_sample), [msg.data]
    if isinstance(msg, msgs.CompressedImage):
        return CompressedImageBody(msg.format), [np.frombuffer(msg.data, np.uint8)]
    if isinstance(msg, msgs.Detections):
        table = np.array(
            [(*b.center, *b.size, b.yaw, *b.velocity, b.score) for b in msg.boxes], dtype=np.float64
        ).reshape(len(msg.boxes), _DET_COLUMNS)
        body = DetectionsBody(
            tuple(b.label for b in msg.boxes),
            tuple(b.track_id for b in msg.boxes),
            tuple(dict(b.attributes) for b in msg.boxes),
        )
        return body, [table]
    raise MessageTypeError(type(msg).__name__, "a fusion_stream message")


def _body(msg: msgs.Message) -> tuple[Body, list[np.ndarray]]:
    if isinstance(msg, msgs.ClockTick):
        return ClockBody(), []
    if isinstance(msg, msgs.Diagnostics):
        body = DiagnosticsBody(msg.node, int(msg.level), msg.message, dict(msg.values))
        return body, []
    if isinstance(msg, msgs.SyncedFrame):
        members: list[Member] = []
        arrays: list[np.ndarray] = []
        for name, items in msg.members.items():
            for item in items:
                sub, sub_arrays = _sensor_body(item)
                members.append(Member(name, item.stamp_ns, item.frame_id, sub, len(sub_arrays)))
                arrays.extend(sub_arrays)
        return SyncedFrameBody(tuple(members), msg.missing), arrays
    return _sensor_body(msg)


def encode_descriptor(ref: ShmRef) -> bytes:
    """The frame that stands for an array placed in shared memory."""
    return SHM_PREFIX + _ENCODER.encode(ref)


def decode_descriptor(frame: memoryview, index: int) -> ShmRef:
    """The :class:`ShmRef` of a descriptor frame; any defect raises :class:`WireError`."""
    if frame[3] != SHM_VERSION:
        raise WireError(
            "version", f"array {index}: shared-memory descriptor version {frame[3]}, this build reads {SHM_VERSION}"
        )
    try:
        ref = _SHM_DECODER.decode(frame[4:])
    except (msgspec.DecodeError, ValueError) as err:
        raise WireError("bad-descriptor", f"array {index}: {err}") from err
    if ref.offset < 0 or ref.nbytes < 0 or ref.generation < 0:
        raise WireError("bad-descriptor", f"array {index}: negative offset, size or generation in {ref}")
    return ref


def _is_descriptor(frame: memoryview, declared: int) -> bool:
    return frame.nbytes != declared and 4 <= frame.nbytes <= MAX_DESCRIPTOR_BYTES and frame[:3].tobytes() == SHM_MAGIC


def encode(
    topic: str, msg: msgs.Message, *, seq: int, src: int, pub_ns: int, shm: ShmSink | None = None
) -> list[Frame]:
    """Frames for one message. Large arrays are passed through (no copy) when C-contiguous.

    With ``shm``, arrays of at least ``shm.threshold`` bytes go into its pool and a descriptor
    frame travels in their place (or, when every slot is held by a subscriber, the bytes as
    usual); the header is the same either way. Call ``shm.flush()`` once the frames are sent."""
    body, arrays = _body(msg)
    frames: list[Frame] = []
    specs: list[ArraySpec] = []
    for arr in arrays:
        if arr.nbytes <= INLINE_MAX_BYTES:
            specs.append(ArraySpec(arr.dtype.str, arr.shape, arr.tobytes()))
            continue
        if shm is not None and (arr.nbytes >= shm.threshold or shm.owns(arr)) and (ref := shm.put(arr)) is not None:
            specs.append(ArraySpec(arr.dtype.str, arr.shape))
            frames.append(encode_descriptor(ref))
            continue
        contiguous = np.ascontiguousarray(arr)
        specs.append(ArraySpec(contiguous.dtype.str, contiguous.shape))
        frames.append(contiguous)
    header = Header(seq, src, pub_ns, msg.stamp_ns, msg.frame_id, body, tuple(specs))
    return [topic.encode(), PREFIX + _ENCODER.encode(header), *frames]


def frames_nbytes(frames: Sequence[Frame]) -> int:
    """Total size of encoded frames."""
    return sum(f.nbytes if isinstance(f, np.ndarray | memoryview) else len(f) for f in frames)


# --------------------------------------------------------------------------- decoding


def _array(spec: ArraySpec, nbytes: int, frame: memoryview, index: int) -> np.ndarray:
    """A read-only view of ``frame`` as the array ``spec`` declares (``nbytes`` already checked)."""
    if frame.nbytes != nbytes:
        raise WireError(
            "size-mismatch",
            f"array {index} declares {spec.dtype}{list(spec.shape)} = {nbytes} bytes but its frame has {frame.nbytes}",
        )
    arr = np.frombuffer(frame, dtype=_DTYPES[spec.dtype]).reshape(spec.shape)
    arr.flags.writeable = False  # shared with the socket buffer, possibly forwarded as is
    return arr


def _spec_nbytes(spec: ArraySpec, index: int) -> int:
    dtype = _DTYPES.get(spec.dtype)
    if dtype is None:
        raise WireError("bad-dtype", f"array {index} has dtype {spec.dtype!r}; allowed: {sorted(_DTYPES)}")
    if len(spec.shape) > MAX_NDIM or any(d < 0 for d in spec.shape):
        raise WireError(
            "bad-shape", f"array {index} has shape {list(spec.shape)} (at most {MAX_NDIM} dims, none negative)"
        )
    n = dtype.itemsize
    span = 1
    for d in spec.shape:
        n *= d  # Python ints: a header claiming 10**15 elements cannot overflow
        span *= max(d, 1)
    if n == 0 and span > MAX_ELEMENTS:  # else the byte limit bounds the shape
        raise WireError(
            "bad-shape",
            f"array {index} has shape {list(spec.shape)}: no elements, but its other dimensions "
            f"multiply to more than {MAX_ELEMENTS}",
        )
    return n


def _sensor_message(body: SensorBody, stamp_ns: int, frame_id: str, arrays: list[np.ndarray]) -> msgs.SensorMessage:
    if isinstance(body, ImageBody):
        return msgs.Image(stamp_ns=stamp_ns, frame_id=frame_id, data=arrays[0], encoding=body.encoding)
    if isinstance(body, PointCloudBody):
        return msgs.PointCloud(stamp_ns=stamp_ns, frame_id=frame_id, data=arrays[0], fields=body.fields)
    if isinstance(body, RadarScanBody):
        return msgs.RadarScan(stamp_ns=stamp_ns, frame_id=frame_id, data=arrays[0], fields=body.fields)
    if isinstance(body, AudioChunkBody):
        return msgs.AudioChunk(
            stamp_ns=stamp_ns,
            frame_id=frame_id,
            data=arrays[0],
            sample_rate=body.sample_rate,
            first_sample=body.first_sample,
        )
    if isinstance(body, CompressedImageBody):
        if arrays[0].dtype != np.uint8 or arrays[0].ndim != 1:
            raise WireError("bad-body", "CompressedImage data must be a 1-D uint8 array")
        return msgs.CompressedImage(stamp_ns=stamp_ns, frame_id=frame_id, data=arrays[0].tobytes(), format=body.format)
    # DetectionsBody
    table = arrays[0]
    n = len(body.labels)
    if (
        table.dtype != np.float64
        or table.shape != (n, _DET_COLUMNS)
        or len(body.track_ids) != n
        or len(body.attributes) != n
    ):
        raise WireError("bad-body", f"Detections table {table.dtype}{list(table.shape)} does not match {n} labels")
    boxes = tuple(
        msgs.Box3D(
            center=(float(r[0]), float(r[1]), float(r[2])),
            size=(float(r[3]), float(r[4]), float(r[5])),
            yaw=float(r[6]),
            velocity=(float(r[7]), float(r[8])),
            score=float(r[9]),
            label=label,
            track_id=tid,
            attributes=attrs,
        )
        for r, label, tid, attrs in zip(table.tolist(), body.labels, body.track_ids, body.attributes, strict=True)
    )
    return msgs.Detections(stamp_ns=stamp_ns, frame_id=frame_id, boxes=boxes)


_N_ARRAYS: Final[dict[type, int]] = {
    ImageBody: 1,
    CompressedImageBody: 1,
    PointCloudBody: 1,
    RadarScanBody: 1,
    AudioChunkBody: 1,
    DetectionsBody: 1,
    DiagnosticsBody: 0,
}


def _message(header: Header, arrays: list[np.ndarray]) -> msgs.Message:
    body = header.body
    if isinstance(body, ClockBody):
        if arrays:
            raise WireError("bad-body", f"Clock carries no arrays, got {len(arrays)}")
        return msgs.ClockTick(stamp_ns=header.stamp_ns, frame_id=header.frame_id)
    if isinstance(body, DiagnosticsBody):
        if arrays:
            raise WireError("bad-body", f"Diagnostics carries no arrays, got {len(arrays)}")
        return msgs.Diagnostics(
            stamp_ns=header.stamp_ns,
            frame_id=header.frame_id,
            node=body.node,
            level=body.level,  # type: ignore[arg-type]  # validated by Diagnostics
            message=body.message,
            values=body.values,
        )
    if isinstance(body, SyncedFrameBody):
        for m in body.members:  # every count first: a negative one would offset the sum
            want = _N_ARRAYS[type(m.body)]
            if m.n_arrays != want:
                raise WireError("bad-body", f"member {m.name!r} declares {m.n_arrays} arrays, its type has {want}")
        declared = sum(m.n_arrays for m in body.members)
        if declared != len(arrays):
            raise WireError("bad-body", f"SyncedFrame members declare {declared} arrays, message has {len(arrays)}")
        members: dict[str, list[msgs.SensorMessage]] = {}
        pos = 0
        for m in body.members:
            want = m.n_arrays
            sub = _sensor_message(m.body, m.stamp_ns, m.frame_id, arrays[pos : pos + want])
            members.setdefault(m.name, []).append(sub)
            pos += want
        return msgs.SyncedFrame(
            stamp_ns=header.stamp_ns,
            frame_id=header.frame_id,
            members={k: tuple(v) for k, v in members.items()},
            missing=body.missing,
        )
    want = _N_ARRAYS[type(body)]
    if len(arrays) != want:
        raise WireError("bad-body", f"{type(body).__name__[:-4]} carries {want} arrays, message has {len(arrays)}")
    return _sensor_message(body, header.stamp_ns, header.frame_id, arrays)


def _byte_view(frame: Any) -> memoryview:
    if isinstance(frame, bytes):
        return memoryview(frame)
    view = memoryview(frame)
    if view.ndim == 1 and view.format == "B":
        return view
    if view.nbytes == 0:  # cast() refuses views with a zero in their shape
        return memoryview(b"")
    return view.cast("B")


def _small_bytes(frame: Any) -> bytes:
    return frame if isinstance(frame, bytes) else bytes(memoryview(frame))


def _shm_view(ref: ShmRef, size: int, index: int, shm: ShmResolver | None) -> memoryview:
    if ref.nbytes != size:
        raise WireError(
            "size-mismatch", f"array {index} declares {size} bytes, its shared-memory descriptor {ref.nbytes}"
        )
    if shm is None:
        raise WireError("shm-unavailable", f"array {index} is in shared memory {ref.segment!r}; this decoder maps none")
    view = shm(ref)
    if view.nbytes != size:  # a resolver's contract, checked: a wrong view must not become an array
        raise WireError("size-mismatch", f"array {index}: shared memory gave {view.nbytes} bytes for {size}")
    return view


def peek_origin(header_frame: bytes) -> tuple[int, int] | None:
    """``(src, seq)`` of a message from its header frame alone, or None if it is not readable.

    Cheap (two integers): a ``latest`` subscriber uses it to tell the messages it skipped on
    purpose from those lost in transport, without decoding what it skips."""
    if len(header_frame) < 4 or header_frame[:4] != PREFIX or len(header_frame) > MAX_HEADER_BYTES:
        return None
    try:
        origin = _ORIGIN_DECODER.decode(memoryview(header_frame)[4:])
    except (msgspec.DecodeError, ValueError):
        return None
    return origin.src, origin.seq


def decode(frames: Sequence[Any], *, max_bytes: int = DEFAULT_MAX_BYTES, shm: ShmResolver | None = None) -> Envelope:
    """Decode one multipart message; any defect raises :class:`WireError`.

    ``frames`` may be bytes or anything exposing the buffer protocol (such as ``zmq.Frame``);
    arrays in their own frames come back as read-only views on those buffers, not copies. An
    array sent as a shared-memory descriptor is resolved by ``shm`` (a read-only view of the
    publisher's pool); without one it is refused (``shm-unavailable``).
    """
    n = len(frames)
    if n < 2:
        raise WireError("truncated", f"{n} frame(s); need at least topic and header")
    if n > MAX_FRAMES:
        raise WireError("oversized", f"{n} frames exceed {MAX_FRAMES} (topic, header, {MAX_ARRAYS} arrays)")
    try:
        topic = _small_bytes(frames[0]).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("bad-topic", "topic frame is not UTF-8") from None
    head = _small_bytes(frames[1])
    if len(head) < 4 or head[:3] != MAGIC:
        raise WireError(
            "bad-magic", f"header does not start with {MAGIC!r}; not a fusion_stream publisher", topic=topic
        )
    if head[3] != WIRE_VERSION:
        raise WireError("version", f"wire version {head[3]}, this build reads version {WIRE_VERSION}", topic=topic)
    if len(head) > MAX_HEADER_BYTES:
        raise WireError("oversized", f"header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}", topic=topic)
    try:
        header = _DECODER.decode(memoryview(head)[4:])
    except (msgspec.DecodeError, ValueError) as err:  # ValidationError; UnicodeDecodeError on bad str
        raise WireError("bad-header", str(err), topic=topic) from err
    if len(header.arrays) > MAX_ARRAYS:
        raise WireError("oversized", f"{len(header.arrays)} arrays exceed {MAX_ARRAYS}", topic=topic)
    nbytes = len(head) + len(frames[0])
    try:
        arrays: list[np.ndarray] = []
        total = shm_bytes = 0
        next_frame = 2
        for i, spec in enumerate(header.arrays):
            size = _spec_nbytes(spec, i)
            total += size
            if total > max_bytes:
                raise WireError("oversized", f"arrays total more than {total} bytes, limit is {max_bytes}")
            if spec.inline is not None:
                view = memoryview(spec.inline)
            elif next_frame < n:
                view = _byte_view(frames[next_frame])
                next_frame += 1
                nbytes += view.nbytes  # on the wire: a descriptor counts as its own few bytes
                if _is_descriptor(view, size):
                    view = _shm_view(decode_descriptor(view, i), size, i, shm)
                    shm_bytes += size
            else:
                raise WireError("truncated", f"array {i} has no frame: only {n - 2} array frame(s) arrived")
            arrays.append(_array(spec, size, view, i))
        if next_frame != n:
            raise WireError("truncated", f"header declares {next_frame - 2} array frame(s), got {n - 2}")
        message = _message(header, arrays)
    except WireError as err:
        raise WireError(err.reason, err.detail, topic=topic) from None
    except MessageError as err:
        raise WireError("invalid-message", str(err), topic=topic) from err
    except (ValueError, TypeError, OverflowError, ArithmeticError, LookupError, MemoryError) as err:
        # Last resort: a combination the checks above did not foresee still ends as a WireError
        # (the fuzz campaign in bench/fuzz_wire.py has found none since the shape bound).
        raise WireError("unexpected", f"{type(err).__name__}: {err}", topic=topic) from err
    return Envelope(topic, message, header.seq, header.src, header.pub_ns, nbytes, shm_bytes)
