"""Velodyne VLP-16, VLP-32C, HDL-32E and HDL-64E: pcap recordings and live UDP packets → one
:class:`~fusion_stream.core.msgs.PointCloud` per rotation.

The packet layouts, calibration tables and the frame cut of each model are maintained in
velodyne-decoder (extra ``velodyne``); this module adds what a long-running pipeline needs around
it. Packets are checked before the decoder sees them, so a truncated or garbled one is counted
and skipped instead of ending a playback. The model the packets come from (the factory byte, or
the varying status bytes of an HDL-64E) is checked against the configured one, so a wrong
``model`` is a clear error naming the file. Each rotation becomes a cloud with the fields of
:data:`~fusion_stream.sources.pointfiles.LIDAR_FIELDS`, stamped at its first point.

:class:`VelodyneDecoder` is pure (datagram bytes in, rotations out); :class:`VelodynePcap` feeds it
a file, :class:`~fusion_stream.sources.pointfiles.UdpReceiver` a socket.
"""

from __future__ import annotations

import importlib
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from fusion_stream.core import msgs
from fusion_stream.errors import FormatError, FusionStreamError, ParamError
from fusion_stream.sources.pointfiles import SourceStats

PACKET_SIZE: Final = 1206
"""UDP payload of a data packet (12 firing blocks, timestamp, factory bytes)."""
DATA_PORT: Final = 2368
"""Default destination port of data packets (position packets go to 8308 and are ignored)."""
PROBE_PACKETS: Final = 5
"""Packets looked at before the model is decided (an HDL-64E is told by its varying status bytes)."""

Clock = Literal["device", "host"]

FACTORY_MODELS: Final = {
    0x21: "HDL-32E",
    0x22: "VLP-16",
    0x24: "VLP-16 Hi-Res",
    0x28: "VLP-32C",
    0x31: "Velarray",
    0xA1: "VLS-128",
}
"""Model byte (the last of a data packet) → model, for detection and error messages."""

_SUPPORTED: Final = {  # our name -> (velodyne_decoder.Model member, factory byte or None for HDL-64E)
    "VLP-16": ("VLP16", 0x22),
    "VLP-32C": ("VLP32C", 0x28),
    "HDL-32E": ("HDL32E", 0x21),
    "HDL-64E": ("HDL64E_S3", None),
    "HDL-64E-S1": ("HDL64E_S1", None),
    "HDL-64E-S2": ("HDL64E_S2", None),
    "HDL-64E-S3": ("HDL64E_S3", None),
}
MODELS: Final = ("auto", *_SUPPORTED)
_BLOCK_FLAGS: Final = frozenset({0xEEFF, 0xDDFF, 0xCCFF, 0xBBFF})
_PACKET: Final = struct.Struct("<" + "HH96x" * 12 + "IBB")


def _library() -> Any:
    """velodyne_decoder, or a clear error naming the extra to install."""
    try:
        return importlib.import_module("velodyne_decoder")
    except ImportError as err:
        raise FusionStreamError(
            f"Velodyne sources need velodyne-decoder ({err}): pip install 'fusion-stream[velodyne]'"
        ) from err


def _dpkt() -> Any:
    try:
        return importlib.import_module("dpkt")
    except ImportError as err:
        raise FusionStreamError(f"reading pcaps needs dpkt ({err}): pip install 'fusion-stream[velodyne]'") from err


def model_name(model: str) -> str:
    """The canonical name of a configured model (``vlp16`` → ``VLP-16``); ParamError if unknown."""
    key = re.sub(r"[^A-Z0-9]", "", model.upper())
    for name in MODELS:
        if re.sub(r"[^A-Z0-9]", "", name.upper()) == key:
            return name
    raise ParamError("model", f"unknown Velodyne model {model!r}; expected one of {list(MODELS)}")


def packet_problem(data: bytes, factory: int | None = None) -> str | None:
    """Why a datagram is not a whole data packet (of the model with byte ``factory``), or None."""
    if len(data) != PACKET_SIZE:
        return "truncated" if len(data) < PACKET_SIZE else "wrong size"
    fields = _PACKET.unpack(data)
    for i in range(0, 24, 2):
        if fields[i] not in _BLOCK_FLAGS or fields[i + 1] >= 36000:
            return "garbled"
    if fields[24] >= 3_600_000_000:  # microseconds past the hour
        return "garbled"
    if factory is not None and fields[26] != factory:
        return "other model"
    return None


def _a(model: str) -> str:
    """``"a VLP-16"``, ``"an HDL-32E"``."""
    return f"an {model}" if model[:1] in "AEHIOU" else f"a {model}"


def _describe(factories: list[int]) -> tuple[str, str]:
    """(model, evidence) of the probed packets' model bytes."""
    if len(set(factories)) > 1:
        return "HDL-64E", "status bytes vary from packet to packet"
    byte = factories[0]
    return FACTORY_MODELS.get(byte, "unknown Velodyne model"), f"factory byte 0x{byte:02x}"


class VelodyneDecoder:
    """Data-packet payloads in, one PointCloud per rotation out (the library's frame cut).

    ``model`` is ``"auto"`` or one of :data:`MODELS`; packets of another model raise a
    :class:`FormatError` naming ``source``. ``calibration`` (a velodyne_decoder ``Calibration``
    or a YAML path) is needed for an HDL-64E only. ``clock`` picks the stamp: ``"device"`` (the
    sensor's time, placed in the host's hour by the library) or ``"host"`` (receive/capture)."""

    def __init__(
        self,
        model: str = "auto",
        *,
        source: str = "UDP",
        calibration: Any = None,
        min_range: float = 0.1,
        max_range: float = 200.0,
        frame_id: str = "velodyne",
        clock: Clock = "device",
    ) -> None:
        self._vd = _library()
        self.configured = model_name(model)
        self.source = source
        if isinstance(calibration, (str, Path)):
            calibration = read_calibration(calibration)
        self._calibration = calibration
        self._ranges = (min_range, max_range)
        self.frame_id = frame_id
        if clock not in ("device", "host"):
            raise ParamError("clock", f"must be 'device' or 'host', got {clock!r}")
        self._clock = clock
        self.model: str | None = None
        """The model the packets come from, once decided."""
        self.stats = SourceStats()
        self._factory: int | None = None
        self._probe: list[tuple[float, bytes]] = []
        self._decoder: Any = None

    def feed(self, payload: bytes, host_stamp_s: float) -> list[msgs.PointCloud]:
        """Decode one datagram; the rotations it completed (usually none)."""
        problem = packet_problem(payload, self._factory)
        if problem:
            self.stats.skip(problem)
            return []
        if self._decoder is None:
            self._probe.append((host_stamp_s, payload))
            if len(self._probe) < PROBE_PACKETS:
                return []
            return self._start()
        return self._decode(host_stamp_s, payload)

    def finish(self) -> list[msgs.PointCloud]:
        """The end of the stream: the rotation in progress (the library's last, partial frame)."""
        out = self._start() if self._decoder is None and self._probe else []
        if self._decoder is not None:
            result = self._decoder.finish()
            if result is not None:
                out.append(self._cloud(*result))
        return out

    def reset(self) -> None:
        """Forget the partial rotation (a gap in the stream); the model stays decided."""
        if self._decoder is not None:
            self._decoder = self._vd.StreamDecoder(self._config())
        self._probe.clear()

    def _start(self) -> list[msgs.PointCloud]:
        """Decide the model from the probed packets, start the library's decoder, decode them."""
        factories = [p[-1] for _, p in self._probe]
        detected, evidence = _describe(factories)
        wanted = self.configured
        if detected not in _SUPPORTED:
            self._probe.clear()
            raise FormatError(
                f"{self.source}: packets are from {_a(detected)} ({evidence}); this source decodes "
                f"{', '.join(m for m in _SUPPORTED if not m.startswith('HDL-64E-'))}"
            )
        if wanted != "auto" and not wanted.startswith(detected):
            self._probe.clear()
            raise FormatError(
                f"{self.source}: packets are from {_a(detected)} ({evidence}) but the node is configured for "
                f"{wanted}; set model: {detected} or auto"
            )
        name = wanted if wanted != "auto" else detected
        if name.startswith("HDL-64E") and self._calibration is None:
            self._probe.clear()
            raise FormatError(
                f"{self.source}: packets are from an HDL-64E, which needs its calibration: set calibration: "
                "FILE.yml (`extract-hdl64e-calibration capture.pcap` writes one from a recording's status data)"
            )
        self.model = name
        self._factory = _SUPPORTED[name][1]
        self._decoder = self._vd.StreamDecoder(self._config())
        pending, self._probe = self._probe, []
        out: list[msgs.PointCloud] = []
        for stamp, payload in pending:
            out.extend(self._decode(stamp, payload))
        return out

    def _config(self) -> Any:
        assert self.model is not None
        member = getattr(self._vd.Model, _SUPPORTED[self.model][0])
        return self._vd.Config(
            model=member, calibration=self._calibration, min_range=self._ranges[0], max_range=self._ranges[1]
        )

    def _decode(self, stamp: float, payload: bytes) -> list[msgs.PointCloud]:
        try:
            result = self._decoder.decode(stamp, payload)
        except RuntimeError:  # the library refused it (e.g. another model's byte): skip, keep going
            self.stats.skip("rejected")
            return []
        self.stats.packets += 1
        return [] if result is None else [self._cloud(*result)]

    def _cloud(self, stamp: Any, points: np.ndarray) -> msgs.PointCloud:
        """The library's rotation (x y z intensity time column ring return_type; time in s
        relative to ``stamp``) → our fields, stamped at the first point."""
        t = points[:, 4]
        first = float(t.min()) if len(t) else 0.0
        base = stamp.device if self._clock == "device" else stamp.host
        data = np.empty((len(points), 6), np.float32)
        data[:, :4] = points[:, :4]
        data[:, 4] = points[:, 6]
        data[:, 5] = t - np.float32(first)
        self.stats.rotation(len(points))
        return msgs.PointCloud(
            stamp_ns=round((float(base) + first) * 1e9),
            frame_id=self.frame_id,
            data=data,
            fields=("x", "y", "z", "intensity", "ring", "time_offset"),
        )


def read_calibration(path: str | Path) -> Any:
    """A velodyne-decoder calibration YAML (as written by ``extract-hdl64e-calibration``)."""
    vd = _library()
    p = Path(path)
    if not p.is_file():
        raise ParamError("calibration", f"{p}: no such file")
    try:
        return vd.Calibration.read(str(p))
    except (RuntimeError, ValueError) as err:
        raise FormatError(f"{p}: not a velodyne-decoder calibration ({err})") from err


# --------------------------------------------------------------------------- pcap files


@dataclass(frozen=True)
class Datagram:
    """One UDP datagram of a capture; ``damage`` says why it is unusable (None: whole)."""

    stamp_s: float
    port: int
    payload: bytes
    damage: str | None = None


def pcap_datagrams(path: Path) -> Iterator[Datagram]:
    """The UDP datagrams of a pcap/pcapng capture (Ethernet, VLAN, Linux cooked, loopback, raw IP).

    A record cut short (snap length, or a file truncated mid-packet) comes out with ``damage``
    ``"truncated"`` and whatever payload survived; other traffic is left out."""
    dpkt = _dpkt()
    try:
        f = path.open("rb")
    except OSError as err:
        raise FormatError(f"{path}: cannot read ({err.strerror or err})") from err
    with f:
        try:
            reader = dpkt.pcap.UniversalReader(f)
        except (ValueError, dpkt.dpkt.UnpackError) as err:
            raise FormatError(f"{path}: not a pcap or pcapng capture ({err})") from err
        link = reader.datalink()
        records = iter(reader)
        while True:
            try:
                stamp, buf = next(records)
            except StopIteration:
                return
            except (dpkt.dpkt.UnpackError, struct.error, ValueError):  # the file ends inside a record header
                yield Datagram(0.0, 0, b"", "truncated")
                return
            ip = _ip_layer(dpkt, link, buf)
            if ip is None:
                continue
            if isinstance(ip, str):
                yield Datagram(float(stamp), 0, b"", ip)
                continue
            udp = ip.data
            if not isinstance(udp, dpkt.udp.UDP):
                if ip.p == dpkt.ip.IP_PROTO_UDP and not (ip.mf or ip.offset):  # a UDP header cut short
                    yield Datagram(float(stamp), 0, b"", "truncated")
                continue
            payload = bytes(udp.data)
            damage = "truncated" if len(payload) < udp.ulen - 8 else None
            yield Datagram(float(stamp), int(udp.dport), payload, damage)


def _ip_layer(dpkt: Any, link: int, buf: bytes) -> Any:
    """The IPv4 packet of a link-layer frame, ``"truncated"`` if its headers are cut, or None."""
    try:
        if link == 1:  # Ethernet (dpkt strips VLAN tags)
            frame = dpkt.ethernet.Ethernet(buf)
            if frame.type != dpkt.ethernet.ETH_TYPE_IP:
                return None
            ip = frame.data
        elif link == 113:  # Linux cooked capture
            frame = dpkt.sll.SLL(buf)
            if frame.ethtype != dpkt.ethernet.ETH_TYPE_IP:
                return None
            ip = frame.data
        elif link in (0, 108):  # BSD loopback
            frame = dpkt.loopback.Loopback(buf)
            ip = frame.data
        elif link in (12, 101, 228):  # raw IPv4
            ip = dpkt.ip.IP(buf)
        else:
            return None
    except (dpkt.dpkt.UnpackError, struct.error):
        return "truncated"
    if isinstance(ip, (bytes, bytearray)):  # dpkt could not parse the IP header: cut short
        return "truncated"
    return ip if isinstance(ip, dpkt.ip.IP) else None


def _is_data(d: Datagram) -> bool:
    """A Velodyne data packet: to the data port, or of the data packet's size on any port."""
    return d.port == DATA_PORT or len(d.payload) == PACKET_SIZE or d.damage is not None


class VelodynePcap:
    """The rotations of a Velodyne pcap, decoded lazily; iterate again to replay.

    Damaged packets are skipped and counted in :attr:`stats` (of the latest pass). An HDL-64E
    capture carries its own calibration in its status bytes; it is read from there unless one
    is given."""

    def __init__(
        self,
        path: Path | str,
        model: str = "auto",
        *,
        calibration: Any = None,
        min_range: float = 0.1,
        max_range: float = 200.0,
        frame_id: str = "velodyne",
        clock: Clock = "device",
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FormatError(f"{self.path}: no such pcap file")
        self.model = model_name(model)
        self._options: dict[str, Any] = {
            "calibration": calibration,
            "min_range": min_range,
            "max_range": max_range,
            "frame_id": frame_id,
            "clock": clock,
        }
        self.stats = SourceStats()
        self.detected: str | None = None

    def _hdl64e(self) -> tuple[str, Any]:
        """(model, calibration) for this file: read from an HDL-64E's status bytes when needed."""
        model, calibration = self.model, self._options["calibration"]
        if calibration is not None or not (model == "auto" or model.startswith("HDL-64E")):
            return model, calibration
        vd = _library()
        try:
            found, calib = vd.hdl64e.detect_hdl64e(str(self.path))
        except ValueError as err:
            raise FormatError(
                f"{self.path}: HDL-64E packets, but their calibration could not be read from the status "
                f"data ({err}); set calibration: FILE.yml"
            ) from err
        if found is None:
            return model, None
        name = "HDL-64E-S2" if found == vd.Model.HDL64E_S2 else "HDL-64E-S3"
        return (name if model in ("auto", "HDL-64E") else model), calib

    def __iter__(self) -> Iterator[msgs.PointCloud]:
        model, calibration = self._hdl64e()
        options = {**self._options, "calibration": calibration}
        decoder = VelodyneDecoder(model, source=self.path.name, **options)
        self.stats = decoder.stats
        for d in pcap_datagrams(self.path):
            if not _is_data(d):
                continue
            if d.damage:
                decoder.stats.skip(d.damage)
                continue
            yield from decoder.feed(d.payload, d.stamp_s)
        yield from decoder.finish()
        self.detected = decoder.model
        if decoder.stats.packets == 0:
            skipped = decoder.stats.describe_skipped()
            raise FormatError(
                f"{self.path}: no whole Velodyne data packet ({PACKET_SIZE}-byte UDP payloads, port {DATA_PORT})"
                + (f"; {skipped}" if skipped else "")
            )

    def rotations(self) -> list[msgs.PointCloud]:
        """Every rotation, decoded now."""
        return list(self)
