"""Open any bag people have: our MCAP, ROS 2 bags (sqlite3 or MCAP storage) and ROS 1 ``.bag``.

MCAP files are read with the ``mcap`` library (indexed when finished, linearly when a recorder
died before writing the index); ROS bags with ``rosbags``' ``AnyReader``. Either way the result
is the same stream of :class:`RawMessage` in log-time order, each with a ROS 2 type name and a
way to decode it, and :meth:`Bag.info` works without decoding a single message.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mcap.exceptions import EndOfFile, McapError
from mcap.reader import NonSeekingReader, SeekingReader
from mcap.records import Schema
from rosbags.highlevel import AnyReader, AnyReaderError

from fusion_stream.bag import rostypes
from fusion_stream.errors import FormatError

log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"
ROS1_MAGIC = b"#ROSBAG V2.0"


@dataclass(frozen=True)
class TopicInfo:
    topic: str
    typename: str
    count: int
    first_ns: int | None = None
    last_ns: int | None = None

    @property
    def rate_hz(self) -> float | None:
        if self.count < 2 or self.first_ns is None or self.last_ns is None or self.last_ns <= self.first_ns:
            return None
        return (self.count - 1) / ((self.last_ns - self.first_ns) / 1e9)


@dataclass(frozen=True)
class BagInfo:
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


class Bag:
    """A bag opened for reading. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        kind = _kind(self.path)
        if kind == "rosbag2-file":  # a .db3 inside a bag directory: open the directory
            self.path, kind = self.path.parent, "rosbag2"
        self.format = kind
        self._stream: IO[bytes] | None = None
        self._any: AnyReader | None = None
        self._schemas: dict[int, str] = {}
        if kind == "mcap":
            self._stream = open(self.path, "rb")  # noqa: SIM115  # closed in close()
        else:
            self._any = AnyReader([self.path], default_typestore=rostypes.typestore())
            try:
                self._any.open()
            except AnyReaderError as err:
                raise FormatError(f"{self.path}: cannot read the {kind} bag: {err}") from err
            except Exception as err:  # corrupt sqlite, truncated chunk headers ...
                raise FormatError(f"{self.path}: damaged {kind} bag ({type(err).__name__}: {err})") from err

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

    def _mcap_info(self) -> BagInfo:
        assert self._stream is not None
        summary = None
        with contextlib.suppress(McapError, ValueError, EOFError, OSError):
            self._stream.seek(0)
            summary = SeekingReader(self._stream).get_summary()
        if summary is not None and summary.statistics is not None and summary.chunk_indexes:
            stats = summary.statistics
            compression = {c.compression or "none" for c in summary.chunk_indexes}
            times: dict[int, tuple[int, int]] = {}
            for ci in summary.chunk_indexes:  # per-channel first/last from the message indexes is
                for cid in ci.message_index_offsets:  # costly; chunk bounds are close enough
                    lo, hi = times.get(cid, (ci.message_start_time, ci.message_end_time))
                    times[cid] = (min(lo, ci.message_start_time), max(hi, ci.message_end_time))
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
        """Info of an MCAP file without a summary, by reading every complete record."""
        counts: dict[tuple[str, str], list[int]] = {}
        problem = ""
        try:
            for raw in self._mcap_linear():
                entry = counts.setdefault((raw.topic, raw.typename), [0, raw.log_ns, raw.log_ns])
                entry[0] += 1
                entry[1] = min(entry[1], raw.log_ns)
                entry[2] = max(entry[2], raw.log_ns)
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
        except EndOfFile as err:
            raise FormatError(f"{self.path}: truncated: the file ends inside a record") from err
        except (McapError, EOFError, ValueError, KeyError, OSError, struct.error) as err:
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
        assert self._stream is not None
        self._stream.seek(0)
        with self._errors():
            for schema, channel, message in NonSeekingReader(self._stream).iter_messages(log_time_order=False):
                yield RawMessage(
                    channel.topic, self._schema_name(schema), message.log_time, message.data, message.publish_time, self
                )

    def messages(
        self, topics: Iterable[str] | None = None, *, start_ns: int | None = None, end_ns: int | None = None
    ) -> Iterator[RawMessage]:
        """Messages in log-time order, optionally of some topics within [start_ns, end_ns)."""
        wanted = None if topics is None else set(topics)
        if self._any is not None:
            conns = [c for c in self._any.connections if wanted is None or c.topic in wanted]
            with self._errors():
                for conn, t, data in self._any.messages(connections=conns, start=start_ns, stop=end_ns):
                    yield RawMessage(conn.topic, conn.msgtype, t, data, t, self)
            return
        assert self._stream is not None
        self._stream.seek(0)
        reader = SeekingReader(self._stream)
        with self._errors():
            for schema, channel, message in reader.iter_messages(
                topics=None if wanted is None else sorted(wanted), starting_at=start_ns, ending_before=end_ns
            ):
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
    return Bag(path)
