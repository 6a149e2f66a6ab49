"""Real LiDAR sources against real recordings: Velodyne pcaps (VLP-16, HDL-32E) checked against
velodyne-decoder's own reader, Ouster pcaps against Ouster's golden digests, KITTI sweeps and
nebula's reference PCDs; damaged and mismatched inputs; live UDP; and the node as a process."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from fusion_stream.core import msgs
from fusion_stream.core.kitti import read_velodyne
from fusion_stream.errors import FormatError
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber
from fusion_stream.sources.playback import frame_index
from fusion_stream.sources.pointfiles import (
    FolderPlayback,
    LiveLidar,
    RecordedPlayback,
    UdpReceiver,
    kitti_sweeps,
    pcd_files,
)

from .conftest import ROOT, Procs

DATA = ROOT.parent / "shared" / "data"
VELODYNE = DATA / "velodyne_pcap"
OUSTER = DATA / "ouster_pcap"
KITTI = DATA / "kitti"
NEBULA = DATA / "velodyne_rosbag2_nebula"

vd = pytest.importorskip("velodyne_decoder", reason="velodyne-decoder (extra 'velodyne') is not installed")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real sensor data not found at {path} (see shared/data/README.md)")
    return path


# SOURCE.md: velodyne-decoder 3.1.0, default Config, read_pcap
VELODYNE_CASES = {
    "velodyne_example.pcap": ("VLP-16", 16, [29027, 2603]),
    "hdl32_example.pcap": ("HDL-32E", 32, [44257, 44193, 44307, 44665, 44843, 29792]),
}


@pytest.mark.parametrize("name", sorted(VELODYNE_CASES))
def test_velodyne_pcap_rotations_match_the_reference_decoder(name: str) -> None:
    from fusion_stream.sources.velodyne import VelodynePcap

    path = _need(VELODYNE / name)
    model, rings, counts = VELODYNE_CASES[name]
    source = VelodynePcap(path, frame_id="velodyne")
    rotations = source.rotations()
    reference = list(vd.read_pcap(str(path)))
    assert [len(r) for r in rotations] == [len(r.points) for r in reference] == counts
    assert source.detected == model and source.stats.skipped_total == 0
    for cloud, (stamp, points) in zip(rotations, reference, strict=True):
        assert cloud.fields == ("x", "y", "z", "intensity", "ring", "time_offset")
        np.testing.assert_array_equal(cloud.xyz, points[:, :3])
        np.testing.assert_array_equal(cloud.field("intensity"), points[:, 3])
        np.testing.assert_array_equal(cloud.field("ring"), points[:, 6])
        # stamped at the first point; offsets are the library's point times from there
        first = float(points[:, 4].min())
        assert abs(cloud.stamp_ns - (stamp.device + first) * 1e9) < 2_000  # float seconds → ns
        offsets = cloud.field("time_offset")
        assert offsets.min() == 0.0 and offsets.max() < 0.11
        np.testing.assert_allclose(offsets, points[:, 4] - first, atol=1e-6)
    assert set(np.unique(rotations[0].field("ring")).astype(int)) == set(range(rings))
    stamps = [c.stamp_ns for c in rotations]
    assert stamps == sorted(stamps)


def test_a_wrong_velodyne_model_is_a_format_error_naming_the_file_and_both_models() -> None:
    from fusion_stream.sources.velodyne import VelodynePcap

    path = _need(VELODYNE / "velodyne_example.pcap")
    with pytest.raises(
        FormatError, match=r"velodyne_example\.pcap: packets are from a VLP-16 \(factory byte 0x22\)"
    ) as e:
        VelodynePcap(path, "HDL-32E").rotations()
    assert "configured for HDL-32E" in str(e.value) and "model: VLP-16 or auto" in str(e.value)
    with pytest.raises(FormatError, match=r"hdl32_example\.pcap: packets are from an HDL-32E .* VLP-32C"):
        VelodynePcap(_need(VELODYNE / "hdl32_example.pcap"), "vlp32c").rotations()
    assert len(VelodynePcap(path, "vlp16").rotations()) == 2  # spelling is forgiving


def _records(raw: bytes) -> list[tuple[int, int]]:
    """(offset of the record's data, its length) of each record of a classic pcap."""
    out, offset = [], 24
    while offset + 16 <= len(raw):
        caplen = struct.unpack_from("<I", raw, offset + 8)[0]
        out.append((offset + 16, caplen))
        offset += 16 + caplen
    return out


def test_a_truncated_or_garbled_pcap_decodes_what_is_whole_and_reports_the_damage(tmp_path: Path) -> None:
    from fusion_stream.sources.velodyne import VelodynePcap

    raw = _need(VELODYNE / "hdl32_example.pcap").read_bytes()
    records = _records(raw)
    start, length = records[700]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[: start + length // 2])  # the capture stops in the middle of a packet
    source = VelodynePcap(cut)
    rotations = source.rotations()
    reference = [len(r.points) for r in vd.read_pcap(str(cut))]  # the library drops short packets too
    assert [len(r) for r in rotations] == reference and len(rotations) >= 4
    assert dict(source.stats.skipped) == {"truncated": 1}
    assert "1 packets skipped (1 truncated)" in source.stats.describe_skipped()

    for inside in (30, 40):  # the file ends inside the IP header, then inside the UDP header
        cut.write_bytes(raw[: start + inside])
        source = VelodynePcap(cut)
        assert [len(r) for r in source.rotations()] == reference
        assert dict(source.stats.skipped) == {"truncated": 1}

    garbled = bytearray(raw)
    start, _ = records[100]
    garbled[start + 42 : start + 42 + 300] = bytes(range(256)) + bytes(44)  # over the first blocks' headers
    bad = tmp_path / "garbled.pcap"
    bad.write_bytes(bytes(garbled))
    source = VelodynePcap(bad)
    assert len(source.rotations()) == 6
    assert dict(source.stats.skipped) == {"garbled": 1}


def _md5(a: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()


# SOURCE.md: pixels with RANGE > 0 in the decoded frame
OUSTER_CASES = {"OS-1-32-G_v2.1.1_1024x10": (27310, 32, "SIGNAL"), "OS-0-128-U1_v2.3.0_1024x10": (97299, 128, None)}


@pytest.mark.parametrize("name", sorted(OUSTER_CASES))
def test_ouster_frames_match_the_upstream_golden_digests(name: str) -> None:
    pytest.importorskip("ouster.sdk", reason="ouster-sdk (extra 'ouster') is not installed")
    from fusion_stream.sources.ouster import OusterPcap, raw_frames

    pcap, meta = _need(OUSTER / f"{name}.pcap"), _need(OUSTER / f"{name}.json")
    expected = json.loads((OUSTER / f"{name}_digest.json").read_text())["scans"][0]
    (frame,) = raw_frames(pcap, meta)
    got = {
        "FRAME_ID": str(frame.frame_id),
        "TIMESTAMP": _md5(frame.timestamp.astype(np.uint64)),
        "STATUS": _md5(frame.status.astype(np.uint64)),
        "MEASUREMENT_ID": _md5(frame.measurement_id.astype(np.uint16)),
        **{k: _md5(v) for k, v in frame.fields.items()},
    }
    checked = [k for k in expected if k != "ENCODER_COUNT"]  # upstream skips it too (deprecated)
    assert {"FRAME_ID", "RANGE", "REFLECTIVITY", "NEAR_IR"} <= set(checked)
    assert {k: got.get(k) for k in checked} == {k: expected[k] for k in checked}
    assert frame.fields["RANGE"].dtype == np.uint32

    pixels, rows, has_signal = OUSTER_CASES[name]
    assert int((frame.fields["RANGE"] > 0).sum()) == pixels
    assert ("SIGNAL" in frame.fields) == bool(has_signal)
    (cloud,) = list(OusterPcap(pcap, meta, frame_id="os_sensor"))
    assert len(cloud) == pixels and cloud.fields == ("x", "y", "z", "intensity", "ring", "time_offset")
    assert set(np.unique(cloud.field("ring")).astype(int)) <= set(range(rows))
    assert cloud.field("time_offset").min() == 0.0 and cloud.field("time_offset").max() < 0.1
    # the farthest point is as far as the largest range (beam origin offsets are a few cm)
    far = np.linalg.norm(cloud.xyz, axis=1).max()
    assert abs(far - frame.fields["RANGE"].max() / 1000) < 0.05
    # intensity is SIGNAL, or REFLECTIVITY for the low-data-rate profile, in destaggered order
    source = frame.fields["SIGNAL"] if has_signal else frame.fields["REFLECTIVITY"]
    assert sorted(cloud.field("intensity").tolist()) == sorted(source[frame.fields["RANGE"] > 0].astype(float))


def test_ouster_metadata_of_another_sensor_is_a_clear_error_naming_both_files() -> None:
    pytest.importorskip("ouster.sdk", reason="ouster-sdk (extra 'ouster') is not installed")
    from fusion_stream.sources.ouster import OusterPcap

    pcap = _need(OUSTER / "OS-1-32-G_v2.1.1_1024x10.pcap")
    wrong = _need(OUSTER / "OS-0-128-U1_v2.3.0_1024x10.json")
    with pytest.raises(FormatError) as e:
        list(OusterPcap(pcap, wrong))
    text = str(e.value)
    assert "OS-1-32-G_v2.1.1_1024x10.pcap" in text and "OS-0-128-U1_v2.3.0_1024x10.json" in text
    assert "8448-byte packets" in text and "6464 B" in text and "metadata of this recording" in text


def test_kitti_sweeps_in_any_layout_play_on_the_capture_grid(tmp_path: Path) -> None:
    kitti = _need(KITTI)
    counts = [115384, 120268, 126891]  # SOURCE.md: file size / 16
    files = kitti_sweeps(kitti)  # one folder per frame
    assert len(files) == 3
    flat = tmp_path / "bins"
    flat.mkdir()
    for i, path in enumerate(files.paths):
        (flat / f"{i:06d}.bin").symlink_to(path)
    for source in (files, kitti_sweeps(flat)):
        clouds = [source.cloud(i, stamp_ns=0, frame_id="velodyne") for i in range(len(source))]
        assert [len(c) for c in clouds] == counts
    np.testing.assert_array_equal(clouds[1].data, read_velodyne(files.paths[1]))
    assert len(kitti_sweeps(flat / "000002.bin")) == 1

    period = 100_000_000
    folder = FolderPlayback(files, period_ns=period, epoch_ns=0, loop=True, start_ns=0, frame_id="velodyne")
    for k in (17, 18, 19, 20):
        at = 1_700_000_000_000_000_000 + k * period
        cloud = folder.at(at)
        assert cloud is not None and cloud.stamp_ns == at and cloud.frame_id == "velodyne"
        assert len(cloud) == counts[frame_index(at, 0, period, 3) or 0]
    once = FolderPlayback(files, period_ns=period, epoch_ns=0, loop=False, start_ns=10 * period + 1, frame_id="v")
    assert [len(c) if (c := once.at(k * period)) else None for k in range(10, 16)] == [None, *counts, None, None]
    with pytest.raises(FormatError, match="no KITTI sweeps"):
        kitti_sweeps(tmp_path)


def test_pcd_files_keep_intensity_ring_and_point_times() -> None:
    vlp16 = pcd_files(_need(NEBULA / "vlp16" / "1673400472138016708.pcd"))
    cloud = vlp16.cloud(0, stamp_ns=5, frame_id="velodyne")
    assert len(cloud) == 14831  # SOURCE.md
    assert cloud.fields == ("x", "y", "z", "intensity", "ring", "time_offset")
    assert set(np.unique(cloud.field("ring")).astype(int)) <= set(range(16))
    assert 0.0 == cloud.field("time_offset").min() < cloud.field("time_offset").max() < 0.2  # ns → s
    assert cloud.field("intensity").max() > 1  # U1 values, not zeros
    vlp32 = pcd_files(_need(NEBULA / "vlp32"))  # a folder: its one .pcd, x y z only
    xyz_only = vlp32.cloud(0, stamp_ns=5, frame_id="velodyne_front")
    assert len(xyz_only) == 26216 and xyz_only.fields == ("x", "y", "z", "intensity")
    assert not xyz_only.field("intensity").any()


def _cloud(stamp_ns: int, duration_s: float = 0.09) -> msgs.PointCloud:
    return msgs.PointCloud.from_fields(  # type: ignore[return-value]
        stamp_ns=stamp_ns, frame_id="l", x=[0, 1], y=[0, 1], z=[0, 1], intensity=[0, 0], time_offset=[0, duration_s]
    )


def test_recorded_playback_keeps_the_recorded_spacing_and_loops_with_increasing_stamps() -> None:
    rec = [_cloud(5_000_000_000 + i * 100_000_000) for i in range(3)]
    now = 1_000_000_000_000
    play = RecordedPlayback(lambda: rec, start_ns=now, stamps="now", loop=True)
    assert play.due(now + 89_000_000) == []  # due once its last point is measured (90 ms)
    got = play.due(now + 91_000_000)
    assert [c.stamp_ns for c in got] == [now]
    got = play.due(now + 291_000_000)
    assert [c.stamp_ns for c in got] == [now + 100_000_000, now + 200_000_000]
    got = play.due(now + 391_000_000)  # looped: one period after the last rotation
    assert [c.stamp_ns for c in got] == [now + 300_000_000] and play.loops == 1
    recorded = RecordedPlayback(lambda: rec, start_ns=now, stamps="recorded", loop=False)
    assert [c.stamp_ns for c in recorded.due(now + 10**9)] == [c.stamp_ns for c in rec]
    assert recorded.finished


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_live_velodyne_over_udp_and_a_sensor_that_goes_quiet() -> None:
    from fusion_stream.sources.velodyne import VelodyneDecoder, pcap_datagrams

    path = _need(VELODYNE / "velodyne_example.pcap")
    packets = [d.payload for d in pcap_datagrams(path)]
    port = _free_udp_port()
    clock = [0.0]
    receiver = UdpReceiver(port, "127.0.0.1", silence_s=1.0, clock=lambda: clock[0])
    live = LiveLidar(receiver, VelodyneDecoder("VLP-16", source=f"UDP port {port}"))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for p in [*packets, b"\x00" * 100]:  # and one runt
                tx.sendto(p, ("127.0.0.1", port))
        time.sleep(0.2)
        clouds = live.poll()
        assert [len(c) for c in clouds] == [29027]  # the second rotation is still open
        assert live.decoder.stats.skipped == {"truncated": 1}
        assert live.health() == (msgs.Level.OK, "1 packets skipped (1 truncated)")
        clock[0] = 1.5
        assert live.poll() == []
        level, message = live.health()
        assert level == msgs.Level.WARN and f"no packets on UDP port {port} for 1.5 s" in message
        clock[0] = 3.0  # backoff: the socket is re-opened, still bound to the port
        live.poll()
        assert receiver.reopens == 1 and "re-opened 1 times" in live.health()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(packets[0], ("127.0.0.1", port))
        time.sleep(0.1)
        live.poll()
        assert live.health()[0] == msgs.Level.OK and not receiver.silent
    finally:
        live.close()
    wrong = LiveLidar(UdpReceiver(_free_udp_port(), "127.0.0.1"), VelodyneDecoder("HDL-32E", source="UDP port 1"))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for p in packets[:5]:
                tx.sendto(p, ("127.0.0.1", wrong.receiver.port))
        time.sleep(0.1)
        assert wrong.poll() == []
        level, message = wrong.health()
        assert level == msgs.Level.ERROR and "packets are from a VLP-16" in message and "HDL-32E" in message
    finally:
        wrong.close()


def test_the_lidar_node_plays_a_velodyne_pcap_over_zeromq(procs: Procs, registry: Registry) -> None:
    path = _need(VELODYNE / "velodyne_example.pcap")
    topic = "/lidar/top/points"
    node = procs.python(
        "-m", "fusion_stream.nodes.lidar",
        "-p", "source:=velodyne", "-p", f"path:={path}", "-p", "sensor:=velodyne",
    )
    clouds: list[msgs.PointCloud] = []
    diagnostics: list[msgs.Diagnostics] = []
    with Subscriber([topic, "/diagnostics"], registry=registry, timeout=30.0) as sub:
        sub.wait_for_publishers(30.0)
        end = time.monotonic() + 10.0
        while time.monotonic() < end and (len(clouds) < 4 or not diagnostics):
            m = sub.recv(timeout=1.0)
            if isinstance(m, msgs.PointCloud):
                clouds.append(m)
            elif isinstance(m, msgs.Diagnostics) and m.node == "lidar":
                diagnostics.append(m)
    node.send_signal(signal.SIGTERM)
    assert node.wait(timeout=10) == 0, node.communicate()[1][-2000:]
    assert len(clouds) >= 4, node.communicate()[1][-2000:]
    assert {len(c) for c in clouds} <= {29027, 2603}
    for c in clouds:
        assert c.frame_id == "velodyne" and c.fields == ("x", "y", "z", "intensity", "ring", "time_offset")
        assert set(np.unique(c.field("ring")).astype(int)) == set(range(16))
        assert c.field("time_offset").min() == 0.0
    stamps = [c.stamp_ns for c in clouds]
    assert stamps == sorted(set(stamps)) and abs(stamps[-1] - time.time_ns()) < 15e9  # stamps: now
    assert diagnostics[-1].values["rotations"] >= 1 and diagnostics[-1].values["packets_skipped"] == 0


def test_the_lidar_node_plays_ouster_and_pcd_recordings_over_zeromq(procs: Procs, registry: Registry) -> None:
    """The other file sources as node processes, side by side on their own topics."""
    pcap, meta = _need(OUSTER / "OS-1-32-G_v2.1.1_1024x10.pcap"), _need(OUSTER / "OS-1-32-G_v2.1.1_1024x10.json")
    pcd = _need(next(NEBULA.glob("vlp16/*.pcd")))
    procs.python(
        "-m", "fusion_stream.nodes.lidar",
        "--name", "os1", "-p", "source:=ouster", "-p", f"path:={pcap}", "-p", f"metadata:={meta}",
        "-p", "sensor:=os1", "-p", "topic:=/lidar/os1/points",
    )  # fmt: skip
    procs.python(
        "-m", "fusion_stream.nodes.lidar",
        "--name", "pcd", "-p", "source:=pcd", "-p", f"path:={pcd}", "-p", "sensor:=vlp16",
        "-p", "topic:=/lidar/pcd/points", "-p", "rate_hz:=5",
    )  # fmt: skip
    got: dict[str, list[msgs.PointCloud]] = {"/lidar/os1/points": [], "/lidar/pcd/points": []}
    with Subscriber(list(got), registry=registry, timeout=30.0) as sub:
        sub.wait_for_publishers(30.0)
        end = time.monotonic() + 10.0
        while time.monotonic() < end and min(len(v) for v in got.values()) < 2:
            env = sub.recv_envelope(timeout=1.0)
            if env is not None and isinstance(env.message, msgs.PointCloud):
                got[env.topic].append(env.message)
    assert all(len(v) >= 2 for v in got.values()), {k: len(v) for k, v in got.items()}
    assert {len(c) for c in got["/lidar/os1/points"]} == {27310} and got["/lidar/os1/points"][0].frame_id == "os1"
    assert {len(c) for c in got["/lidar/pcd/points"]} == {14831}
