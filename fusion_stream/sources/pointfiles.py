"""Point-cloud files as frame sequences, and the plumbing every LiDAR source shares.

Folders of point files (KITTI ``velodyne/*.bin`` in either KITTI layout or a plain directory of
``.bin``; PCD files) carry no capture time, so a node plays them on its capture grid with
:func:`~fusion_stream.sources.playback.frame_index`: a KITTI sweep, image and label set with the
same rate and epoch get the same stamp.

Packet recordings (Velodyne and Ouster pcaps) do carry time: :class:`RecordedPlayback` publishes
their rotations at the recorded spacing. Live sensors send UDP: :class:`UdpReceiver` owns the
socket (and notices a sensor that went quiet) while the decoders stay pure functions of the bytes,
so tests and benchmarks feed them recordings directly. :class:`SourceStats` is what every source
reports in ``/diagnostics``.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from fusion_stream.core import msgs
from fusion_stream.core.formats import read_pcd
from fusion_stream.core.kitti import KittiFolder, read_velodyne
from fusion_stream.errors import FormatError, FusionStreamError, ParamError
from fusion_stream.sources.playback import frame_index

log = logging.getLogger(__name__)

LIDAR_FIELDS = ("x", "y", "z", "intensity", "ring", "time_offset")
"""Fields of the clouds the packet decoders produce (the simulated LiDAR's, too)."""

Stamps = Literal["now", "recorded"]

# --------------------------------------------------------------------------- statistics


@dataclass
class SourceStats:
    """What a source decoded and what it had to skip, for ``/diagnostics`` and error messages."""

    packets: int = 0
    """Packets decoded."""
    rotations: int = 0
    points: int = 0
    last_points: int = 0
    """Points in the latest rotation."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Packets (or records) skipped, by reason: ``truncated``, ``garbled``, ``wrong size`` ..."""

    def skip(self, reason: str, count: int = 1) -> None:
        if count > 0:
            self.skipped[reason] += count

    def rotation(self, points: int) -> None:
        self.rotations += 1
        self.points += points
        self.last_points = points

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def describe_skipped(self) -> str:
        """``"3 packets skipped (2 truncated, 1 garbled)"``, or ``""`` when none were."""
        if not self.skipped:
            return ""
        parts = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        return f"{self.skipped_total} packets skipped ({parts})"

    def values(self) -> dict[str, msgs.ScalarValue]:
        """The ``/diagnostics`` values."""
        out: dict[str, msgs.ScalarValue] = {
            "rotations": self.rotations,
            "points_per_rotation": self.last_points,
            "packets": self.packets,
            "packets_skipped": self.skipped_total,
        }
        for reason, n in self.skipped.items():
            out[f"packets_skipped.{reason.replace(' ', '_')}"] = n
        return out


class PacketDecoder(Protocol):
    """Bytes of one UDP datagram in, finished rotations out (what :class:`LiveLidar` drives)."""

    stats: SourceStats

    def feed(self, payload: bytes, host_stamp_s: float) -> list[msgs.PointCloud]: ...

    def reset(self) -> None:
        """Forget a partial rotation (the stream had a gap)."""


# --------------------------------------------------------------------------- point files


_INTENSITY = ("intensity", "reflectance", "reflectivity", "i", "remission")
_RING = ("ring", "channel", "laser_id")
_TIME_SCALE = {  # field name -> scale to seconds (integer times are nanoseconds in every driver we know)
    "time_offset": 1.0,
    "time": 1.0,  # velodyne_pointcloud: float seconds
    "t": 1e-9,  # ouster: uint32 ns
    "time_stamp": 1e-9,  # nebula: uint32 ns
    "offset_time": 1e-9,  # livox
}


def cloud_from_columns(columns: Mapping[str, np.ndarray], *, stamp_ns: int, frame_id: str) -> msgs.PointCloud:
    """A PointCloud from named columns of a point file: x, y, z; intensity (or reflectance ...,
    zeros if absent); ring (or channel, laser_id) and time_offset (from time, t, time_stamp ...,
    made relative to the earliest point) when the file has them."""
    missing = [c for c in ("x", "y", "z") if c not in columns]
    if missing:
        raise FormatError(f"point file has no {missing}; it has {list(columns)}")
    n = len(columns["x"])
    out: dict[str, np.ndarray] = {c: columns[c] for c in ("x", "y", "z")}
    intensity = next((c for c in _INTENSITY if c in columns), None)
    out["intensity"] = columns[intensity] if intensity else np.zeros(n, np.float32)
    ring = next((c for c in _RING if c in columns), None)
    if ring:
        out["ring"] = columns[ring]
    time_name = next((c for c in _TIME_SCALE if c in columns), None)
    if time_name and n:
        t = np.asarray(columns[time_name], np.float64) * _TIME_SCALE[time_name]
        out["time_offset"] = t - t.min()
    return msgs.PointCloud.from_fields(stamp_ns=stamp_ns, frame_id=frame_id, **out)  # type: ignore[return-value]


_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}
_PCD_TYPES |= {("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8"}


def read_pcd_columns(path: Path | str) -> dict[str, np.ndarray]:
    """The fields of a PCD file as float32 columns.

    Binary PCDs may mix types (a driver's ``intensity`` U1, ``channel`` U2, ``time_stamp`` U4);
    anything else (ascii, all-float) goes to :func:`fusion_stream.core.formats.read_pcd`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FormatError(f"{path}: cannot read ({err})") from err
    header: dict[str, list[str]] = {}
    offset = 0
    while (end := raw.find(b"\n", offset)) >= 0:
        words = raw[offset:end].decode("ascii", "replace").split()
        offset = end + 1
        if words and not words[0].startswith("#"):
            header[words[0].upper()] = words[1:]
            if words[0].upper() == "DATA":
                break
    mixed = any(t != "F" or s != "4" for t, s in zip(header.get("TYPE", ()), header.get("SIZE", ()), strict=False))
    if header.get("DATA", [""])[0] != "binary" or not mixed:
        data, float_names = read_pcd(path)
        return {name: data[:, i] for i, name in enumerate(float_names)}
    try:
        names = header["FIELDS"]
        counts = [int(c) for c in header.get("COUNT", ["1"] * len(names))]
        n = int(header["POINTS"][0])
        codes = [_PCD_TYPES[(t, int(s))] for t, s in zip(header["TYPE"], header["SIZE"], strict=True)]
        layout = zip(names, codes, counts, strict=True)
        dtype = np.dtype([(name, "<" + code, (c,) if c > 1 else ()) for name, code, c in layout])
    except (KeyError, IndexError, ValueError, TypeError) as err:
        raise FormatError(f"{path}: PCD header is missing or has a bad {err}") from err
    body = raw[offset:]
    if len(body) < n * dtype.itemsize:
        raise FormatError(f"{path}: truncated: {n} points need {n * dtype.itemsize} bytes, found {len(body)}")
    rec = np.frombuffer(body, dtype, n)
    return {name: rec[name].astype(np.float32) for name, c in zip(names, counts, strict=True) if c == 1}


@dataclass(frozen=True)
class PointFiles:
    """Point files played as frames, one file per frame (sorted by name)."""

    paths: tuple[Path, ...]
    kind: Literal["kitti", "pcd"]
    root: Path

    def __len__(self) -> int:
        return len(self.paths)

    def columns(self, i: int) -> dict[str, np.ndarray]:
        path = self.paths[i]
        if self.kind == "pcd":
            return read_pcd_columns(path)
        points = read_velodyne(path)
        return {"x": points[:, 0], "y": points[:, 1], "z": points[:, 2], "intensity": points[:, 3]}

    def cloud(self, i: int, *, stamp_ns: int, frame_id: str) -> msgs.PointCloud:
        """Frame ``i`` as a PointCloud (errors name the file)."""
        try:
            return cloud_from_columns(self.columns(i), stamp_ns=stamp_ns, frame_id=frame_id)
        except FormatError as err:
            text = str(err)
            raise FormatError(text if str(self.paths[i]) in text else f"{self.paths[i]}: {text}") from err


def kitti_sweeps(path: Path | str) -> PointFiles:
    """KITTI sweeps: an object folder in either KITTI layout (``velodyne/NNNNNN.bin`` or
    ``NNNNNN/velodyne.bin``), a plain directory of ``.bin`` files, or one ``.bin``."""
    root = Path(path)
    if root.is_file():
        return PointFiles((root,), "kitti", root)
    if not root.is_dir():
        raise FormatError(f"{root}: no such KITTI folder or .bin file")
    bins = sorted(root.glob("*.bin"))
    if not bins:
        try:
            folder = KittiFolder(root)
        except FormatError:
            raise FormatError(
                f"{root}: no KITTI sweeps (expected velodyne/NNNNNN.bin, NNNNNN/velodyne.bin or *.bin)"
            ) from None
        bins = [folder.path(fid, "velodyne") for fid in folder.ids]
    return PointFiles(tuple(bins), "kitti", root)


def pcd_files(path: Path | str) -> PointFiles:
    """One PCD file, or every ``*.pcd`` of a directory (sorted by name)."""
    root = Path(path)
    if root.is_file():
        return PointFiles((root,), "pcd", root)
    files = sorted(root.glob("*.pcd")) if root.is_dir() else []
    if not files:
        raise FormatError(f"{root}: no .pcd file there" if root.is_dir() else f"{root}: no such PCD file or folder")
    return PointFiles(tuple(files), "pcd", root)


class FolderPlayback:
    """Point files on the capture grid: the frame for capture time ``t`` is
    :func:`~fusion_stream.sources.playback.frame_index` of ``t``, stamped ``t``.

    Looping, every node with the same rate and epoch plays the same frame at the same stamp.
    Without looping the files play once, from ``epoch_ns``; an ``epoch_ns`` of 0 (the Unix
    epoch, long past) means "from the first grid point at or after ``start_ns``"."""

    def __init__(
        self, files: PointFiles, *, period_ns: int, epoch_ns: int, loop: bool, start_ns: int, frame_id: str
    ) -> None:
        self.files = files
        self.period_ns = period_ns
        self.loop = loop
        self.frame_id = frame_id
        self.epoch_ns = epoch_ns if loop or epoch_ns else first_grid_point(start_ns, period_ns)
        self.stats = SourceStats()

    def at(self, capture_ns: int) -> msgs.PointCloud | None:
        """The frame captured at ``capture_ns``; None once a non-looping folder has played."""
        i = frame_index(capture_ns, self.epoch_ns, self.period_ns, len(self.files), loop=self.loop)
        if i is None:
            return None
        cloud = self.files.cloud(i, stamp_ns=capture_ns, frame_id=self.frame_id)
        self.stats.rotation(len(cloud))
        return cloud

    @property
    def finished_at(self) -> int | None:
        """Capture time after which a non-looping folder has nothing left (None when looping)."""
        return None if self.loop else self.epoch_ns + len(self.files) * self.period_ns


# --------------------------------------------------------------------------- recorded playback


def rotation_end_ns(cloud: msgs.PointCloud) -> int:
    """When the last point of a rotation was measured (its stamp when it has no time_offset)."""
    if "time_offset" not in cloud.fields or not len(cloud):
        return cloud.stamp_ns
    return cloud.stamp_ns + round(float(cloud.field("time_offset").max()) * 1e9)


class RecordedPlayback:
    """Plays a recording's rotations at their recorded spacing, decoding lazily.

    A rotation is due once its last point would have been measured (like a real sensor, which
    sends it then). ``stamps="now"`` shifts recorded times onto the node's clock (starting at
    ``start_ns``); ``"recorded"`` keeps them. With ``loop``, the recording starts again one
    rotation period after its last rotation, stamps still increasing under ``"now"``."""

    MAX_LAG_NS = 1_000_000_000
    """Further behind than this (a stalled process), playback skips ahead instead of bursting."""

    def __init__(
        self,
        open_rotations: Callable[[], Iterable[msgs.PointCloud]],
        *,
        start_ns: int,
        stamps: Stamps = "now",
        loop: bool = False,
        name: str = "recording",
    ) -> None:
        if stamps not in ("now", "recorded"):
            raise ParamError("stamps", f"must be 'now' or 'recorded', got {stamps!r}")
        self._open = open_rotations
        self._stamps = stamps
        self._loop = loop
        self.name = name
        self.loops = 0
        self.published = 0
        self.resyncs = 0
        self.error = ""
        """Why playback stopped early (the recording became unreadable), or ``""``."""
        self._it: Iterator[msgs.PointCloud] = iter(open_rotations())
        first = next(self._it, None)
        if first is None:
            raise FormatError(f"{name}: no complete rotation to play")
        self._next: msgs.PointCloud | None = first
        self._first_ns = first.stamp_ns
        self._prev_ns = first.stamp_ns
        self._period_ns = 100_000_000
        self._offset_ns = start_ns - first.stamp_ns

    @property
    def finished(self) -> bool:
        return self._next is None

    def due(self, now_ns: int) -> list[msgs.PointCloud]:
        """The rotations to publish now, in order (restamped under ``stamps="now"``)."""
        out: list[msgs.PointCloud] = []
        while self._next is not None:
            due_ns = rotation_end_ns(self._next) + self._offset_ns
            if now_ns < due_ns:
                break
            if now_ns - due_ns > self.MAX_LAG_NS:
                self._offset_ns += now_ns - due_ns
                self.resyncs += 1
            cloud = self._next
            if self._stamps == "now":
                cloud = dataclasses.replace(cloud, stamp_ns=cloud.stamp_ns + self._offset_ns)
            out.append(cloud)
            self.published += 1
            self._advance()
        return out

    def _advance(self) -> None:
        assert self._next is not None
        current = self._next
        if current.stamp_ns > self._prev_ns:
            self._period_ns = current.stamp_ns - self._prev_ns
        self._prev_ns = current.stamp_ns
        try:
            self._next = next(self._it, None)
            if self._next is None and self._loop:
                self._offset_ns += current.stamp_ns + self._period_ns - self._first_ns
                self.loops += 1
                self._it = iter(self._open())
                self._next = next(self._it, None)
                if self._next is not None:
                    self._prev_ns = self._next.stamp_ns - self._period_ns
        except FusionStreamError as err:  # e.g. the file was replaced mid-playback: stop, say why
            self.error = str(err)
            self._next = None
            log.error("%s: playback stopped: %s", self.name, err)


# --------------------------------------------------------------------------- live UDP


class UdpReceiver:
    """A non-blocking UDP socket bound to ``port`` that notices when the sensor goes quiet.

    :meth:`drain` returns every datagram waiting. A socket that cannot be bound, or a sensor
    silent for ``silence_s``, is retried (the socket re-opened) with exponential backoff up to
    ``max_backoff_s``; :meth:`health` says what is wrong, naming the port."""

    def __init__(
        self,
        port: int,
        host: str = "0.0.0.0",
        *,
        silence_s: float = 1.0,
        max_backoff_s: float = 30.0,
        rcvbuf: int = 8 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < port < 65536:
            raise ParamError("port", f"a UDP port must be 1..65535, got {port}")
        self.port = port
        self.host = host
        self.silence_s = silence_s
        self.max_backoff_s = max_backoff_s
        self.rcvbuf = rcvbuf
        self._clock = clock
        self._sock: socket.socket | None = None
        self._error = ""
        self._backoff = 1.0
        self._retry_at = clock()
        self._last_rx = clock()
        self.received = 0
        self.reopens = 0
        self.silent = False
        self._open()

    @property
    def where(self) -> str:
        return f"UDP port {self.port}"

    def _open(self) -> None:
        now = self._clock()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except OSError as err:
            sock.close()
            self._error = f"cannot bind {self.where} on {self.host or '*'}: {err.strerror or err}"
            self._schedule_retry(now)
            log.warning("%s; retrying in %.0f s", self._error, self._retry_at - now)
            return
        self._sock = sock
        if self._error:  # bound at last: the silence clock starts now
            self._last_rx = now
        self._error = ""

    def _schedule_retry(self, now: float) -> None:
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff_s)

    def drain(self, max_datagrams: int = 100_000) -> list[tuple[float, bytes]]:
        """Every datagram waiting, as (host receive time in Unix seconds, payload)."""
        now = self._clock()
        if self._sock is None:
            if now >= self._retry_at:
                self._open()
            return []
        out: list[tuple[float, bytes]] = []
        while len(out) < max_datagrams:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as err:  # e.g. the interface went away
                if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                self._error = f"receiving on {self.where}: {err.strerror or err}"
                self._reopen(now)
                break
            out.append((time.time(), data))
        if out:
            self.received += len(out)
            self._last_rx = now
            self._backoff = 1.0
            self.silent = False
        elif now - self._last_rx > self.silence_s:
            if not self.silent:
                self.silent = True
                self._schedule_retry(now)
            elif now >= self._retry_at:
                self._reopen(now)
        return out

    def _reopen(self, now: float) -> None:
        self.close()
        self.reopens += 1
        self._open()
        if self._sock is not None:  # still silent until a datagram arrives; next retry later
            self._schedule_retry(now)

    def silent_for(self) -> float:
        return max(0.0, self._clock() - self._last_rx) if self.silent else 0.0

    def health(self) -> tuple[msgs.Level, str]:
        """OK while datagrams arrive; WARN naming the port when it cannot bind or hears nothing."""
        if self._sock is None:
            return msgs.Level.WARN, f"{self._error}; retrying in {max(0.0, self._retry_at - self._clock()):.0f} s"
        if self.silent:
            now = self._clock()
            retry = max(0.0, self._retry_at - now)
            return (
                msgs.Level.WARN,
                f"no packets on {self.where} for {now - self._last_rx:.1f} s (sensor off, unplugged or sending "
                f"elsewhere?); socket re-opened {self.reopens} times, next retry in {retry:.0f} s",
            )
        return msgs.Level.OK, ""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class LiveLidar:
    """A live sensor: datagrams from a :class:`UdpReceiver` fed to a :class:`PacketDecoder`.

    A gap in the stream drops the partial rotation; a decoder error (say packets of another
    model) is kept for :meth:`health` and the stream keeps being read."""

    def __init__(self, receiver: UdpReceiver, decoder: PacketDecoder) -> None:
        self.receiver = receiver
        self.decoder = decoder
        self.error = ""
        self._was_silent = False

    def poll(self) -> list[msgs.PointCloud]:
        """Rotations completed by the datagrams that arrived since the last call."""
        datagrams = self.receiver.drain()
        if self.receiver.silent and not self._was_silent:
            self.decoder.reset()
        self._was_silent = self.receiver.silent
        out: list[msgs.PointCloud] = []
        for stamp, payload in datagrams:
            try:
                out.extend(self.decoder.feed(payload, stamp))
            except FormatError as err:
                if str(err) != self.error:
                    log.error("%s", err)
                self.error = str(err)
                self.decoder.stats.skip("rejected")
        return out

    def health(self) -> tuple[msgs.Level, str]:
        level, message = self.receiver.health()
        if self.error:
            return msgs.Level.ERROR, self.error
        skipped = self.decoder.stats.describe_skipped()
        if level == msgs.Level.OK and skipped:
            return msgs.Level.OK, skipped
        return level, message

    def close(self) -> None:
        self.receiver.close()


def first_grid_point(now_ns: int, period_ns: int, epoch_ns: int = 0) -> int:
    """The first capture-grid point (``epoch_ns + k·period_ns``) at or after ``now_ns``."""
    return now_ns + (epoch_ns - now_ns) % period_ns
