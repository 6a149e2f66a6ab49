"""Open any bag people have: our MCAP, ROS 2 bags (sqlite3 or MCAP storage) and ROS 1 ``.bag``.

MCAP files are read with the ``mcap`` library (indexed when finished, linearly when a recorder
died before writing the index); ROS bags with ``rosbags``' ``AnyReader``. Either way the result
is the same stream of :class:`RawMessage` in log-time order, each with a ROS 2 type name and a
way to decode it, and :meth:`Bag.info` works without decoding a single message.
"""

from __future__ import annotations

import bz2
import contextlib
import heapq
import io
import logging
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import lz4.frame  # type: ignore[import-untyped]
import zstandard
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, ChunkIndex, Message, Schema, Statistics
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag1.reader import Header as Header1
from rosbags.rosbag1.reader import Reader as Reader1
from rosbags.rosbag1.reader import ReaderError as ReaderError1

from fusion_stream.bag import rostypes
from fusion_stream.errors import FormatError, UsageError

log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"
ROS1_MAGIC = b"#ROSBAG V2.0"


RATE_METHOD = "(messages - 1) / (last - first log time) of each topic"
"""How ``bag info`` computes a topic's rate, for every format alike (said under its table)."""


@dataclass(frozen=True)
class TopicInfo:
    topic: str
    typename: str
    count: int
    first_ns: int | None = None
    last_ns: int | None = None

    @property
    def rate_hz(self) -> float | None:
        """:data:`RATE_METHOD`: the same for every bag format."""
        if self.count < 2 or self.first_ns is None or self.last_ns is None or self.last_ns <= self.first_ns:
            return None
        return (self.count - 1) / ((self.last_ns - self.first_ns) / 1e9)


@dataclass(frozen=True)
class BagInfo:
    """What a bag holds: format, size, time span and topics."""

    path: Path
    format: str
    """``mcap`` (ours or any ROS 2 MCAP file), ``rosbag2`` (a bag directory) or ``rosbag1``."""
    size_bytes: int
    start_ns: int
    end_ns: int
    topics: tuple[TopicInfo, ...]
    compression: str = ""
    indexed: bool = True
    """False for an MCAP file whose recorder never wrote the index (killed): see ``bag recover``."""
    problem: str = ""
    """Why reading stopped early, for a damaged file."""

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def message_count(self) -> int:
        return sum(t.count for t in self.topics)


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    typename: str
    log_ns: int
    data: bytes | memoryview
    publish_ns: int = 0
    _bag: Bag | None = field(default=None, repr=False, compare=False)

    def decode(self) -> Any:
        """The ROS message object (``rosbags`` dataclass)."""
        assert self._bag is not None
        return self._bag.deserialize(self)

    def cdr(self) -> bytes:
        """The message as ROS 2 CDR bytes (ROS 1 messages are converted)."""
        assert self._bag is not None
        return self._bag.to_cdr(self)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _kind(path: Path) -> str:
    if not path.exists():
        raise FormatError(f"{path}: no such file or directory")
    if path.is_dir():
        if not (path / "metadata.yaml").exists():
            raise FormatError(f"{path}: a directory without metadata.yaml is not a ROS 2 bag")
        return "rosbag2"
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(MCAP_MAGIC):
        return "mcap"
    if head.startswith(ROS1_MAGIC):
        return "rosbag1"
    if head.startswith(b"SQLite format 3") and (path.parent / "metadata.yaml").exists():
        return "rosbag2-file"
    raise FormatError(f"{path}: not an MCAP file, a ROS 1 bag or a ROS 2 bag directory (starts with {head[:12]!r})")


# --------------------------------------------------------------------------- bounded MCAP reading
#
# The ``mcap`` library inflates a chunk with ``zstandard.decompress`` (which trusts the size in the
# zstd frame header, not the one it is given) or ``lz4.frame.decompress`` (no bound at all), and
# reads a record's declared lengths straight from the file. A 65 KB file can thus ask for GiBs.
# Below, every length is checked against what is left of the file or chunk before anything is
# read, a chunk's declared size against a limit, and inflation stops one byte past that size.

MAX_CHUNK_BYTES = 512 << 20
"""Default bound on a chunk's uncompressed size and on any record read whole (our recorder writes
4 MiB chunks; one uncompressed LiDAR sweep is a few MiB)."""
MAX_CHUNK_ENV = "FUSION_STREAM_BAG_MAX_CHUNK_MB"
"""Environment variable that raises (or lowers) :data:`MAX_CHUNK_BYTES`, in MiB, for a genuine file."""
_COMPRESSIONS = ("", "zstd", "lz4")
_FOOTER_BYTES = 9 + 20
_MESSAGE_HEAD = struct.Struct("<HIQQ")


def recover_hint(path: Path | str) -> str:
    """The way out of a damaged or unfinished MCAP file, as every command that reads one says it."""
    return f"`fusion-stream bag recover {path}` writes a whole, indexed copy of every complete message: use that file"


class BagTruncatedError(FormatError):
    """The file ends inside a record, as a recorder killed mid-write leaves it: what precedes is whole."""


class RecoverableBagError(FormatError):
    """Damage that ``bag recover`` can work around; the message already says how."""


class RecoverableTruncatedError(BagTruncatedError, RecoverableBagError):
    """A truncated file, with the way out in the message."""


class BagLimitError(FormatError):
    """A chunk or record is bigger than the reader allows, or inflates past the size it declares:
    a decompression bomb or damage, refused before the memory and time are spent."""


def chunk_limit() -> int:
    """The per-chunk limit: :data:`MAX_CHUNK_BYTES` unless ``FUSION_STREAM_BAG_MAX_CHUNK_MB`` is set."""
    raw = os.environ.get(MAX_CHUNK_ENV, "").strip()
    if not raw:
        return MAX_CHUNK_BYTES
    try:
        mib = float(raw)
    except ValueError:
        mib = math.nan
    if not (math.isfinite(mib) and 1 <= mib <= 1 << 20):
        raise UsageError(f"{MAX_CHUNK_ENV}={raw!r}: give the largest chunk to read in MiB, from 1 to 1048576")
    return int(mib * (1 << 20))


def _name(opcode: int) -> str:
    try:
        return Opcode(opcode).name.lower().replace("_", " ")
    except ValueError:
        return f"unknown (opcode {opcode:#04x})"


class _ShortRecord(Exception):
    """A length inside a record reaches past the record's end."""


class _Exact:
    """The bytes of one record; a read that would run past them fails instead of returning less."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        out = self._data.read(n) if n >= 0 else b""
        if n < 0 or len(out) != n:
            raise _ShortRecord(f"a field of {n} bytes reaches past the end of the record")
        return out


@dataclass(frozen=True)
class _ChunkHead:
    offset: int
    """File offset of the chunk record (its opcode byte)."""
    start_ns: int
    end_ns: int
    uncompressed_size: int
    crc: int
    compression: str
    data_offset: int
    data_length: int


@dataclass
class _Summary:
    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    statistics: Statistics | None = None
    chunk_indexes: list[ChunkIndex] = field(default_factory=list)


_Record = Schema | Channel | Message


class _Mcap:
    """An MCAP file read with every length checked first: nothing it reads or inflates is bigger
    than what is left of the file, the enclosing chunk, or ``limit`` (see the section comment)."""

    def __init__(self, stream: IO[bytes], path: Path, limit: int) -> None:
        self.f = stream
        self.path = path
        self.limit = limit
        self.size = os.fstat(stream.fileno()).st_size

    def _limit_hint(self) -> str:
        return f"{self.limit / (1 << 20):g} MiB (set {MAX_CHUNK_ENV} to read a genuine file with larger chunks)"

    def _read(self, offset: int, n: int) -> bytes:
        self.f.seek(offset)
        data = self.f.read(n)
        if len(data) != n:
            raise BagTruncatedError(f"{self.path}: truncated: the file ends inside the record at offset {offset}")
        return data

    def check_magic(self) -> None:
        if self._read(0, len(MCAP_MAGIC)) != MCAP_MAGIC:
            raise FormatError(f"{self.path}: not an MCAP file (bad magic)")

    def records(self, start: int) -> Iterator[tuple[int, int, int]]:
        """``(offset, opcode, length)`` of each top-level record from ``start`` up to the footer."""
        pos = start
        while True:
            if pos + 9 > self.size:
                raise BagTruncatedError(
                    f"{self.path}: truncated: the file ends at offset {self.size} without a footer "
                    "(the last complete record ends there)"
                )
            opcode, length = struct.unpack("<BQ", self._read(pos, 9))
            if length > self.size - pos - 9:
                raise BagTruncatedError(
                    f"{self.path}: truncated or damaged: the {_name(opcode)} record at offset {pos} claims "
                    f"{length} bytes, {length - (self.size - pos - 9)} more than the file has"
                )
            yield pos, opcode, length
            if opcode == Opcode.FOOTER:
                return
            pos += 9 + length

    def body(self, pos: int, opcode: int, length: int) -> bytes:
        if length > self.limit:
            raise BagLimitError(
                f"{self.path}: the {_name(opcode)} record at offset {pos} is {length} bytes, more than the "
                f"limit of {self._limit_hint()}"
            )
        return self._read(pos + 9, length)

    def parse(self, where: str, opcode: int, body: bytes) -> Schema | Channel | Statistics | ChunkIndex:
        stream = ReadDataStream(cast(IO[bytes], _Exact(body)))
        try:
            if opcode == Opcode.SCHEMA:
                return cast(Schema, Schema.read(stream))
            if opcode == Opcode.CHANNEL:
                return cast(Channel, Channel.read(stream))
            if opcode == Opcode.STATISTICS:
                return cast(Statistics, Statistics.read(stream))
            if opcode == Opcode.CHUNK_INDEX:
                return cast(ChunkIndex, ChunkIndex.read(stream))
        except (_ShortRecord, UnicodeDecodeError, struct.error) as err:
            raise FormatError(f"{self.path}: damaged {_name(opcode)} record {where}: {err}") from err
        raise AssertionError(f"parse() called for opcode {opcode}")  # a bug of ours, not of the file

    def message(self, where: str, body: bytes) -> Message:
        if len(body) < _MESSAGE_HEAD.size:
            raise FormatError(
                f"{self.path}: damaged message record {where}: {len(body)} bytes, shorter than its header"
            )
        channel_id, sequence, log_ns, publish_ns = _MESSAGE_HEAD.unpack_from(body)
        return Message(channel_id, log_ns, body[_MESSAGE_HEAD.size :], publish_ns, sequence)

    def record(self, where: str, opcode: int, body: bytes) -> _Record | None:
        """A schema, channel or message record; ``None`` for the kinds that messages do not need."""
        if opcode == Opcode.MESSAGE:
            return self.message(where, body)
        if opcode in (Opcode.SCHEMA, Opcode.CHANNEL):
            rec = self.parse(where, opcode, body)
            assert isinstance(rec, Schema | Channel)
            return rec
        return None

    def chunk_head(self, pos: int, length: int) -> _ChunkHead:
        """The chunk record at ``pos`` (``length`` from its record header), checked, without its data."""
        where = f"{self.path}: the chunk at offset {pos}"
        if length < 40:
            raise FormatError(f"{where} is damaged: {length} bytes, shorter than a chunk header")
        start_ns, end_ns, usize, crc, comp_len = struct.unpack("<QQQII", self._read(pos + 9, 32))
        if comp_len > 64 or 40 + comp_len > length:
            raise FormatError(f"{where} is damaged: a compression name of {comp_len} bytes")
        tail = self._read(pos + 9 + 32, comp_len + 8)
        try:
            compression = tail[:comp_len].decode()
        except UnicodeDecodeError as err:
            raise FormatError(f"{where} is damaged: the compression name is not text") from err
        (data_length,) = struct.unpack_from("<Q", tail, comp_len)
        if data_length > length - 40 - comp_len:
            raise FormatError(f"{where} is damaged: {data_length} bytes of data in a record of {length}")
        if compression not in _COMPRESSIONS:
            raise FormatError(f"{where} uses compression {compression[:16]!r}; only zstd, lz4 or none are read")
        if usize > self.limit:
            raise BagLimitError(
                f"{where} declares {usize} bytes uncompressed, more than the limit of {self._limit_hint()}: "
                "refused as a decompression bomb or damage"
            )
        if data_length > self.limit + self.limit // 64 + (1 << 16):  # no compressor expands more
            raise BagLimitError(f"{where} holds {data_length} bytes, more than the limit of {self._limit_hint()}")
        return _ChunkHead(pos, start_ns, end_ns, usize, crc, compression, pos + 9 + 40 + comp_len, data_length)

    def frame_size(self, head: _ChunkHead) -> int | None:
        """The uncompressed size in the chunk's zstd or lz4 frame header, if it says."""
        prefix = self._read(head.data_offset, min(head.data_length, 32))
        try:
            if head.compression == "zstd":
                n = zstandard.frame_content_size(prefix)
                return None if n < 0 else int(n)
            if head.compression == "lz4":
                n = lz4.frame.get_frame_info(prefix)["content_size"]
                return int(n) or None
        except (zstandard.ZstdError, RuntimeError):  # not a frame header: inflating says why
            return None
        return None

    def inflate(self, head: _ChunkHead) -> bytes:
        """The chunk's records, at most ``uncompressed_size`` bytes of work and memory, CRC-checked."""
        where = f"{self.path}: the chunk at offset {head.offset}"
        data = self._read(head.data_offset, head.data_length)
        want = head.uncompressed_size
        try:
            if head.compression == "zstd":
                out = _zstd(data, want + 1)
            elif head.compression == "lz4":
                out = _lz4(data, want + 1)
            else:
                out = data
        except (zstandard.ZstdError, RuntimeError) as err:  # lz4.frame raises RuntimeError
            raise FormatError(f"{where} does not decompress ({head.compression}: {err})") from err
        if len(out) > want:
            raise BagLimitError(
                f"{where} inflates to more than the {want} bytes it declares: refused as a decompression bomb or damage"
            )
        if len(out) < want:
            raise FormatError(f"{where} is damaged: it inflates to {len(out)} of the {want} bytes it declares")
        if head.crc and zlib.crc32(out) != head.crc:
            raise FormatError(f"{where} is damaged: its CRC does not match its content")
        return out

    def chunk_records(self, head: _ChunkHead) -> Iterator[tuple[int, _Record]]:
        """``(position, record)`` of the schemas, channels and messages inside a chunk."""
        data = self.inflate(head)
        pos, end = 0, len(data)
        while pos < end:
            where = f"in the chunk at offset {head.offset} (byte {pos} of its records)"
            if pos + 9 > end:
                raise FormatError(f"{self.path}: damaged record {where}: a record header cut short")
            opcode, length = struct.unpack_from("<BQ", data, pos)
            if length > end - pos - 9:
                raise FormatError(
                    f"{self.path}: damaged {_name(opcode)} record {where}: it claims {length} bytes, "
                    f"more than the chunk's {end - pos - 9} left"
                )
            rec = self.record(where, opcode, data[pos + 9 : pos + 9 + length])
            if rec is not None:
                yield pos, rec
            pos += 9 + length

    def linear(self) -> Iterator[_Record]:
        """Every schema, channel and message in file order, by reading the records one by one."""
        self.check_magic()
        for pos, opcode, length in self.records(len(MCAP_MAGIC)):
            if opcode == Opcode.CHUNK:
                for _, inner in self.chunk_records(self.chunk_head(pos, length)):
                    yield inner
            elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE):
                rec = self.record(f"at offset {pos}", opcode, self.body(pos, opcode, length))
                assert rec is not None
                yield rec

    def summary(self) -> _Summary | None:
        """The summary section, or ``None`` when the file has none (its writer never finished)."""
        if self.size < 2 * len(MCAP_MAGIC) + _FOOTER_BYTES:
            return None
        tail = self._read(self.size - len(MCAP_MAGIC) - _FOOTER_BYTES, _FOOTER_BYTES + len(MCAP_MAGIC))
        opcode, length, start, _offsets, _crc = struct.unpack_from("<BQQQI", tail)
        if tail[-len(MCAP_MAGIC) :] != MCAP_MAGIC or opcode != Opcode.FOOTER or length != 20 or start == 0:
            return None
        if not len(MCAP_MAGIC) <= start <= self.size - len(MCAP_MAGIC) - _FOOTER_BYTES:
            raise FormatError(f"{self.path}: damaged footer: the summary starts at {start}, outside the file")
        summary = _Summary()
        for pos, op, n in self.records(start):
            if op in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.STATISTICS, Opcode.CHUNK_INDEX):
                rec = self.parse(f"at offset {pos}", op, self.body(pos, op, n))
                if isinstance(rec, Schema):
                    summary.schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    summary.channels[rec.id] = rec
                elif isinstance(rec, Statistics):
                    summary.statistics = rec
                else:
                    summary.chunk_indexes.append(rec)
        return summary

    def indexed_chunks(self, summary: _Summary) -> list[tuple[ChunkIndex, _ChunkHead]]:
        """Each indexed chunk with its checked header. The index must point at distinct chunks
        that agree with it, so reading them all costs no more than the file's own chunks."""
        out: list[tuple[ChunkIndex, _ChunkHead]] = []
        end = 0
        for ci in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset):
            where = f"{self.path}: the chunk index entry for offset {ci.chunk_start_offset}"
            if ci.chunk_start_offset < end or ci.chunk_start_offset + 9 > self.size:
                raise FormatError(f"{where} overlaps another chunk or lies outside the file")
            opcode, length = struct.unpack("<BQ", self._read(ci.chunk_start_offset, 9))
            if opcode != Opcode.CHUNK or length > self.size - ci.chunk_start_offset - 9:
                raise FormatError(f"{where} does not point at a whole chunk record")
            head = self.chunk_head(ci.chunk_start_offset, length)
            said = (ci.compression, ci.compressed_size, ci.uncompressed_size)
            if said != (head.compression, head.data_length, head.uncompressed_size):
                raise FormatError(
                    f"{where} does not match the chunk: compression and sizes {said} in the index, "
                    f"{(head.compression, head.data_length, head.uncompressed_size)} in the chunk"
                )
            frame = self.frame_size(head)
            if frame is not None and frame > head.uncompressed_size:
                raise BagLimitError(
                    f"{self.path}: the chunk at offset {head.offset} inflates to {frame} bytes (its "
                    f"{head.compression} frame says) but declares {head.uncompressed_size}: refused as a "
                    "decompression bomb or damage"
                )
            end = ci.chunk_start_offset + 9 + length
            out.append((ci, head))
        return out

    def channel_times(self, ci: ChunkIndex) -> dict[int, tuple[int, int]]:
        """Channel id → (first, last) log time of its messages in one chunk, from the chunk's
        message index records (not the chunk: nothing is inflated). FormatError if they are damaged."""
        out: dict[int, tuple[int, int]] = {}
        for cid, offset in ci.message_index_offsets.items():
            where = f"{self.path}: the message index at offset {offset}"
            if offset + 9 > self.size:
                raise FormatError(f"{where} lies outside the file")
            opcode, length = struct.unpack("<BQ", self._read(offset, 9))
            if opcode != Opcode.MESSAGE_INDEX or length < 6 or length > self.size - offset - 9:
                raise FormatError(f"{where} is not a whole message index record")
            body = self.body(offset, opcode, length)
            channel_id, size = struct.unpack_from("<HI", body)
            if channel_id != cid or size % 16 or size != length - 6:
                raise FormatError(f"{where} does not match the chunk index (channel {channel_id}, {size} bytes)")
            if size:
                stamps = [t for (t,) in struct.iter_unpack("<Q8x", body[6:])]
                out[cid] = (min(stamps), max(stamps))
        return out

    def indexed_messages(
        self, summary: _Summary, topics: set[str] | None, start_ns: int | None, end_ns: int | None
    ) -> Iterator[tuple[Schema | None, Channel, Message]]:
        """Messages in log-time order (file order among equal times), one chunk in memory at a time
        unless chunks overlap in time."""
        wanted_ids = None if topics is None else {cid for cid, ch in summary.channels.items() if ch.topic in topics}
        heap: list[tuple[int, int, int, int, _ChunkHead | Message]] = []
        seq = 0
        for ci, head in self.indexed_chunks(summary):
            if start_ns is not None and ci.message_end_time < start_ns:
                continue
            if end_ns is not None and ci.message_start_time >= end_ns:
                continue
            if wanted_ids is not None and ci.message_index_offsets and not wanted_ids & set(ci.message_index_offsets):
                continue
            heap.append((ci.message_start_time, head.offset, -1, seq, head))
            seq += 1
        heapq.heapify(heap)
        while heap:
            _, offset, _, _, item = heapq.heappop(heap)
            if isinstance(item, _ChunkHead):
                for pos, rec in self.chunk_records(item):
                    if not isinstance(rec, Message):
                        continue
                    if wanted_ids is not None and rec.channel_id not in wanted_ids:
                        continue
                    if (start_ns is not None and rec.log_time < start_ns) or (
                        end_ns is not None and rec.log_time >= end_ns
                    ):
                        continue
                    heapq.heappush(heap, (rec.log_time, offset, pos, seq, rec))
                    seq += 1
                continue
            channel = summary.channels.get(item.channel_id)
            if channel is None:
                raise FormatError(
                    f"{self.path}: a message in the chunk at offset {offset} names channel {item.channel_id}, "
                    "which the summary does not have"
                )
            yield summary.schemas.get(channel.schema_id), channel, item


def mcap_records(stream: IO[bytes], path: Path, limit: int | None = None) -> Iterator[Schema | Channel | Message]:
    """Every schema, channel and message of an MCAP file in file order, each length checked and
    each chunk inflated within ``limit`` (default :func:`chunk_limit`). Raises
    :class:`BagTruncatedError` where the file ends inside a record, :class:`BagLimitError` for an
    oversized chunk or record and :class:`FormatError` for other damage."""
    return _Mcap(stream, path, chunk_limit() if limit is None else limit).linear()


def _zstd(data: bytes, most: int) -> bytes:
    """Inflate zstd frames, stopping after ``most`` bytes whatever the frame header claims."""
    parts: list[bytes] = []
    left = most
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
        while left > 0:
            part = reader.read(min(left, 1 << 24))
            if not part:
                break
            parts.append(part)
            left -= len(part)
    return b"".join(parts)


def _lz4(data: bytes, most: int) -> bytes:
    """Inflate an lz4 frame, stopping after ``most`` bytes."""
    dec = lz4.frame.LZ4FrameDecompressor()
    parts: list[bytes] = []
    left = most
    chunk = data
    while left > 0 and not dec.eof:
        part = dec.decompress(chunk, max_length=min(left, 1 << 24))
        chunk = b""
        if not part:
            break  # the frame is cut short (or done): the size check says which
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _check_rosbag2_mcap(path: Path, limit: int) -> None:
    """Refuse the MCAP storage files of a ROS 2 bag that ``rosbags`` would inflate without bound.

    ``rosbags`` passes the declared size to zstd (which trusts the frame header instead) and none
    to lz4, so every chunk's header, index entry and frame header are checked first, and lz4
    chunks whose frame does not state its size are inflated once with the bound."""
    for file in sorted(path.glob("*.mcap")):
        with open(file, "rb") as f:
            mcap = _Mcap(f, file, limit)
            mcap.check_magic()
            summary = mcap.summary()
            if summary is not None and summary.chunk_indexes:
                chunks = [head for _, head in mcap.indexed_chunks(summary)]  # rosbags trusts the index
            else:
                chunks = []
                with contextlib.suppress(BagTruncatedError):  # rosbags reads what is whole
                    chunks = [mcap.chunk_head(pos, n) for pos, op, n in mcap.records(8) if op == Opcode.CHUNK]
            for head in chunks:
                frame = mcap.frame_size(head)
                if frame is not None and frame > head.uncompressed_size:
                    raise BagLimitError(
                        f"{file}: the chunk at offset {head.offset} inflates to {frame} bytes (its frame says) "
                        f"but declares {head.uncompressed_size}: refused as a decompression bomb or damage"
                    )
                if head.compression == "lz4" and frame is None:
                    mcap.inflate(head)


def _bound_rosbag1_chunks(reader: AnyReader, path: Path, limit: int) -> None:
    """Give every chunk of a ROS 1 bag a decompressor bounded by the size its header declares.

    ``rosbags`` inflates bz2 and lz4 chunks whole, whatever their ``size`` field says: a bz2
    chunk of a few KB can hold GiBs of zeros. The declared size is checked against ``limit``
    and inflation stops one byte past it."""
    for bag in reader.readers:
        if not isinstance(bag, Reader1) or bag.bio is None:
            continue
        for pos, chunk in list(bag.chunks.items()):
            bag.bio.seek(pos)
            try:
                header = Header1.read(bag.bio)
                size = header.get_uint32("size")
                compression = header.get_string("compression")
            except ReaderError1 as err:
                raise FormatError(f"{path}: damaged chunk header at offset {pos}: {err}") from err
            if size > limit:
                raise BagLimitError(
                    f"{path}: the chunk at offset {pos} declares {size} bytes uncompressed, more than the limit "
                    f"of {limit / (1 << 20):g} MiB (set {MAX_CHUNK_ENV} to read a genuine file with larger "
                    "chunks): refused as a decompression bomb or damage"
                )
            bag.chunks[pos] = chunk._replace(decompressor=_bounded_ros1(path, pos, compression, size))


def _bounded_ros1(path: Path, pos: int, compression: str, size: int) -> Callable[[bytes], bytes]:
    def inflate(data: bytes) -> bytes:
        where = f"{path}: the chunk at offset {pos}"
        try:
            if compression == "bz2":
                out = bz2.BZ2Decompressor().decompress(data, max_length=size + 1)
            elif compression == "lz4":
                out = _lz4(data, size + 1)
            else:
                out = data
        except (OSError, RuntimeError, EOFError) as err:  # bz2: OSError; lz4.frame: RuntimeError
            raise FormatError(f"{where} does not decompress ({compression}: {err})") from err
        if len(out) > size:
            raise BagLimitError(
                f"{where} inflates to more than the {size} bytes it declares: refused as a decompression bomb or damage"
            )
        if len(out) < size:
            raise FormatError(f"{where} is damaged: it inflates to {len(out)} of the {size} bytes it declares")
        return out

    return inflate


class Bag:
    """A bag opened for reading. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: Path | str, *, max_chunk_bytes: int | None = None) -> None:
        self.path = Path(path)
        kind = _kind(self.path)
        if kind == "rosbag2-file":  # a .db3 inside a bag directory: open the directory
            self.path, kind = self.path.parent, "rosbag2"
        self.format = kind
        self.limit = max_chunk_bytes if max_chunk_bytes is not None else chunk_limit()
        """Largest chunk (uncompressed) or record read whole; bigger ones are a :class:`BagLimitError`."""
        self._stream: IO[bytes] | None = None
        self._mcap: _Mcap | None = None
        self._any: AnyReader | None = None
        self._schemas: dict[int, str] = {}
        if kind == "mcap":
            self._stream = open(self.path, "rb")  # noqa: SIM115  # closed in close()
            self._mcap = _Mcap(self._stream, self.path, self.limit)
            return
        if kind == "rosbag2":
            _check_rosbag2_mcap(self.path, self.limit)
        self._any = AnyReader([self.path], default_typestore=rostypes.typestore())
        try:
            self._any.open()
        except AnyReaderError as err:
            raise FormatError(f"{self.path}: cannot read the {kind} bag: {err}") from err
        except Exception as err:  # corrupt sqlite, truncated chunk headers ...
            raise FormatError(f"{self.path}: damaged {kind} bag ({type(err).__name__}: {err})") from err
        if kind == "rosbag1":
            try:
                _bound_rosbag1_chunks(self._any, self.path, self.limit)
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ info

    def info(self) -> BagInfo:
        if self._any is not None:
            return self._rosbag_info()
        return self._mcap_info()

    def _rosbag_info(self) -> BagInfo:
        assert self._any is not None
        counts: dict[tuple[str, str], int] = {}
        for c in self._any.connections:
            counts[(c.topic, c.msgtype)] = counts.get((c.topic, c.msgtype), 0) + c.msgcount
        # ROS bags keep counts per connection but no per-topic times: read the index (no decode).
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        with self._errors():
            for conn, t, _ in self._any.messages():
                first.setdefault(conn.topic, t)
                last[conn.topic] = t
        topics = tuple(
            TopicInfo(topic, typename, n, first.get(topic), last.get(topic))
            for (topic, typename), n in sorted(counts.items())
        )
        start, end = (min(first.values()), max(last.values())) if first else (0, 0)  # last message, inclusive
        return BagInfo(self.path, self.format, _size(self.path), start, end, topics)

    def _mcap_index(self) -> tuple[_Summary, list[tuple[ChunkIndex, _ChunkHead]]] | None:
        """The file's summary and checked chunk index, or ``None`` to read it linearly instead (no
        summary: its recorder was killed; a damaged one). Oversized chunks are refused here."""
        assert self._mcap is not None
        try:
            self._mcap.check_magic()
            summary = self._mcap.summary()
            if summary is None or not summary.chunk_indexes:
                return None
            return summary, self._mcap.indexed_chunks(summary)
        except BagLimitError:
            raise
        except FormatError as err:
            log.info("%s: the index is unusable (%s); reading the file record by record", self.path, err)
            return None

    def _mcap_info(self) -> BagInfo:
        assert self._mcap is not None
        index = self._mcap_index()
        if index is not None and index[0].statistics is not None:
            summary, chunks = index
            stats = index[0].statistics
            compression = {head.compression or "none" for _, head in chunks}
            times: dict[int, tuple[int, int]] = {}
            # each channel's own first and last message (as for ROS bags), not its chunks' bounds;
            # a chunk without message indexes (optional in MCAP) gives no times, so no rate
            try:
                for ci, _ in chunks:
                    for cid, (lo, hi) in self._mcap.channel_times(ci).items():
                        first, last = times.get(cid, (lo, hi))
                        times[cid] = (min(first, lo), max(last, hi))
            except BagLimitError:
                raise
            except FormatError as err:
                log.info("%s: the message indexes are unusable (%s); reading the file record by record", self.path, err)
                return self._mcap_scan_info()
            topics = tuple(
                sorted(
                    (
                        TopicInfo(
                            ch.topic,
                            summary.schemas[ch.schema_id].name if ch.schema_id in summary.schemas else "",
                            stats.channel_message_counts.get(cid, 0),
                            *times.get(cid, (None, None)),
                        )
                        for cid, ch in summary.channels.items()
                    ),
                    key=lambda t: t.topic,
                )
            )
            return BagInfo(
                self.path,
                "mcap",
                _size(self.path),
                stats.message_start_time,
                stats.message_end_time,
                topics,
                compression=",".join(sorted(compression)),
            )
        return self._mcap_scan_info()

    def _mcap_scan_info(self) -> BagInfo:
        """Info of an MCAP file without a (usable) summary, by reading every complete record."""
        counts: dict[tuple[str, str], list[int]] = {}
        problem = ""
        try:
            for raw in self._mcap_linear():
                entry = counts.setdefault((raw.topic, raw.typename), [0, raw.log_ns, raw.log_ns])
                entry[0] += 1
                entry[1] = min(entry[1], raw.log_ns)
                entry[2] = max(entry[2], raw.log_ns)
        except BagLimitError:
            raise  # not a torn end: refuse the file
        except FormatError as err:
            problem = str(err)
        topics = tuple(TopicInfo(t, ty, n, lo, hi) for (t, ty), (n, lo, hi) in sorted(counts.items()))
        start = min((t.first_ns for t in topics if t.first_ns is not None), default=0)
        end = max((t.last_ns for t in topics if t.last_ns is not None), default=0)
        return BagInfo(self.path, "mcap", _size(self.path), start, end, topics, indexed=False, problem=problem)

    # ------------------------------------------------------------------ messages

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except FormatError:
            raise
        except (EOFError, ValueError, KeyError, OSError, struct.error) as err:
            raise FormatError(f"{self.path}: damaged or truncated ({type(err).__name__}: {err})") from err
        except Exception as err:  # rosbags/sqlite raise their own types for damaged files
            if type(err).__module__.startswith(("rosbags", "sqlite3", "lz4", "zstandard")):
                raise FormatError(f"{self.path}: damaged or truncated ({type(err).__name__}: {err})") from err
            raise

    def _schema_name(self, schema: Schema | None) -> str:
        if schema is None:
            return ""
        if schema.id not in self._schemas:
            if schema.encoding == "ros2msg":
                rostypes.register_schema(schema.name, schema.data.decode())
            self._schemas[schema.id] = schema.name
        return self._schemas[schema.id]

    def _mcap_linear(self) -> Iterator[RawMessage]:
        """Messages in file order, reading record by record (for a file without a usable index)."""
        assert self._mcap is not None
        schemas: dict[int, Schema] = {}
        channels: dict[int, Channel] = {}
        with self._errors():
            for rec in self._mcap.linear():
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    if rec.schema_id != 0 and rec.schema_id not in schemas:
                        raise FormatError(
                            f"{self.path}: channel {rec.topic!r} names schema {rec.schema_id}, not defined before it"
                        )
                    channels[rec.id] = rec
                else:
                    channel = channels.get(rec.channel_id)
                    if channel is None:
                        raise FormatError(
                            f"{self.path}: a message names channel {rec.channel_id}, not defined before it"
                        )
                    yield RawMessage(
                        channel.topic,
                        self._schema_name(schemas.get(channel.schema_id)),
                        rec.log_time,
                        rec.data,
                        rec.publish_time,
                        self,
                    )

    def messages(
        self, topics: Iterable[str] | None = None, *, start_ns: int | None = None, end_ns: int | None = None
    ) -> Iterator[RawMessage]:
        """Messages in log-time order, optionally of some topics within [start_ns, end_ns). Damage
        in an MCAP file is a :class:`FormatError` that names the way out (:func:`recover_hint`)."""
        try:
            yield from self._messages(topics, start_ns=start_ns, end_ns=end_ns)
        except BagLimitError:
            raise  # a bomb or a limit to raise, not a torn file: recover would refuse it too
        except FormatError as err:
            if self._mcap is None or isinstance(err, RecoverableBagError):
                raise
            cls = RecoverableTruncatedError if isinstance(err, BagTruncatedError) else RecoverableBagError
            raise cls(f"{err}. {recover_hint(self.path)}") from err

    def _messages(
        self, topics: Iterable[str] | None, *, start_ns: int | None, end_ns: int | None
    ) -> Iterator[RawMessage]:
        wanted = None if topics is None else set(topics)
        if self._any is not None:
            conns = [c for c in self._any.connections if wanted is None or c.topic in wanted]
            with self._errors():
                for conn, t, data in self._any.messages(connections=conns, start=start_ns, stop=end_ns):
                    yield RawMessage(conn.topic, conn.msgtype, t, data, t, self)
            return
        assert self._mcap is not None
        index = self._mcap_index()
        if index is None:  # no index to merge by: every message, sorted (as the mcap library does)
            found = [
                raw
                for raw in self._mcap_linear()
                if (wanted is None or raw.topic in wanted)
                and (start_ns is None or raw.log_ns >= start_ns)
                and (end_ns is None or raw.log_ns < end_ns)
            ]
            yield from sorted(found, key=lambda raw: raw.log_ns)
            return
        with self._errors():
            for schema, channel, message in self._mcap.indexed_messages(index[0], wanted, start_ns, end_ns):
                yield RawMessage(
                    channel.topic, self._schema_name(schema), message.log_time, message.data, message.publish_time, self
                )

    def deserialize(self, raw: RawMessage) -> Any:
        try:
            if self._any is not None:
                return self._any.deserialize(bytes(raw.data), raw.typename)
            return rostypes.typestore().deserialize_cdr(bytes(raw.data), raw.typename)
        except KeyError as err:
            raise FormatError(f"{self.path}: topic {raw.topic}: unknown message type {raw.typename!r}") from err
        except Exception as err:
            raise FormatError(
                f"{self.path}: topic {raw.topic} at {raw.log_ns}: {raw.typename} does not decode "
                f"({type(err).__name__}: {err})"
            ) from err

    def _ros2_store_for(self, typename: str) -> Any:
        """The store whose ROS 2 definition of ``typename`` we write: the standard one when it
        has the type (a ROS 1 ``Header`` loses its ``seq`` there, as in ROS 2), else the bag's."""
        ours = rostypes.typestore()
        if typename in ours.types or self._any is None:
            return ours
        return self._any.typestore

    def to_cdr(self, raw: RawMessage) -> bytes:
        """The message as ROS 2 CDR bytes (ROS 1 messages are converted)."""
        if self.format != "rosbag1":
            return bytes(raw.data)
        assert self._any is not None
        store = self._ros2_store_for(raw.typename)
        try:
            if store is self._any.typestore:
                return bytes(store.serialize_cdr(store.deserialize_ros1(bytes(raw.data), raw.typename), raw.typename))
            return bytes(store.ros1_to_cdr(bytes(raw.data), raw.typename))
        except Exception as err:
            raise FormatError(f"{self.path}: topic {raw.topic}: cannot convert {raw.typename} to CDR ({err})") from err

    def schema_text(self, typename: str) -> str:
        """The ROS 2 ``.msg`` definition of a type in this bag, for writing it to MCAP."""
        store = self._ros2_store_for(typename) if self.format == "rosbag1" else self._store()
        try:
            return str(store.generate_msgdef(typename, ros_version=2)[0])
        except KeyError as err:
            raise FormatError(f"{self.path}: no definition for message type {typename!r}") from err

    def _store(self) -> Any:
        return self._any.typestore if self._any is not None else rostypes.typestore()

    def close(self) -> None:
        self._mcap = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._any is not None:
            self._any.close()
            self._any = None

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_bag(path: Path | str) -> Bag:
    """The bag at ``path`` (an MCAP file, a ROS 2 bag directory or a ROS 1 bag), checked and indexed."""
    return Bag(path)
