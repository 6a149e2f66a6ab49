"""The fusion node as a real process: synced sets of simulated data in, detections out; newest
set wins; partial sets still run; a bad weights file exits with a clear message. With a ``sync:``
block it synchronizes the sensor topics itself (one hop less): fed by real sensor processes, checked
by the launch checker, skipping to the newest set when the model falls behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fusion_stream.core import calib, msgs, resources
from fusion_stream.errors import LaunchError
from fusion_stream.graph import launch
from fusion_stream.infer.backends import onnx_for
from fusion_stream.model import dataset
from fusion_stream.nodes.fusion import resolve_device
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sync.live import NewestSet, arrival_ns
from fusion_stream.sync.settings import EmbeddedParams, InputParams, config_from
from fusion_stream.sync.stage import SyncStage

from .conftest import Procs, wait_for

RIG = calib.load(resources.resolve("calib/sim_rig.yaml"))
NO_GPU = resolve_device("auto") == "cpu"


@pytest.mark.skipif(not NO_GPU, reason="with an NVIDIA driver, device auto asks torch for CUDA")
def test_fusion_node_starts_from_the_cached_export_without_torch(procs: Procs, registry: Registry) -> None:
    """What a respawn costs: with the ONNX export cached, the node as launch/sim.yaml runs it
    (backend and device auto) loads and warms the model without importing torch (seconds), and
    appears on /detections ready: the first set it gets is answered."""
    onnx_for(resources.resolve("weights/fusion_sim.pt"))  # what the first start of a graph leaves
    members = dataset.members_of(dataset.simulate(dataset.SampleSpec(seed=7, t=3.0, actors=12), RIG), RIG)
    node = procs.python("-m", "fusion_stream.nodes.fusion", "--name", "fusion")
    with (
        Publisher("/sync/frames", registry=registry) as pub,
        Subscriber("/detections", registry=registry) as dets,
    ):
        dets.wait_for_publishers(60.0)
        maps = Path(f"/proc/{node.pid}/maps").read_text()
        assert "libtorch" not in maps, "the fusion node imported torch"
        got = None
        deadline = time.monotonic() + 20.0
        while got is None and time.monotonic() < deadline:  # until its subscriber has joined
            pub.publish(msgs.SyncedFrame(stamp_ns=time.time_ns(), frame_id="base_link", members=members))
            got = dets.recv(timeout=0.2)
        assert isinstance(got, msgs.Detections)
    node.terminate()
    _, err = node.communicate(timeout=10)
    assert "ready in" in err and "first run" in err, err[-2000:]


def test_fusion_node_detects_on_synced_sets_and_reports_stage_latency(procs: Procs, registry: Registry) -> None:
    members = dataset.members_of(dataset.simulate(dataset.SampleSpec(seed=105, t=455.7, actors=37), RIG), RIG)
    procs.python("-m", "fusion_stream.nodes.fusion", "--name", "fusion", "-p", "backend:=onnxruntime")
    with (
        Publisher("/sync/frames", registry=registry) as pub,
        Subscriber("/detections", registry=registry, timeout=30.0) as dets,
        Subscriber("/diagnostics", registry=registry, timeout=5.0) as diag,
    ):
        dets.wait_for_publishers(60.0)
        deadline = time.monotonic() + 20.0
        while dets.recv(timeout=0.3) is None:  # until its subscriber has joined
            assert time.monotonic() < deadline, "no detections for 20 s"
            pub.publish(msgs.SyncedFrame(stamp_ns=2, frame_id="base_link", members=members))
        # then a set the node cannot use (a plain cloud on the radar input): skipped and counted
        radar = members["radar"][0]
        bad_radar = msgs.PointCloud(
            stamp_ns=1, frame_id="radar_front", data=radar.data[:, :4], fields=("x", "y", "z", "intensity")
        )
        pub.publish(msgs.SyncedFrame(stamp_ns=1, frame_id="base_link", members={**members, "radar": (bad_radar,)}))
        time.sleep(0.5)
        while dets.recv(timeout=0) is not None:  # answers to the sets sent while it joined
            pass
        got: list[msgs.Detections] = []
        stamps = []
        deadline = time.monotonic() + 60
        while len(got) < 4 and time.monotonic() < deadline:
            stamp = time.time_ns()
            partial = len(stamps) % 2 == 1
            frame = msgs.SyncedFrame(
                stamp_ns=stamp,
                frame_id="base_link",
                members={k: v for k, v in members.items() if not (partial and k in ("camera", "radar"))},
                missing=("camera", "radar") if partial else (),
            )
            pub.publish(frame)
            stamps.append(stamp)
            m = dets.recv(timeout=5.0)
            if isinstance(m, msgs.Detections):
                got.append(m)
        assert len(got) >= 4
        assert {d.stamp_ns for d in got} <= set(stamps)  # stamped with the set's reference stamp
        assert all(d.frame_id == "base_link" for d in got)
        assert max(len(d.boxes) for d in got) > 0
        assert {b.label for d in got for b in d.boxes} <= {"car", "truck", "pedestrian", "cyclist"}

        def fusion_report() -> msgs.Diagnostics | None:
            m = diag.recv(timeout=1.0)
            return m if isinstance(m, msgs.Diagnostics) and m.node == "fusion" and "e2e_ms_p50" in m.values else None

        report = None

        def found() -> bool:
            nonlocal report
            report = fusion_report()
            return report is not None

        wait_for(found, 10.0, "a fusion diagnostics report with latencies")
        assert report is not None
        for key in ("preprocess_ms_p50", "inference_ms_p50", "decode_ms_p50", "e2e_ms_p50", "e2e_ms_p99"):
            assert float(report.values[key]) > 0, key
        assert report.values["backend"] == "onnxruntime"
        assert int(report.values["partial_sets"]) >= 1
        assert int(report.values["failed_sets"]) == 1  # the malformed one, and the node went on


def test_fusion_node_with_missing_weights_exits_2_naming_the_file(registry: Registry) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fusion_stream.nodes.fusion", "--name", "fusion", "-p", "weights:=/nonexistent/w.pt"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "/nonexistent/w.pt" in proc.stderr and "weights" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "fusion_stream.nodes.fusion", "--name", "fusion", "-p", "threshold:=1.5"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "threshold" in proc.stderr


# --------------------------------------------------------------------------- in-process sync

SYNC_BLOCK = """
sync:
  deadline_ms: 150
  inputs:
    - {name: lidar, topic: /lidar/top/points, mode: reference, period_ms: 100, sensor: lidar_top}
    - {name: camera, topic: /camera/front/image, mode: nearest, slop_ms: 40, period_ms: 66.667}
    - {name: radar, topic: /radar/front/points, mode: nearest, slop_ms: 45}
"""


def pattern(procs: Procs, name: str, *params: str) -> None:
    procs.python("-m", "fusion_stream.nodes.pattern", "--name", name, *(a for p in params for a in ("-p", p)))


def test_fusion_node_with_in_process_sync_detects_on_sensor_topics(
    procs: Procs, registry: Registry, runtime_dir: Path
) -> None:
    """LiDAR and camera publishers (real processes), no radar: the fusion node subscribes to the
    sensor topics itself, its detections carry the sweeps' stamps, every set is partial (radar
    missing; the camera too while it starts, or on a busy machine) and published on /sync/frames
    as well, and /diagnostics has the sync's own values."""
    cfg = runtime_dir / "fusion.yaml"
    cfg.write_text("backend: onnxruntime\npublish_sets: /sync/frames\n" + SYNC_BLOCK)
    pattern(procs, "lidar", "kind:=points", "points:=4000", "rate_hz:=10", "topic:=/lidar/top/points")
    pattern(procs, "camera", "kind:=image", "rate_hz:=15", "topic:=/camera/front/image")
    fusion = procs.python("-m", "fusion_stream.nodes.fusion", "--name", "fusion", "--params-file", str(cfg))
    with (
        Subscriber(["/lidar/top/points", "/detections", "/sync/frames"], registry=registry, queue_size=100) as out,
        Subscriber("/diagnostics", registry=registry, queue_size=200) as diag,
    ):
        out.wait_for_publishers(90.0)
        dets: list[msgs.Detections] = []
        sets: list[msgs.SyncedFrame] = []
        stamps = set()
        deadline = time.monotonic() + 60.0
        while len(dets) < 8 and time.monotonic() < deadline:
            m = out.recv(timeout=1.0)
            if isinstance(m, msgs.Detections):
                dets.append(m)
            elif isinstance(m, msgs.SyncedFrame):
                sets.append(m)
            elif isinstance(m, msgs.PointCloud):
                stamps.add(m.stamp_ns)
        assert len(dets) >= 8, f"{len(dets)} detections in 60 s"
        # the first sets may hold sweeps sent before this subscriber had joined
        assert {d.stamp_ns for d in dets[2:]} <= stamps, "detections are stamped with the sweeps' stamps"
        assert all(d.frame_id == "base_link" for d in dets)
        assert sets and all("radar" in f.missing and "lidar" in f.members for f in sets), [f.missing for f in sets]
        assert {d.stamp_ns for d in dets} <= {f.stamp_ns for f in sets} | stamps
        assert any(isinstance(f.first("camera"), msgs.Image) for f in sets), "no set with a camera frame"

        report: msgs.Diagnostics | None = None

        def sync_report() -> bool:
            nonlocal report
            m = diag.recv(timeout=1.0)
            if isinstance(m, msgs.Diagnostics) and m.node == "fusion" and "e2e_ms_p50" in m.values:
                report = m
            return report is not None and int(report.values["sync.in.radar.missing"]) >= 3  # type: ignore[arg-type]

        wait_for(sync_report, 15.0, "a fusion report with the sync's values")
        assert report is not None
        v = report.values
        assert int(v["sync.partial"]) == int(v["sync.sets"]) >= 3  # type: ignore[arg-type]
        assert int(v["sync.in.lidar.used"]) >= 3 and int(v["sync.in.camera.used"]) >= 3  # type: ignore[arg-type]
        assert int(v["sync.in.radar.received"]) == 0
        assert "sync.stand_ins" in v and "skipped_sets" in v and "sync.added_latency_ms_p50" in v
        assert int(v["partial_sets"]) >= 3 and int(v["failed_sets"]) == 0  # type: ignore[arg-type]
        assert report.level == msgs.Level.WARN and "sets partial" in report.message
        assert "sub./lidar/top/points" in " ".join(v), "the node subscribes to the sensor topics"
    fusion.terminate()
    _, err = fusion.communicate(timeout=15)
    assert fusion.returncode == 0, err[-2000:]


def test_newest_set_skips_to_the_newest_emitted_set_when_the_model_is_busy() -> None:
    """Sweeps every 100 ms, the model free only every 350 ms: each run takes the newest set, the
    sets passed over are counted, and every message still went into the stage (the camera frames
    of the skipped sets are used, not dropped)."""
    p = EmbeddedParams(
        inputs=(
            InputParams(name="lidar", topic="/l", mode="reference"),
            InputParams(name="camera", topic="/c", slop_ms=20.0, period_ms=50.0),
        ),
        deadline_ms=150.0,
    )
    clock = [0]
    sets = NewestSet(SyncStage(config_from(p)), lambda: clock[0])
    taken: list[tuple[int, msgs.SyncedFrame]] = []
    ms = 1_000_000
    image = np.zeros((2, 2, 3), np.uint8)
    cloud = np.zeros((1, 4), np.float32)
    for t in range(0, 2000, 50):  # camera every 50 ms, LiDAR every 100 ms, each arriving 10 ms late
        clock[0] = (t + 10) * ms
        sets.add("/c", msgs.Image(stamp_ns=t * ms, frame_id="c", data=image), clock[0])
        if t % 100 == 0:
            sets.add("/l", msgs.PointCloud(stamp_ns=t * ms, frame_id="l", data=cloud), clock[0])
        sets.poll(clock[0])
        if t % 350 == 0 and (e := sets.take()) is not None:
            taken.append((t * ms, e.frame))
    emitted = sets.stage.sets
    assert len(taken) == 6 and all(not f.missing for _, f in taken)
    assert len(taken) + sets.skipped + sets.ready == emitted
    assert sets.skipped >= emitted // 2
    assert all(0 <= t - f.stamp_ns <= 100 * ms for t, f in taken), "each run takes the newest set"
    lidar, camera = sets.stage.input_stats
    assert lidar.used == lidar.received == emitted, "every sweep made a set, taken or skipped"
    assert camera.used == emitted and set(camera.dropped) == {"superseded"}  # the off-grid frames


def test_messages_read_after_a_model_run_join_the_set_they_came_in_time_for() -> None:
    """Sweep 0 came at 100 ms; the model then ran until 260 ms, meanwhile a camera frame (stamp
    10 ms) came at 120 ms and sweep 100 at 200 ms. Read afterwards publisher by publisher, the sweep
    may come first: offered as read, it closes set 0 (due at 150 ms) without the camera; offered
    in arrival order with the arrival times, set 0 is complete, as the sync node would make it."""
    p = EmbeddedParams(
        inputs=(
            InputParams(name="lidar", topic="/l", mode="reference", period_ms=100.0),
            InputParams(name="camera", topic="/c", slop_ms=40.0),
        ),
        deadline_ms=150.0,
    )
    ms = 1_000_000
    sweep0, sweep1 = (
        msgs.PointCloud(stamp_ns=t * ms, frame_id="l", data=np.zeros((1, 4), np.float32)) for t in (0, 100)
    )
    frame = msgs.Image(stamp_ns=10 * ms, frame_id="c", data=np.zeros((2, 2, 3), np.uint8))

    as_read = SyncStage(config_from(p))
    as_read.offer("/l", sweep0, 100 * ms)
    emitted = as_read.offer("/l", sweep1, 260 * ms) + as_read.offer("/c", frame, 260 * ms)
    assert emitted[0].frame.stamp_ns == 0 and emitted[0].frame.missing == ("camera",)  # read in turn

    sets = NewestSet(SyncStage(config_from(p)), lambda: 260 * ms)
    sets.add("/l", sweep0, 100 * ms)
    sets.flush()
    assert not sets.ready
    sets.add("/l", sweep1, arrival_ns(260 * ms, 60 * ms, 150 * ms))  # read first, waited 60 ms
    sets.add("/c", frame, arrival_ns(260 * ms, 140 * ms, 150 * ms))
    assert sets.backlog_s() > 0  # held until flushed (the node flushes once the socket is drained)
    sets.flush()
    assert sets.backlog_s() == 0
    e = sets.take()
    assert e is not None and e.frame.stamp_ns == 0 and not e.frame.missing
    assert e.frame.first("camera") is frame
    assert arrival_ns(260 * ms, -5 * ms, 150 * ms) == 260 * ms  # a clock ahead: now
    assert arrival_ns(260 * ms, 9_000 * ms, 150 * ms) == 110 * ms  # never more than the cap


def _graph(tmp_path: Path, sync_inputs: str, radar: bool = True) -> Path:
    radar_node = "  - {name: radar, type: pattern, params: {kind: radar, topic: /radar/front/points}}\n"
    f = tmp_path / "graph.yaml"
    f.write_text(
        "graph: t\nnodes:\n"
        "  - {name: lidar, type: pattern, params: {kind: points, topic: /lidar/top/points}}\n"
        "  - {name: camera, type: pattern, params: {kind: image, topic: /camera/front/image}}\n"
        + (radar_node if radar else "")
        + "  - name: fusion\n    type: fusion\n    params:\n      publish_sets: /sync/frames\n"
        "      sync:\n        inputs:\n"
        "          - {name: lidar, topic: /lidar/top/points, mode: reference}\n"
        + sync_inputs
        + "  - {name: viewer, type: relay, params: {input: /sync/frames, output: /relayed}}\n"
    )
    return f


GOOD_INPUTS = (
    "          - {name: camera, topic: /camera/front/image, slop_ms: 40}\n"
    "          - {name: radar, topic: /radar/front/points, mode: nearest}\n"
)


def test_launch_checker_accepts_a_fusion_node_with_sync_and_refuses_a_bad_input(tmp_path: Path) -> None:
    graph = launch.load(_graph(tmp_path, GOOD_INPUTS))
    fusion = graph.node("fusion")
    assert set(fusion.topics.inputs) == {"/lidar/top/points", "/camera/front/image", "/radar/front/points"}
    assert set(fusion.topics.outputs) == {"/detections", "/sync/frames"}
    with pytest.raises(LaunchError, match=r"fusion\).*subscribes to /radar/front/points, which no node publishes"):
        launch.load(_graph(tmp_path, GOOD_INPUTS, radar=False))
    bad = {
        "slop: 40": ("unknown field `slop`", "sync.inputs[1]"),
        "mode: newest": ("mode must be one of reference, nearest, window", "sync.inputs[1]"),
        "slop_ms: -5": ("slop_ms must be a finite number >= 0", "sync.inputs[1]"),
        "mode: reference": ("exactly one input must have mode 'reference'", "sync"),
    }
    for change, (reason, key) in bad.items():
        path = _graph(tmp_path, GOOD_INPUTS.replace("slop_ms: 40", change))
        with pytest.raises(LaunchError) as err:
            launch.load(path)
        assert reason in str(err.value) and f"nodes[3] (fusion).params.{key}" in str(err.value), str(err.value)
    path = _graph(tmp_path, GOOD_INPUTS.replace("/camera/front/image", "camera front"))
    with pytest.raises(LaunchError, match=r"params\.sync\.inputs\[1\].*invalid topic name"):
        launch.load(path)


def test_fusion_node_with_a_bad_sync_block_exits_2_before_loading_the_model(runtime_dir: Path) -> None:
    cfg = runtime_dir / "fusion.yaml"
    cfg.write_text(SYNC_BLOCK.replace("sensor: lidar_top", "sensor: lidar_roof") + "calib: calib/sim_rig.yaml\n")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fusion_stream.nodes.fusion", "--name", "fusion", "--params-file", str(cfg)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "sync.inputs" in proc.stderr and "no sensor 'lidar_roof'" in proc.stderr
    assert "ready in" not in proc.stderr and time.monotonic() - t0 < 30
    proc = subprocess.run(
        [sys.executable, "-m", "fusion_stream.nodes.fusion", "--name", "fusion", "-p", "publish_sets:=/sync/frames"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "publish_sets" in proc.stderr and "sync block" in proc.stderr
