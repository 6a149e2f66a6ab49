"""Bags: conversion to ROS 2 types, MCAP written and read back (by us, `mcap`'s own ROS 2 decoder
and `rosbags`), record/replay between real processes, crash recovery, and bad input."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from fusion_stream.bag import convert
from fusion_stream.bag.mapping import StreamStats, load_map, messages
from fusion_stream.bag.reader import Bag
from fusion_stream.bag.recover import recover
from fusion_stream.bag.writer import BagWriter
from fusion_stream.core import msgs
from fusion_stream.errors import FileKeyError, FormatError
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber
from fusion_stream.sources import testpattern

from .conftest import ROOT, Procs, cli_here, wait_for

SAMPLES = testpattern.sample_messages(5)
REPUBLISHABLE = {t: m for t, m in SAMPLES.items() if not isinstance(m, msgs.SyncedFrame)}


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusion_stream.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


def write_samples(path: Path, repeats: int = 3, **kwargs: object) -> list[tuple[str, int, msgs.Message]]:
    """Every sample message ``repeats`` times with advancing stamps; what was written, in order."""
    written = []
    with BagWriter(path, **kwargs) as writer:  # type: ignore[arg-type]
        for k in range(repeats):
            for topic, msg in SAMPLES.items():
                m = dataclasses.replace(msg, stamp_ns=msg.stamp_ns + k * 100_000_000)
                log_ns = m.stamp_ns + 1_000_000 + len(written)
                writer.write(topic, m, log_ns)
                written.append((topic, log_ns, m))
    return written


# --------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("topic", sorted(REPUBLISHABLE))
def test_every_message_converts_to_ros_and_back_unchanged(topic: str) -> None:
    msg = REPUBLISHABLE[topic]
    typename, cdr = convert.serialize(msg)
    back = convert.deserialize(typename, cdr)
    assert type(back) is type(msg)
    if isinstance(msg, msgs.Detections):  # yaw goes through a quaternion
        assert isinstance(back, msgs.Detections)
        for a, b in zip(msg.boxes, back.boxes, strict=True):
            assert b.yaw == pytest.approx(a.yaw, abs=1e-12)
            assert dataclasses.replace(b, yaw=a.yaw) == a
    else:
        assert back == msg


def test_foreign_pointcloud2_layouts_are_read() -> None:
    """An Ouster-like cloud: uint16 ring, uint32 nanosecond time, padding, big endian."""
    from fusion_stream.bag import rostypes

    store = rostypes.typestore()
    field_t = store.types["sensor_msgs/msg/PointField"]
    n = 5
    dtype = np.dtype(
        [
            ("x", ">f4"),
            ("y", ">f4"),
            ("z", ">f4"),
            ("pad", ">u4"),
            ("intensity", ">f4"),
            ("t", ">u4"),
            ("ring", ">u2"),
            ("pad2", ">u2"),
        ]
    )
    rows = np.zeros(n, dtype)
    rows["x"], rows["y"], rows["z"] = np.arange(n), -np.arange(n), 0.5
    rows["intensity"], rows["t"], rows["ring"] = 7.0, np.arange(n) * 1_000_000, np.arange(n)
    fields = [
        field_t(name=name, offset=dtype.fields[name][1], datatype=dt, count=1)
        for name, dt in (("x", 7), ("y", 7), ("z", 7), ("intensity", 7), ("t", 6), ("ring", 4))
    ]
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=3, nanosec=5), frame_id="os"
    )
    ros = store.types["sensor_msgs/msg/PointCloud2"](
        header=header,
        height=1,
        width=n,
        fields=fields,
        is_bigendian=True,
        point_step=dtype.itemsize,
        row_step=dtype.itemsize * n,
        data=rows.tobytes() and np.frombuffer(rows.tobytes(), np.uint8),
        is_dense=True,
    )
    cloud = convert.from_ros("sensor_msgs/msg/PointCloud2", ros)
    assert isinstance(cloud, msgs.PointCloud) and cloud.stamp_ns == 3_000_000_005
    np.testing.assert_array_equal(cloud.field("x"), np.arange(n))
    np.testing.assert_array_equal(cloud.field("ring"), np.arange(n))
    np.testing.assert_allclose(cloud.field("time_offset"), np.arange(n) * 1e-3)
    radar = convert.from_ros("sensor_msgs/msg/PointCloud2", ros, kind="lidar")
    assert isinstance(radar, msgs.PointCloud)
    with pytest.raises(FormatError, match="radial velocity"):
        convert.from_ros("sensor_msgs/msg/PointCloud2", ros, kind="radar")


def test_garbled_cdr_is_a_format_error_naming_the_type() -> None:
    typename, cdr = convert.serialize(SAMPLES["/camera/front/image"])
    with pytest.raises(FormatError, match="sensor_msgs/msg/Image"):
        convert.deserialize(typename, cdr[:40])


# --------------------------------------------------------------------------- files


def test_mcap_round_trip_and_other_readers(tmp_path: Path) -> None:
    path = tmp_path / "s.mcap"
    written = write_samples(path)
    with Bag(path) as bag:
        info = bag.info()
        assert info.indexed and info.compression == "zstd" and info.message_count == len(written)
        assert {t.topic: t.count for t in info.topics} == {t: 3 for t in SAMPLES}
        got = [(c.topic, c.log_ns, c.message) for c in messages(bag)]
    expected = sorted(((t, ns, m) for t, ns, m in written if not isinstance(m, msgs.SyncedFrame)), key=lambda e: e[1])
    assert [(t, ns) for t, ns, _ in got] == [(t, ns) for t, ns, _ in expected]
    for (_, _, a), (_, _, b) in zip(got, expected, strict=True):
        if isinstance(b, msgs.Detections):
            assert [x.center for x in a.boxes] == [x.center for x in b.boxes]  # type: ignore[union-attr]
        else:
            assert a == b

    # mcap's own ROS 2 decoder, from the schemas in the file
    with open(path, "rb") as f:
        decoded = {
            ch.topic: m for _, ch, _, m in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()
        }
    img = SAMPLES["/camera/front/image"]
    assert isinstance(img, msgs.Image)
    ros_img = decoded["/camera/front/image"]
    assert (ros_img.height, ros_img.width, ros_img.encoding) == (img.height, img.width, "rgb8")
    assert bytes(ros_img.data) == img.data.tobytes()
    assert decoded["/detections"].detections[0].results[0].hypothesis.class_id == "car"
    assert decoded["/audio/array/chunk"].samples == 480

    # rosbags, with nothing but the definitions embedded in the file
    clouds = decode_with_rosbags(path, "/lidar/top/points")
    assert len(clouds) == 3
    assert [f.name for f in clouds[0].fields] == list(SAMPLES["/lidar/top/points"].fields)  # type: ignore[union-attr]
    assert clouds[0].width == len(SAMPLES["/lidar/top/points"])  # type: ignore[arg-type]
    assert decode_with_rosbags(path, "/audio/array/chunk")[0].sample_rate == 48_000


def decode_with_rosbags(path: Path, topic: str) -> list[Any]:
    """Messages of ``topic`` decoded by rosbags from the schema in the file alone (an empty
    type store: nothing of ours, nothing preinstalled)."""
    store = get_typestore(Stores.EMPTY)
    out = []
    with open(path, "rb") as f:
        for schema, channel, message in make_reader(f).iter_messages(topics=[topic]):
            assert schema is not None and schema.encoding == "ros2msg"
            if schema.name not in store.types:
                sections = schema.data.decode().split("=" * 80 + "\n")
                types = get_types_from_msg(sections[0], schema.name)
                for sec in sections[1:]:
                    head, _, body = sec.partition("\n")
                    pkg, name = head.removeprefix("MSG: ").strip().split("/")
                    types.update(get_types_from_msg(body, f"{pkg}/msg/{name}"))
                store.register(types)
            out.append(store.deserialize_cdr(message.data, schema.name))
            assert channel.message_encoding == "cdr"
    return out


def test_split_by_size_writes_numbered_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    written = write_samples(path, repeats=12, split_bytes=100_000)
    files = sorted(tmp_path.glob("run_*.mcap"))
    assert len(files) > 1 and files[0].name == "run_000.mcap" and not path.exists()
    total = 0
    for f in files:
        with Bag(f) as bag:
            info = bag.info()
            assert info.indexed
            total += info.message_count
    assert total == len(written)


def test_a_killed_writer_leaves_complete_chunks_that_recover_reads(tmp_path: Path) -> None:
    path = tmp_path / "crash.mcap"
    writer = BagWriter(path, flush_s=0.0, chunk_size=50_000)
    for k in range(20):
        for topic, msg in SAMPLES.items():
            writer.write(topic, dataclasses.replace(msg, stamp_ns=msg.stamp_ns + k), msg.stamp_ns + k)
    writer.flush()
    # no close(): as after kill -9 (the file has no summary), and then a torn last write
    with open(path, "ab") as f:
        f.write(b"\x06" + b"\x00" * 20)
    with Bag(path) as bag:
        info = bag.info()
    assert not info.indexed and info.message_count == 20 * len(SAMPLES)
    result = recover(path)
    assert result.messages == 20 * len(SAMPLES) and result.output.name == "crash.recovered.mcap"
    with Bag(result.output) as bag:
        info = bag.info()
        assert info.indexed and info.message_count == 20 * len(SAMPLES)
        assert sum(1 for _ in messages(bag)) == 20 * (len(SAMPLES) - 1)  # SyncedFrame indexes are not replayed


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"hello, not a bag at all")
    with pytest.raises(FormatError, match=r"junk\.mcap: not an MCAP file"):
        Bag(junk)
    with pytest.raises(FormatError, match="no such file"):
        Bag(tmp_path / "absent.mcap")
    good = tmp_path / "good.mcap"
    write_samples(good, repeats=1)
    truncated = tmp_path / "truncated.mcap"
    truncated.write_bytes(good.read_bytes()[:300])
    r = cli("bag", "info", str(truncated))
    assert r.returncode == 0 and "not finished" in r.stdout  # what it can read, and how to repair
    r = cli("replay", str(junk))
    assert r.returncode == 2 and "junk.mcap" in r.stderr
    r = cli("bag", "info", str(tmp_path / "absent.mcap"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_topic_map_errors_name_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("topics:\n  /points: {topic: not a topic}\n")
    with pytest.raises(FileKeyError, match=r"map.yaml: topics./points.topic"):
        load_map(bad)
    bad.write_text("topics:\n  /points: {topic: /lidar/top/points, kind: sonar}\n")
    with pytest.raises(FileKeyError, match="kind"):
        load_map(bad)
    good = tmp_path / "good.yaml"
    good.write_text("topics:\n  /nowhere: /lidar/top/points\n")
    tmap = load_map(good)
    with pytest.raises(FileKeyError, match="no such topic in the bag"):
        tmap.check(["/velodyne_points"])


# --------------------------------------------------------------------------- processes


def test_record_from_processes_then_replay_reproduces_every_message(
    procs: Procs, registry: Registry, tmp_path: Path
) -> None:
    seed = 5
    expected = dict(REPUBLISHABLE)
    expected["/samples/diagnostics"] = expected.pop("/diagnostics")
    pub = procs.python("tests/publish_samples.py", "-p", f"seed:={seed}", "-p", "period_s:=0.05")
    wait_for(lambda: registry.lookup("/lidar/top/points"), 15, "the sample publisher")
    out = tmp_path / "rec.mcap"
    rec = procs.cli("record", *expected, "/sync/frames", "-o", str(out))
    wait_for(lambda: out.exists() and out.stat().st_size > 20_000, 20, "the recorder writing")
    rec.send_signal(signal.SIGINT)
    stdout, stderr = rec.communicate(timeout=15)
    assert rec.returncode == 0, stderr
    assert "recorded" in stdout and "dropped" not in stderr
    pub.send_signal(signal.SIGTERM)
    pub.wait(timeout=10)

    with Bag(out) as bag:
        info = bag.info()
        assert info.indexed  # SIGINT finished the file properly
        recorded = list(messages(bag))
    counts = {t.topic: t.count for t in info.topics}
    assert set(counts) == set(expected) | {"/sync/frames", "/detections/markers"}
    markers = decode_with_rosbags(out, "/detections/markers")[0].markers  # what Foxglove and RViz draw
    boxes = expected["/detections"].boxes  # type: ignore[union-attr]
    assert [m.type for m in markers] == [1, 9] * len(boxes)  # a cube and a label per box
    assert markers[0].pose.position.x == boxes[0].center[0] and "car" in markers[1].text
    for c in recorded:
        want = expected[c.topic]
        assert c.message.stamp_ns == want.stamp_ns
        if isinstance(want, msgs.Detections):
            assert [b.label for b in c.message.boxes] == [b.label for b in want.boxes]  # type: ignore[union-attr]
        else:
            assert c.message == want, c.topic

    # replay into a subscriber in this process: the same messages come out again, in order
    n_lidar = counts["/lidar/top/points"]
    with Subscriber(
        ["/lidar/top/points", "/audio/array/chunk"], registry=registry, timeout=15.0, queue_size=10_000
    ) as sub:
        play = procs.cli("replay", str(out), "--rate", "4", "--topics", "/lidar/top/points", "/audio/array/chunk")
        got = []
        for env in sub.envelopes():
            got.append(env)
            if len(got) == n_lidar + counts["/audio/array/chunk"]:
                break
        assert play.wait(timeout=30) == 0
    assert [e.message for e in got if e.topic == "/lidar/top/points"] == [expected["/lidar/top/points"]] * n_lidar
    assert all(e.message == expected["/audio/array/chunk"] for e in got if e.topic == "/audio/array/chunk")


def test_a_recorder_killed_hard_leaves_a_recoverable_file(procs: Procs, registry: Registry, tmp_path: Path) -> None:
    procs.python("tests/publish_samples.py", "-p", "period_s:=0.02")
    wait_for(lambda: registry.lookup("/lidar/top/points"), 15, "the sample publisher")
    out = tmp_path / "killed.mcap"
    rec = procs.cli("record", "--all", "-o", str(out))
    wait_for(lambda: out.exists() and out.stat().st_size > 30_000, 20, "a flushed chunk")
    rec.send_signal(signal.SIGKILL)
    rec.wait(timeout=5)
    r = cli("bag", "info", str(out))
    assert r.returncode == 0 and "not finished" in r.stdout and "bag recover" in r.stdout
    r = cli("bag", "recover", str(out))
    assert r.returncode == 0, r.stderr
    fixed = out.with_name("killed.recovered.mcap")
    with Bag(fixed) as bag:
        info = bag.info()
        assert info.indexed and info.message_count > 0
        stats = StreamStats()
        for c in messages(bag, stats=stats):
            if c.topic == "/lidar/top/points":
                assert c.message == testpattern.sample_messages(0)["/lidar/top/points"]
        assert not stats.failed


# --------------------------------------------------------------------------- real ROS bags

DATA = ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real recordings not found at {DATA}")


@needs_data
def test_ros1_t265_bag_info_and_convert(tmp_path: Path) -> None:
    src = DATA / "rosbag1_t265" / "trimmed_locoffice.bag"
    r = cli("bag", "info", "--json", str(src))
    info = json.loads(r.stdout)
    assert info["format"] == "rosbag1" and info["messages"] == 50
    counts = {t["topic"]: (t["type"], t["count"]) for t in info["topics"]}
    assert counts == {
        "/camera/fisheye1/image_raw": ("sensor_msgs/msg/Image", 3),
        "/camera/fisheye2/image_raw": ("sensor_msgs/msg/Image", 3),
        "/camera/gyro/sample": ("sensor_msgs/msg/Imu", 19),
        "/camera/accel/sample": ("sensor_msgs/msg/Imu", 6),
        "/camera/odom/sample": ("nav_msgs/msg/Odometry", 19),
    }
    tmap = tmp_path / "t265.yaml"
    tmap.write_text("topics:\n  /camera/fisheye1/image_raw: {topic: /camera/left/image, frame_id: fisheye1}\n")
    out = tmp_path / "t265.mcap"
    r = cli("bag", "convert", str(src), "-o", str(out), "--map", str(tmap))
    assert r.returncode == 0, r.stderr
    with Bag(out) as bag:
        topics = {t.topic: t.count for t in bag.info().topics}
        assert topics["/camera/left/image"] == 3 and topics["/camera/gyro/sample"] == 19  # IMU copied as is
        images = [c.message for c in messages(bag, topics=["/camera/left/image"])]
    kapture = (DATA / "rosbag1_t265" / "expected_kapture" / "records_camera.txt").read_text().splitlines()
    stamps = sorted({int(line.split(",")[0]) for line in kapture if line and not line.startswith("#")})
    assert [m.stamp_ns for m in images] == stamps
    assert all(isinstance(m, msgs.Image) and m.data.shape == (800, 848, 1) and m.frame_id == "fisheye1" for m in images)
    with Bag(src) as original, Bag(out) as converted:  # IMU kept message for message, at the same times
        gyro = [(r.log_ns, convert.stamp_ns(r.decode().header)) for r in original.messages(["/camera/gyro/sample"])]
        again = [(r.log_ns, convert.stamp_ns(r.decode().header)) for r in converted.messages(["/camera/gyro/sample"])]
    assert len(gyro) == 19 and again == gyro
    imu = decode_with_rosbags(out, "/camera/accel/sample")[0]  # copied to CDR, still decodes in another tool
    acc = imu.linear_acceleration
    assert 9.5 < float(np.linalg.norm([acc.x, acc.y, acc.z])) < 10.5


@needs_data
def test_ros1_luminar_point_clouds(tmp_path: Path) -> None:
    src = DATA / "rosbag1_luminar" / "test.bag"
    with Bag(src) as bag:
        info = bag.info()
        assert {t.topic for t in info.topics} == {"/base_pose_ground_truth", "/base_scan", "/luminar_pointcloud"}
        assert (info.start_ns, info.end_ns) == (1604515190231374463, 1604515197820012098)
        clouds = [c.message for c in messages(bag, topics=["/luminar_pointcloud"])]
    assert [len(c) for c in clouds] == [35707, 36055, 36267, 36457, 36336]  # type: ignore[arg-type]
    assert clouds[0].stamp_ns == 1583971570015299642 and clouds[0].frame_id == "luminar_lidar"
    y = clouds[0].field("y")  # type: ignore[union-attr]
    assert float(y.min()) > 4.0 and float(y.max()) < 252.0  # forward-looking, long range
    tmap = tmp_path / "m.yaml"
    tmap.write_text("topics:\n  /luminar_pointcloud: {topic: /lidar/top/points, kind: lidar}\n")
    out = tmp_path / "lum.mcap"
    assert cli("bag", "convert", str(src), "-o", str(out), "--map", str(tmap), "--compression", "lz4").returncode == 0
    with Bag(out) as bag:
        again = [c.message for c in messages(bag, topics=["/lidar/top/points"])]
    assert again == clouds
    tmap.write_text("topics:\n  /velodyne_points: /lidar/top/points\n")
    r = cli("bag", "convert", str(src), "-o", str(tmp_path / "x.mcap"), "--map", str(tmap))
    assert r.returncode == 2 and "/velodyne_points" in r.stderr and "no such topic" in r.stderr
    assert not (tmp_path / "x.mcap").exists()


@needs_data
def test_ros2_sqlite_bag_without_type_definitions(tmp_path: Path) -> None:
    src = DATA / "velodyne_rosbag2_nebula" / "vlp16"
    bag_dir = next(p for p in src.iterdir() if p.is_dir())
    r = cli("bag", "info", str(bag_dir))
    assert r.returncode == 0 and "velodyne_msgs/msg/VelodyneScan" in r.stdout and "rosbag2" in r.stdout
    out = tmp_path / "vlp16.mcap"
    assert cli("bag", "convert", str(bag_dir), "-o", str(out)).returncode == 0
    with Bag(out) as bag:
        scans = [raw.decode() for raw in bag.messages()]
    assert [len(s.packets) for s in scans] == [151, 151, 151, 150]
    assert all(len(p.data) == 1206 for s in scans for p in s.packets)
    with Bag(bag_dir) as original:
        assert [bytes(r.data) for r in original.messages()] == [bytes(r.data) for r in Bag(out).messages()]


@needs_data
def test_ros1_bag_replays_through_a_topic_map(registry: Registry, tmp_path: Path) -> None:
    from fusion_stream.bag.replay import Replayer, ReplayOptions

    tmap = tmp_path / "m.yaml"
    tmap.write_text("topics:\n  /luminar_pointcloud: {topic: /lidar/top/points, frame_id: lidar_top}\n")
    src = DATA / "rosbag1_luminar" / "test.bag"
    options = ReplayOptions(rate=10.0, wait_s=0.6)
    with (
        Subscriber("/lidar/top/points", registry=registry, timeout=10.0, queue_size=100) as sub,
        Replayer(src, options, topic_map=load_map(tmap), registry=registry) as rp,
    ):
        assert rp.selected == ["/luminar_pointcloud"]  # LaserScan and Odometry have no fusion_stream type
        done: list[object] = []
        player = threading.Thread(target=lambda: done.append(rp.run()))
        player.start()
        got = []
        for msg in sub:  # receiving (and discovering the replay's publisher) meanwhile
            got.append(msg)
            if len(got) == 5:
                break
        player.join(timeout=20)
    assert done and done[0].published["/lidar/top/points"] == 5  # type: ignore[attr-defined]
    assert [len(m) for m in got] == [35707, 36055, 36267, 36457, 36336]  # type: ignore[arg-type]
    assert all(isinstance(m, msgs.PointCloud) and m.frame_id == "lidar_top" for m in got)


def test_a_recorder_node_in_a_launch_file_records_the_graph(procs: Procs, runtime_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "graph.mcap"
    graph = tmp_path / "rec.yaml"
    graph.write_text(
        "graph: rectest\n"
        "nodes:\n"
        "  - {name: lidar, type: pattern, params: {kind: points, points: 2000, rate_hz: 20, topic: /lidar/a}}\n"
        f"  - {{name: recorder, type: recorder, params: {{output: '{out}', all: true, calib: calib/sim_rig.yaml}}}}\n"
    )
    launch = procs.cli("launch", str(graph))
    # stopped once the recorder has reported twice and 30 more clouds went by (not after a fixed
    # time: start-up on a busy machine can take most of any window)
    reports, clouds_since = 0, 0
    graph_registry = Registry(runtime_dir, graph="rectest")
    with Subscriber(["/diagnostics", "/lidar/a"], registry=graph_registry, queue_size=200) as sub:
        deadline = time.monotonic() + 90
        while (reports < 2 or clouds_since < 30) and time.monotonic() < deadline:
            m = sub.recv(timeout=1.0)
            if isinstance(m, msgs.Diagnostics) and m.node == "recorder":
                reports += 1
            elif isinstance(m, msgs.PointCloud) and reports >= 2:
                clouds_since += 1
    assert reports >= 2 and clouds_since >= 30, (reports, clouds_since)
    launch.send_signal(signal.SIGINT)
    stdout, stderr = launch.communicate(timeout=60)
    assert launch.returncode == 0, (stdout + stderr)[-3000:]
    with Bag(out) as bag:
        info = bag.info()
        assert info.indexed  # the supervisor's SIGINT finished the file
        counts = {t.topic: t.count for t in info.topics}
        clouds = [c.message for c in messages(bag, topics=["/lidar/a"])]
    assert counts["/tf_static"] == 1 and counts["/diagnostics"] >= 2
    assert len(clouds) >= 20
    assert all(isinstance(c, msgs.PointCloud) and len(c) == 1984 for c in clouds)  # 32 rings × 62


def test_bad_command_line_values_exit_2_and_overwrite_nothing(tmp_path: Path) -> None:
    """Each new command refuses a wrong value with one line naming it, before touching any file."""
    existing = tmp_path / "keep.mcap"
    write_samples(existing, repeats=1)
    before = existing.read_bytes()
    r = cli_here("record", "--all", "-o", str(existing), "--duration", "1")
    assert r.returncode == 2 and "already exists" in r.stderr and existing.read_bytes() == before
    r = cli_here("record", "--all", "-o", str(tmp_path / "x.bag"), "--duration", "1")
    assert r.returncode == 2 and "must end in .mcap" in r.stderr
    r = cli_here("record", "-o", str(tmp_path / "none.mcap"), "--duration", "1")
    assert r.returncode == 2 and "--all" in r.stderr and not (tmp_path / "none.mcap").exists()
    r = cli_here("record", "--all", "-o", str(tmp_path / "s.mcap"), "--split-size", "-5", "--duration", "1")
    assert r.returncode == 2 and "split size" in r.stderr
    r = cli_here("replay", str(existing), "--rate", "0")
    assert r.returncode == 2 and "--rate" in r.stderr
    r = cli_here("replay", str(existing), "--topics", "/nope")
    assert r.returncode == 2 and "/nope" in r.stderr
    r = cli_here("bag", "recover", str(tmp_path / "absent.mcap"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = cli_here("bag", "recover", str(existing), "-o", str(existing))
    assert r.returncode == 2 and "new file" in r.stderr and existing.read_bytes() == before
    r = cli_here("bag", "convert", str(existing), "-o", str(existing))
    assert r.returncode == 2 and "already exists" in r.stderr and existing.read_bytes() == before
    r = cli_here("sim", "bag", "--duration", "0", "-o", str(tmp_path / "sim.mcap"))
    assert r.returncode == 2 and "--duration" in r.stderr and not (tmp_path / "sim.mcap").exists()
    r = cli_here("sim", "bag", "--duration", "1", "-o", str(existing))
    assert r.returncode == 2 and "already exists" in r.stderr and existing.read_bytes() == before


def test_a_recorder_node_with_a_bad_output_says_which_parameter(procs: Procs, tmp_path: Path) -> None:
    existing = tmp_path / "keep.mcap"
    write_samples(existing, repeats=1)
    node = procs.python("-m", "fusion_stream.nodes.recorder", "-p", f"output:={existing}", "-p", "all:=true")
    _, err = node.communicate(timeout=30)
    assert node.returncode == 2 and "'output'" in err and "already exists" in err
    node = procs.python("-m", "fusion_stream.nodes.recorder", "-p", f"output:={tmp_path / 'n.mcap'}")
    _, err = node.communicate(timeout=30)
    assert node.returncode == 2 and "'topics'" in err and not (tmp_path / "n.mcap").exists()
