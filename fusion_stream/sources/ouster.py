"""Ouster OS0/OS1/OS2: pcap recordings with their metadata JSON, and live UDP packets → one
:class:`~fusion_stream.core.msgs.PointCloud` per complete frame (the SDK's ``LidarFrame``, formerly
``LidarScan``).

Packet formats, profiles, frame batching, destaggering and the beam geometry (the XYZ look-up
table) come from ouster-sdk (extra ``ouster``); nothing of the sensor's format is re-implemented
here. What this module adds: clouds in the sensor frame with zero-range pixels dropped,
``intensity`` from SIGNAL (REFLECTIVITY for profiles without it), ``ring`` = beam row and
``time_offset`` from the column timestamps; incomplete frames dropped and counted; and a clear
error when the metadata JSON is not the one of the recording (the SDK silently drops every packet
then). :func:`raw_frames` gives the staggered fields as the SDK decodes them, for checks against
Ouster's golden digests.

:class:`OusterDecoder` is pure (datagram bytes in, rotations out); :class:`OusterPcap` feeds it a
file, :class:`~fusion_stream.sources.pointfiles.UdpReceiver` a socket.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from fusion_stream.core import msgs
from fusion_stream.errors import FormatError, FusionStreamError
from fusion_stream.sources.pointfiles import LIDAR_FIELDS, SourceStats

LIDAR_PORT: Final = 7502
"""Default destination port of lidar packets (IMU packets go to 7503 and are ignored)."""
PLAUSIBLE_UNIX_NS: Final = 1_000_000_000 * 1_000_000_000
"""Column timestamps above this (2001-09-09) are a synchronised clock (PTP): the stamp uses them.
Below it they count from sensor power-on, and the packets' host times stamp the frame instead."""


def _sdk() -> Any:
    """ouster.sdk.core, or a clear error naming the extra to install."""
    try:
        return importlib.import_module("ouster.sdk.core")
    except ImportError as err:
        raise FusionStreamError(f"Ouster sources need ouster-sdk ({err}): pip install 'fusion-stream[ouster]'") from err


def read_metadata(path: Path | str) -> Any:
    """The ``SensorInfo`` of a metadata JSON; a FormatError naming the file if it is not one."""
    core = _sdk()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise FormatError(f"{p}: cannot read Ouster metadata ({err.strerror or err})") from err
    try:
        return core.SensorInfo(text)
    except (RuntimeError, ValueError) as err:
        raise FormatError(f"{p}: not Ouster sensor metadata ({err})") from err


def describe(info: Any) -> str:
    """``"OS-1-32-G 1024x10, profile LEGACY, 6464-byte packets"``."""
    core = _sdk()
    pf = core.PacketFormat(info)
    profile = getattr(info.format.udp_profile_lidar, "name", str(info.format.udp_profile_lidar))
    return f"{info.prod_line} {info.w}x{info.format.fps}, profile {profile}, {pf.lidar_packet_size}-byte packets"


@dataclass(frozen=True)
class RawFrame:
    """One frame's staggered data as the SDK decodes it (rows = beams, columns = packet order)."""

    frame_id: int
    timestamp: np.ndarray
    """Column timestamps, ns (sensor clock)."""
    status: np.ndarray
    measurement_id: np.ndarray
    fields: dict[str, np.ndarray]
    """RANGE (mm, uint32), SIGNAL, REFLECTIVITY, NEAR_IR ... as (rows, columns) arrays."""


class OusterDecoder:
    """Lidar-packet payloads in, one PointCloud per complete frame out.

    ``metadata`` is a ``SensorInfo`` or the path of the sensor's metadata JSON. Packets of
    another size (another profile or sensor) or another sensor's id are counted and skipped."""

    def __init__(self, metadata: Any, *, source: str = "UDP", frame_id: str = "os_sensor") -> None:
        self._core = _sdk()
        self.metadata_name = Path(metadata).name if isinstance(metadata, (str, Path)) else "metadata"
        self.info = read_metadata(metadata) if isinstance(metadata, (str, Path)) else metadata
        self.source = source
        self.frame_id = frame_id
        core = self._core
        self._pf = core.PacketFormat(self.info)
        self._batcher = core.FrameBatcher(self.info)
        self._frame = core.LidarFrame(self.info)
        self._window = tuple(self.info.format.column_window)
        self._lut = core.XYZLutFloat(self.info, use_extrinsics=False)
        h, w = self.info.h, self.info.w
        # destaggered pixel order, as flat indices into the staggered image (the SDK's destagger)
        self._order = core.destagger(self.info, np.arange(h * w, dtype=np.int64).reshape(h, w)).reshape(-1)
        self._rows = np.repeat(np.arange(h, dtype=np.float32), w)
        self._intensity = next((f for f in ("SIGNAL", "REFLECTIVITY") if f in self._pf.fields), None)
        self.stats = SourceStats()
        self.incomplete = 0
        """Frames dropped because packets were missing."""

    # ------------------------------------------------------------------ packets → frames

    def add_packet(self, packet: Any) -> list[Any]:
        """Batch one SDK ``LidarPacket``; the complete ``LidarFrame`` it finished, if any."""
        self.stats.packets += 1
        if not self._batcher.batch(packet, self._frame):
            return []
        done, self._frame = self._frame, self._core.LidarFrame(self.info)
        if done.complete(self._window):
            return [done]
        self.incomplete += 1
        self.stats.skip("incomplete frame")
        return []

    def feed_frames(self, payload: bytes, host_stamp_s: float) -> list[Any]:
        """Decode one datagram into the SDK's frames (IMU packets are ignored)."""
        pf = self._pf
        if len(payload) != pf.lidar_packet_size:
            if len(payload) != pf.imu_packet_size:
                self.stats.skip("wrong size")
            return []
        packet = self._core.LidarPacket(pf)
        packet.buf[:] = np.frombuffer(payload, np.uint8)
        packet.host_timestamp = round(host_stamp_s * 1e9)
        if packet.validate(self.info, pf) != self._core.PacketValidationFailure.NONE:
            self.stats.skip("other sensor")
            return []
        return self.add_packet(packet)

    def feed(self, payload: bytes, host_stamp_s: float) -> list[msgs.PointCloud]:
        """Decode one datagram; the rotations it completed (usually none)."""
        return [self.cloud(f) for f in self.feed_frames(payload, host_stamp_s)]

    def finish(self) -> list[Any]:
        """The end of the stream: the frame in progress if it is complete."""
        done, self._frame = self._frame, self._core.LidarFrame(self.info)
        return [done] if done.complete(self._window) else []

    def reset(self) -> None:
        """Forget the partial frame (a gap in the stream)."""
        self._batcher.reset()
        self._frame = self._core.LidarFrame(self.info)

    def restart(self) -> None:
        """A new stream: no partial frame, statistics from zero (the look-up tables are kept)."""
        self.reset()
        self.stats = SourceStats()
        self.incomplete = 0

    # ------------------------------------------------------------------ frames → clouds

    def raw(self, frame: Any) -> RawFrame:
        """The frame's staggered fields and column headers (copies)."""
        return RawFrame(
            frame_id=int(frame.frame_id),
            timestamp=np.array(frame.timestamp),
            status=np.array(frame.status),
            measurement_id=np.array(frame.measurement_id),
            fields={name: np.array(frame.field(name)) for name in frame.fields},
        )

    def cloud(self, frame: Any) -> msgs.PointCloud:
        """Destaggered points with a range, in the sensor frame; stamped at the first valid column."""
        h, w = self.info.h, self.info.w
        rng = np.asarray(frame.field("RANGE")).reshape(-1)
        keep = self._order[rng[self._order] > 0]
        ts = np.asarray(frame.timestamp, np.int64)
        valid = (np.asarray(frame.status) & 1).astype(bool) & (ts > 0)
        cols = np.flatnonzero(valid)
        first = int(cols[np.argmin(ts[cols])]) if len(cols) else 0
        t0 = int(ts[first]) if len(cols) else 0
        xyz = np.asarray(self._lut(frame), np.float32).reshape(-1, 3)
        data = np.empty((len(keep), len(LIDAR_FIELDS)), np.float32)
        data[:, :3] = xyz[keep]
        if self._intensity:
            data[:, 3] = np.asarray(frame.field(self._intensity)).reshape(-1)[keep]
        else:
            data[:, 3] = 0.0
        data[:, 4] = self._rows[keep]
        pixel_ts = np.broadcast_to(ts, (h, w)).reshape(-1)[keep]
        data[:, 5] = (pixel_ts - t0).astype(np.float32) * np.float32(1e-9)
        self.stats.rotation(len(keep))
        return msgs.PointCloud(
            stamp_ns=self._stamp(frame, t0, first), frame_id=self.frame_id, data=data, fields=LIDAR_FIELDS
        )

    def _stamp(self, frame: Any, t0: int, first_col: int) -> int:
        if t0 >= PLAUSIBLE_UNIX_NS:
            return t0
        host = np.asarray(frame.packet_timestamp)
        i = min(first_col // max(1, self._pf.columns_per_packet), len(host) - 1) if len(host) else -1
        return int(host[i]) if i >= 0 and host[i] > 0 else t0


class OusterPcap:
    """The frames of an Ouster pcap with its metadata JSON, decoded lazily; iterate again to replay.

    The SDK's pcap reader reassembles IP fragments (a 1500-byte-MTU capture has them). When the
    metadata is not the recording's (its packets have another size or sensor id), the pass ends
    in a FormatError naming both files."""

    def __init__(self, pcap: Path | str, metadata: Path | str, *, frame_id: str = "os_sensor") -> None:
        self.path = Path(pcap)
        self.metadata = Path(metadata)
        if not self.path.is_file():
            raise FormatError(f"{self.path}: no such pcap file")
        self.info = read_metadata(self.metadata)
        self.frame_id = frame_id
        self.stats = SourceStats()
        self._decoder: OusterDecoder | None = None

    def decoder(self) -> OusterDecoder:
        """The decoder of a new pass (built once: its look-up tables take longer than a frame)."""
        if self._decoder is None:
            self._decoder = OusterDecoder(self.info, source=self.path.name, frame_id=self.frame_id)
        else:
            self._decoder.restart()
        return self._decoder

    def frames(self, decoder: OusterDecoder | None = None) -> Iterator[Any]:
        """The SDK's complete frames, in order (one pass at a time)."""
        pcap = importlib.import_module("ouster.sdk.pcap")
        dec = decoder or self.decoder()
        self.stats = dec.stats
        try:
            source = pcap.PcapPacketSource(str(self.path), sensor_info=[self.info])
        except (RuntimeError, ValueError) as err:
            raise FormatError(f"{self.path}: cannot read as an Ouster pcap ({err})") from err
        lidar = _sdk().LidarPacket
        complete = 0
        try:
            for _, packet in source:
                if isinstance(packet, lidar):
                    for frame in dec.add_packet(packet):
                        complete += 1
                        yield frame
            for frame in dec.finish():
                complete += 1
                yield frame
        finally:
            dec.stats.skip("wrong size", int(source.size_error_count))
            dec.stats.skip("other sensor", int(source.id_error_count))
            source.close()
        if complete == 0:
            raise FormatError(self._mismatch(dec))

    def __iter__(self) -> Iterator[msgs.PointCloud]:
        dec = self.decoder()
        for frame in self.frames(dec):
            yield dec.cloud(frame)

    def raw(self) -> Iterator[RawFrame]:
        """The staggered fields of each complete frame (what Ouster's digests hash)."""
        dec = self.decoder()
        for frame in self.frames(dec):
            yield dec.raw(frame)

    def _mismatch(self, dec: OusterDecoder) -> str:
        """Why no frame came out, naming both files and what each says."""
        found = _udp_sizes(self.path)
        seen = ", ".join(f"{n}× {size} B to port {port}" for (port, size), n in found.most_common(4))
        if dec.stats.packets and dec.incomplete:
            why = f"its {dec.stats.packets} lidar packets never complete a frame"
        else:
            why = "none of its packets is a lidar packet of that sensor"
        return (
            f"{self.path.name}: does not match the metadata {self.metadata.name} ({describe(self.info)}): "
            f"{why}{f' (UDP payloads in the pcap: {seen})' if seen else ''}; "
            f"is {self.metadata.name} the metadata of this recording?"
        )


def _udp_sizes(path: Path, limit: int = 2000) -> Counter[tuple[int, int]]:
    """(destination port, payload size) → count over the first datagrams, to word a mismatch
    error; empty when the capture cannot be read here (dpkt comes with the velodyne extra)."""
    from fusion_stream.sources.velodyne import pcap_datagrams

    out: Counter[tuple[int, int]] = Counter()
    try:
        for i, d in enumerate(pcap_datagrams(path)):
            if i >= limit:
                break
            if d.port:
                out[(d.port, len(d.payload))] += 1
    except FusionStreamError:  # only words an error message: say what could be read
        return out
    return out


def raw_frames(pcap: Path | str, metadata: Path | str) -> list[RawFrame]:
    """Every complete frame of a pcap as staggered SDK fields (RANGE mm uint32, SIGNAL uint16 ...)."""
    return list(OusterPcap(pcap, metadata).raw())
