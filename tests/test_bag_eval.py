"""Offline evaluation of bags and lockstep replay: deterministic scores, a report, bad input."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fusion_stream.bag.mapping import messages
from fusion_stream.bag.reader import Bag
from fusion_stream.bag.replay import Replayer, ReplayOptions
from fusion_stream.bag.writer import BagWriter
from fusion_stream.core import msgs
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sim.recording import TOPICS, record_sim
from fusion_stream.sim.world import Scenario

from .conftest import Procs, cli_here, run_cli, wait_for

TIMING_KEYS = ("wall_s", "latency_ms", "speed_x_realtime", "bag")


@pytest.fixture(scope="module")
def sim_bags(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3 s of the simulated rig with ground truth, and the same without it."""
    d = tmp_path_factory.mktemp("bags")
    with_gt = d / "sim.mcap"
    record_sim(with_gt, Scenario(seed=4, actors=28), start_s=200.0, duration_s=3.0)
    without = d / "no_gt.mcap"
    with Bag(with_gt) as bag, BagWriter(without) as writer:
        for c in messages(bag):
            if c.topic != TOPICS["ground_truth"]:
                writer.write(c.topic, c.message, c.log_ns)
    return with_gt, without


def eval_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("eval", *args, timeout=110)


def scores(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in TIMING_KEYS}


def test_sim_bag_is_what_the_nodes_publish(sim_bags: tuple[Path, Path]) -> None:
    with Bag(sim_bags[0]) as bag:
        counts = {t.topic: t.count for t in bag.info().topics}
        stamps = [c.message.stamp_ns for c in messages(bag, topics=[TOPICS["lidar"]])]
    assert counts == {
        "/tf_static": 1,
        TOPICS["ground_truth"] + "/markers": 30,  # boxes Foxglove and RViz draw
        TOPICS["lidar"]: 30,
        TOPICS["ground_truth"]: 30,
        TOPICS["camera"]: 45,
        TOPICS["radar"]: 39,
        TOPICS["audio"]: 150,
    }
    assert stamps == [200_000_000_000 + k * 100_000_000 for k in range(30)]


def test_eval_scores_a_bag_the_same_every_time_and_writes_a_report(sim_bags: tuple[Path, Path], tmp_path: Path) -> None:
    with_gt, without = sim_bags
    r = eval_cli(str(with_gt), str(without), "-o", str(tmp_path / "both"))
    assert r.returncode == 0, r.stderr
    assert "no ground truth" in r.stdout and "mAP" in r.stdout
    first = tmp_path / "both" / "sim" / "metrics.json"
    m = json.loads(first.read_text())
    assert m["sets"] == 30 and m["frames_with_ground_truth"] == 30
    assert m["nuscenes"]["mAP"] > 0.5  # the shipped weights on a scenario they never saw
    assert 0.0 <= m["kitti_bev"]["mAP"] <= 1.0 and 0.0 <= m["kitti_3d"]["mAP"] <= m["kitti_bev"]["mAP"] + 1e-9
    assert set(m["nuscenes"]["per_class"]) == {"car", "truck", "pedestrian", "cyclist"}
    assert m["latency_ms"]["total"]["p50"] > 0
    no_gt = json.loads((tmp_path / "both" / "no_gt" / "metrics.json").read_text())
    assert "nuscenes" not in no_gt and "no ground truth" in no_gt["ground_truth"] and no_gt["latency_ms"]["total"]

    page = (tmp_path / "both" / "sim" / "report.html").read_text()
    assert "<svg" in page and "polyline" in page and "Per class" in page
    images = [line.split('"')[1] for line in page.split("<img ")[1:]]
    assert images and all((tmp_path / "both" / "sim" / name).stat().st_size > 1000 for name in images)

    # the same scores again, on one thread (in this process: the same main, no second start-up)
    r = cli_here("eval", str(with_gt), "-o", str(tmp_path / "again"), "--threads", "1", "--frames", "0", "--worst", "0")
    assert r.returncode == 0, r.stderr
    assert scores(tmp_path / "again" / "metrics.json") == scores(first)


def test_eval_bad_input_exits_2(sim_bags: tuple[Path, Path], tmp_path: Path) -> None:
    r = cli_here("eval", str(tmp_path / "absent.mcap"))
    assert r.returncode == 2 and "absent.mcap" in r.stderr
    only_diag = tmp_path / "diag.mcap"
    with BagWriter(only_diag) as writer:
        writer.write("/diagnostics", msgs.Diagnostics(stamp_ns=1, node="x"), 1)
    r = cli_here("eval", str(only_diag), "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and "none of the sync inputs" in r.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_lockstep_replay_waits_for_the_pipeline(sim_bags: tuple[Path, Path], registry: Registry) -> None:
    """A stand-in pipeline answers each sweep 80 ms late: lockstep sends no sweep before the
    previous one was answered, so none is lost however slow the pipeline is."""
    delay = 0.08
    answered: list[int] = []
    stop = threading.Event()

    def pipeline() -> None:
        with (
            Subscriber(TOPICS["lidar"], registry=registry, queue_size=1000) as sub,
            Publisher("/detections", registry=registry) as pub,
        ):
            while not stop.is_set():
                msg = sub.recv(timeout=0.05)
                if msg is not None:
                    time.sleep(delay)
                    answered.append(msg.stamp_ns)
                    pub.publish(msgs.Detections(stamp_ns=msg.stamp_ns))

    worker = threading.Thread(target=pipeline, daemon=True)
    worker.start()
    options = ReplayOptions(lockstep=True, topics=[TOPICS["lidar"], TOPICS["radar"]], wait_s=0.5, ack_timeout_s=3.0)
    t0 = time.monotonic()
    with Replayer(sim_bags[0], options, registry=registry) as replayer:
        stats = replayer.run()
    elapsed = time.monotonic() - t0
    stop.set()
    worker.join(timeout=5)
    assert stats.ack_timeouts == 0
    assert stats.published[TOPICS["lidar"]] == 30 and stats.published[TOPICS["radar"]] == 39
    assert answered == [200_000_000_000 + k * 100_000_000 for k in range(30)]
    assert elapsed >= 30 * delay


def test_replay_clock_makes_sync_deadlines_follow_bag_time(
    procs: Procs, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replayed 5× slower, a camera frame logged 20 ms after its sweep arrives 100 ms later in wall
    time: past a 40 ms deadline for a sync node on wall time (partial sets), within it for one
    that follows the replay clock (complete sets)."""
    from fusion_stream.sources import testpattern

    bag = tmp_path / "slow.mcap"
    t0 = 1_700_000_000_000_000_000
    with BagWriter(bag) as writer:
        for k in range(10):
            t = t0 + k * 100_000_000
            writer.write("/lidar/top/points", testpattern.point_cloud(t, points=500), t + 5_000_000)
            writer.write("/camera/front/image", testpattern.image(t, width=64, height=48), t + 25_000_000)
    inputs = (
        "inputs:=[{name: lidar, topic: /lidar/top/points, mode: reference},"
        " {name: camera, topic: /camera/front/image, mode: nearest, slop_ms: 10, period_ms: 100}]"
    )
    monkeypatch.setenv("FUSION_STREAM_CLOCK", "/clock")
    procs.python(
        "-m", "fusion_stream.nodes.sync",
        "--name", "bagtime", "-p", inputs, "-p", "deadline_ms:=40", "-p", "output:=/sync/bag"
    )
    monkeypatch.delenv("FUSION_STREAM_CLOCK")
    procs.python(
        "-m", "fusion_stream.nodes.sync",
        "--name", "walltime", "-p", inputs, "-p", "deadline_ms:=40", "-p", "output:=/sync/wall"
    )
    wait_for(lambda: registry.lookup("/sync/bag") and registry.lookup("/sync/wall"), 20, "both sync nodes")
    got: dict[str, list[msgs.SyncedFrame]] = {"/sync/bag": [], "/sync/wall": []}
    with Subscriber(list(got), registry=registry, queue_size=100) as sub:
        play = procs.cli("replay", str(bag), "--rate", "0.2", "--clock")
        end = time.monotonic() + 25
        while time.monotonic() < end and (play.poll() is None or sub.recv_envelope(timeout=0) is not None):
            env = sub.recv_envelope(timeout=0.2)
            if env is not None and isinstance(env.message, msgs.SyncedFrame):
                got[env.topic].append(env.message)
        assert play.wait(timeout=10) == 0
        time.sleep(0.5)
        while (env := sub.recv_envelope(timeout=0.2)) is not None:
            if isinstance(env.message, msgs.SyncedFrame):
                got[env.topic].append(env.message)
    complete = {topic: sum(not f.missing for f in frames) for topic, frames in got.items()}
    assert complete["/sync/bag"] >= 9, complete  # the first sweep may come before the clock
    assert complete["/sync/wall"] <= 2 and len(got["/sync/wall"]) >= 8, complete
