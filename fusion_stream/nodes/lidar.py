"""LiDAR node: one ``PointCloud`` per rotation, in the sensor frame (``frame_id`` = ``sensor``),
with ``ring`` and per-point ``time_offset`` (seconds after the stamp, which is the start of the
sweep) wherever the source knows them.

``source``:

* ``sim`` — ray-casts the simulated world (32 or 64 beams, 10 Hz);
* ``velodyne`` — VLP-16, VLP-32C, HDL-32E, HDL-64E: ``path`` a pcap to play, or ``port`` (2368) to
  receive live; ``model`` (``auto``) is checked against the packets;
* ``ouster`` — ``metadata`` (the sensor's JSON) with ``path`` a pcap, or ``port`` (7502) live;
* ``kitti`` — ``path`` a KITTI object folder (either layout), a folder of ``.bin``, or one ``.bin``;
* ``pcd`` — ``path`` a ``.pcd`` file or a folder of them.

Pcaps play at their recorded spacing (``loop``, ``stamps: now`` shifts the recorded times to
the node's clock, ``stamps: recorded`` keeps them); point-file folders play on the capture grid
(``rate_hz``, ``epoch_ns``) so a KITTI frame's sweep, image and labels share a stamp. A live
sensor that goes quiet turns ``/diagnostics`` to WARN naming the port while the node retries.
The sources themselves are in :mod:`fusion_stream.sources`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from fusion_stream.core import msgs
from fusion_stream.core.msgs import PointCloud
from fusion_stream.errors import FormatError, ParamError
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics
from fusion_stream.runtime.params import existing
from fusion_stream.runtime.runner import run_node
from fusion_stream.sim import lidar
from fusion_stream.sim.capture import SweepsAsCast, lidar_sweep
from fusion_stream.sim.sensors import FrameGrid, SimParams, check_sim, open_sensor, open_world
from fusion_stream.sources.ouster import OusterDecoder, OusterPcap, read_metadata
from fusion_stream.sources.pointfiles import (
    FolderPlayback,
    LiveLidar,
    PacketDecoder,
    RecordedPlayback,
    SourceStats,
    UdpReceiver,
    kitti_sweeps,
    pcd_files,
)
from fusion_stream.sources.velodyne import VelodyneDecoder, VelodynePcap, model_name

SOURCES = ("sim", "velodyne", "ouster", "kitti", "pcd")
POLL_S = 0.005
"""How often playback and live sources are looked at (a rotation is published within this)."""


@dataclass(frozen=True)
class Params(SimParams):
    sensor: str = "lidar_top"
    topic: str = "/lidar/top/points"
    beams: int = 32
    rate_hz: float = 10.0
    """sim, kitti, pcd: the capture grid (frames per second)."""
    path: str = ""
    """velodyne/ouster: a pcap to play; kitti: a folder or .bin; pcd: a .pcd or a folder of them."""
    port: int = 0
    """velodyne/ouster: receive live UDP packets on this port instead (2368 / 7502)."""
    model: str = "auto"
    """velodyne: VLP-16, VLP-32C, HDL-32E, HDL-64E or auto (from the packets)."""
    calibration: str = ""
    """velodyne: a calibration YAML (needed live for an HDL-64E; a pcap carries its own)."""
    metadata: str = ""
    """ouster: the sensor's metadata JSON (required)."""
    loop: bool = True
    """Files: start again after the last rotation."""
    stamps: Literal["now", "recorded"] = "now"
    """pcaps: stamp with the node's clock (recorded spacing kept) or the recorded times."""
    silence_s: float = 1.0
    """Live: seconds without a packet before /diagnostics warns and the socket is re-opened."""


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


def check(p: Params) -> None:
    """What can be judged before the node starts (``fusion-stream launch`` calls it; so does setup)."""
    if p.source not in SOURCES:
        raise ParamError("source", f"must be one of {', '.join(SOURCES)}, got {p.source!r}")
    if p.source == "sim":
        check_sim(p, p.sensor, "lidar")
        _sim_spec(p)
    elif p.source in ("velodyne", "ouster"):
        if bool(p.path) == bool(p.port):
            raise ParamError("path", f"source: {p.source} needs either path (a pcap to play) or port (live UDP)")
        if p.port and not 0 < p.port < 65536:
            raise ParamError("port", f"must be a UDP port 1..65535, got {p.port}")
        if p.path:
            existing("path", p.path, "a pcap file")
        if p.source == "velodyne":
            model_name(p.model)
            if p.calibration:
                existing("calibration", p.calibration, "a Velodyne calibration YAML")
        else:
            existing("metadata", p.metadata, "the sensor's metadata JSON")
    else:
        if p.stamps != "now":
            raise ParamError(
                "stamps", f"{p.source} files carry no capture time; they play on the capture grid (stamps: now)"
            )
        if p.rate_hz <= 0:
            raise ParamError("rate_hz", f"must be > 0, got {p.rate_hz}")
        existing("path", p.path, _FOLDER_WHAT[p.source])


_FOLDER_WHAT = {"kitti": "a KITTI folder or .bin", "pcd": "a .pcd or a folder of them"}


def setup(node: Node, p: Params) -> None:
    check(p)
    if p.source == "sim":
        _simulated(node, p)
    elif p.source in ("velodyne", "ouster"):
        if p.port:
            _live(node, p)
        else:
            _recording(node, p)
    else:
        _folder(node, p)


def _sim_spec(p: Params) -> lidar.LidarSpec:
    return lidar.LidarSpec.preset(p.beams, p.rate_hz)  # a ParamError names beams or rate_hz


def _simulated(node: Node, p: Params) -> None:
    world = open_world(p)
    sensor = open_sensor(p, p.sensor, "lidar")
    spec = _sim_spec(p)
    # Each sweep's points are written straight into a loan from the publisher's shared-memory
    # pool (a plain array without one), sized for the largest sweep: no copy to publish.
    pub = node.publisher(p.topic, PointCloud, nominal_hz=p.rate_hz, skipped=lambda: sweeps.skipped)
    sweeps = SweepsAsCast(world, sensor, spec, p.epoch_ns, out=pub.loan)
    # The first sweep imports the ray caster and builds the scene (~3 s): done once, thrown away,
    # before the grid starts. Sweeps are pure functions of their start.
    t0 = time.perf_counter()
    lidar_sweep(world, sensor, spec, p.epoch_ns + 86_400 * 10**9, p.epoch_ns)
    node.log.info("first sweep computed in %.2f s, before the capture grid starts", time.perf_counter() - t0)
    node.add_diagnostics(lambda: {"frames_skipped": sweeps.skipped})

    def tick() -> None:
        if (cloud := sweeps.poll(node.clock.now_ns())) is not None:
            pub.publish(cloud)

    # a tick as each sector's last column fires; the one at a rotation's end publishes it
    node.timer(spec.period_s / spec.sectors, tick, phase_ns=p.epoch_ns)


def _recording(node: Node, p: Params) -> None:
    path = existing("path", p.path, "a pcap file")
    recording: VelodynePcap | OusterPcap
    if p.source == "velodyne":
        calibration = existing("calibration", p.calibration, "a Velodyne calibration YAML") if p.calibration else None
        recording = VelodynePcap(path, p.model, calibration=calibration, frame_id=p.sensor)
    else:
        metadata = existing("metadata", p.metadata, "the sensor's metadata JSON")
        recording = OusterPcap(path, metadata, frame_id=p.sensor)
    playback = RecordedPlayback(
        lambda: recording, start_ns=node.clock.now_ns(), stamps=p.stamps, loop=p.loop, name=path.name
    )
    pub = node.publisher(p.topic, PointCloud)

    def tick() -> None:
        for cloud in playback.due(node.clock.now_ns()):
            pub.publish(cloud)
        stats: SourceStats = recording.stats
        if playback.error:
            node.set_status(msgs.Level.ERROR, playback.error)
        elif stats.skipped:
            node.set_status(msgs.Level.WARN, f"{path.name}: {stats.describe_skipped()}")
        elif playback.finished:
            node.set_status(msgs.Level.OK, f"played {path.name} ({playback.published} rotations)")

    node.timer(POLL_S, tick)
    node.add_diagnostics(lambda: {**recording.stats.values(), "loops": playback.loops, "published": playback.published})
    node.log.info("playing %s (%s, stamps: %s, loop: %s)", path, p.source, p.stamps, p.loop)


def _live(node: Node, p: Params) -> None:
    decoder: PacketDecoder
    if p.source == "velodyne":
        calibration = existing("calibration", p.calibration, "a Velodyne calibration YAML") if p.calibration else None
        decoder = VelodyneDecoder(p.model, source=f"UDP port {p.port}", calibration=calibration, frame_id=p.sensor)
    else:
        metadata = existing("metadata", p.metadata, "the sensor's metadata JSON")
        decoder = OusterDecoder(read_metadata(metadata), source=f"UDP port {p.port}", frame_id=p.sensor)
    live = LiveLidar(UdpReceiver(p.port, silence_s=p.silence_s), decoder)
    pub = node.publisher(p.topic, PointCloud)

    def tick() -> None:
        for cloud in live.poll():
            pub.publish(cloud)
        node.set_status(*live.health())

    node.timer(POLL_S, tick)
    node.add_diagnostics(
        lambda: {
            **decoder.stats.values(),
            "udp_port": p.port,
            "datagrams": live.receiver.received,
            "silent_s": round(live.receiver.silent_for(), 1),
            "socket_reopens": live.receiver.reopens,
        }
    )
    node.log.info("receiving %s packets on UDP port %d", p.source, p.port)


def _folder(node: Node, p: Params) -> None:
    path = existing("path", p.path, _FOLDER_WHAT[p.source])
    try:
        files = kitti_sweeps(path) if p.source == "kitti" else pcd_files(path)
    except FormatError as err:
        raise ParamError("path", str(err)) from err
    period = round(1e9 / p.rate_hz)
    folder = FolderPlayback(
        files, period_ns=period, epoch_ns=p.epoch_ns, loop=p.loop, start_ns=node.clock.now_ns(), frame_id=p.sensor
    )
    grid = FrameGrid(period, p.epoch_ns)
    pub = node.publisher(p.topic, PointCloud, nominal_hz=p.rate_hz, skipped=lambda: grid.skipped)

    def tick() -> None:
        k = grid.due(node.clock.now_ns(), ready_after_ns=period)  # a sweep is complete one period later
        if k is not None and (cloud := folder.at(grid.capture_ns(k))) is not None:
            pub.publish(cloud)

    node.timer(period / 1e9, tick, phase_ns=p.epoch_ns)
    node.add_diagnostics(lambda: {**folder.stats.values(), "frames": len(files), "frames_skipped": grid.skipped})
    node.log.info("playing %d %s files from %s at %g Hz", len(files), p.source, path, p.rate_hz)


if __name__ == "__main__":
    raise SystemExit(run_node("lidar", Params, setup))
