"""MCAP writer: ROS 2 schemas and CDR, split by size or duration, crash-tolerant.

Chunks are closed at least every ``flush_s`` seconds and written straight to the file, so a
recorder killed with ``kill -9`` loses at most that much; every complete chunk stays readable
and ``fusion-stream bag recover`` rebuilds the index. ``close()`` writes the summary (index,
statistics) that fast readers and Foxglove seek to.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from mcap.writer import CompressionType, Writer

from fusion_stream.bag import convert, rostypes
from fusion_stream.core import calib, msgs
from fusion_stream.errors import UsageError

Compression = Literal["zstd", "lz4", "none"]
_COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
PROFILE = "ros2"
TF_STATIC = "/tf_static"
LIBRARY = "fusion_stream"


def compression_type(name: str) -> CompressionType:
    try:
        return _COMPRESSION[name]
    except KeyError:
        raise UsageError(f"compression must be one of {list(_COMPRESSION)}, got {name!r}") from None


@dataclass
class WriteStats:
    messages: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    files: list[Path] = field(default_factory=list)


class McapFile:
    """One MCAP file being written: schemas and channels registered on first use."""

    def __init__(self, path: Path, *, compression: Compression = "zstd", chunk_size: int = 4 << 20) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._stream: IO[bytes] = open(path, "wb")  # noqa: SIM115  # closed in close()
        self._writer = Writer(self._stream, chunk_size=chunk_size, compression=compression_type(compression))
        self._writer.start(profile=PROFILE, library=LIBRARY)
        self._schemas: dict[str, int] = {}
        self._channels: dict[tuple[str, str], int] = {}
        self._seq: Counter[int] = Counter()
        self.first_ns: int | None = None
        self.bytes = 0
        self.closed = False

    def channel(self, topic: str, typename: str, schema: str | None = None) -> int:
        key = (topic, typename)
        cid = self._channels.get(key)
        if cid is None:
            sid = self._schemas.get(typename)
            if sid is None:
                text = schema if schema is not None else rostypes.schema_text(typename)
                sid = self._writer.register_schema(name=typename, encoding="ros2msg", data=text.encode())
                self._schemas[typename] = sid
            cid = self._writer.register_channel(topic=topic, message_encoding="cdr", schema_id=sid)
            self._channels[key] = cid
        return cid

    def write(self, channel_id: int, data: bytes, log_ns: int, publish_ns: int) -> None:
        if self.first_ns is None:
            self.first_ns = log_ns
        self._writer.add_message(
            channel_id=channel_id, log_time=log_ns, publish_time=publish_ns, data=data, sequence=self._seq[channel_id]
        )
        self._seq[channel_id] += 1
        self.bytes += len(data)

    def flush(self) -> None:
        self._writer.flush()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._writer.finish()  # type: ignore[no-untyped-call]
        finally:
            self._stream.close()


class BagWriter:
    """Writes messages to ``path`` (``.mcap``), or to ``<stem>_000.mcap``, ``<stem>_001.mcap`` …
    when ``split_bytes`` or ``split_s`` is set. A context manager: leaving it finishes the file."""

    def __init__(
        self,
        path: Path | str,
        *,
        compression: Compression = "zstd",
        split_bytes: int | None = None,
        split_s: float | None = None,
        flush_s: float = 1.0,
        chunk_size: int = 4 << 20,
        markers: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix != ".mcap":
            raise UsageError(f"output {self.path} must end in .mcap")
        if split_bytes is not None and split_bytes <= 0:
            raise UsageError(f"split size must be positive, got {split_bytes} bytes")
        if split_s is not None and split_s <= 0:
            raise UsageError(f"split duration must be positive, got {split_s} s")
        compression_type(compression)
        self.compression = compression
        self.split_bytes = split_bytes
        self.split_ns = None if split_s is None else int(split_s * 1e9)
        self.flush_s = flush_s
        self.chunk_size = chunk_size
        self.markers = markers
        """Also write ``<topic>/markers`` (visualization_msgs/MarkerArray) for every Detections
        message, so Foxglove and RViz draw the boxes of a recorded bag."""
        self.stats = WriteStats()
        self._static: list[tuple[str, str, bytes]] = []
        """Latched messages (``/tf_static``), repeated at the start of every split file."""
        self._file: McapFile | None = None
        self._last_flush = time.monotonic()

    @property
    def splitting(self) -> bool:
        return self.split_bytes is not None or self.split_ns is not None

    def _next_path(self) -> Path:
        if not self.splitting:
            return self.path
        return self.path.with_name(f"{self.path.stem}_{len(self.stats.files):03d}.mcap")

    def _current(self, log_ns: int) -> McapFile:
        f = self._file
        if f is not None and f.first_ns is not None:
            too_big = self.split_bytes is not None and f.bytes >= self.split_bytes
            too_long = self.split_ns is not None and log_ns - f.first_ns >= self.split_ns
            if too_big or too_long:
                f.close()
                f = None
        if f is None:
            f = McapFile(self._next_path(), compression=self.compression, chunk_size=self.chunk_size)
            self.stats.files.append(f.path)
            self._file = f
            for topic, typename, data in self._static:
                f.write(f.channel(topic, typename), data, log_ns, log_ns)
        return f

    def write_raw(
        self,
        topic: str,
        typename: str,
        data: bytes,
        log_ns: int,
        *,
        publish_ns: int | None = None,
        schema: str | None = None,
    ) -> None:
        """Write CDR bytes already encoded as ``typename`` (copying a bag, or a foreign type)."""
        f = self._current(log_ns)
        f.write(f.channel(topic, typename, schema), data, log_ns, log_ns if publish_ns is None else publish_ns)
        self.stats.messages[topic] += 1
        self.stats.bytes += len(data)
        now = time.monotonic()
        if now - self._last_flush >= self.flush_s:
            f.flush()
            self._last_flush = now

    def write(self, topic: str, msg: msgs.Message, log_ns: int, *, publish_ns: int | None = None) -> None:
        """Write one of our messages, received (or logged) at ``log_ns`` and sent at ``publish_ns``."""
        typename, data = convert.serialize(msg)
        self.write_raw(topic, typename, data, log_ns, publish_ns=publish_ns)
        if self.markers and isinstance(msg, msgs.Detections):
            typename, data = convert.detection_markers(msg, ground_truth=topic.startswith("/ground_truth"))
            self.write_raw(f"{topic}/markers", typename, data, log_ns, publish_ns=publish_ns)

    def write_tf_static(self, rig: calib.Rig, log_ns: int) -> None:
        """The rig's sensor poses on ``/tf_static``, so viewers place each sensor's data."""
        typename, data = convert.tf_static(rig, log_ns)
        self.write_raw(TF_STATIC, typename, data, log_ns)
        self._static.append((TF_STATIC, typename, data))  # for the next split files

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_writable(path: Path) -> None:
    """Refuse to overwrite an existing bag by accident."""
    if path.exists():
        raise UsageError(f"{path} already exists; remove it or choose another output name")
