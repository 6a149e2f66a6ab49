"""Fleet evaluation: many bags, one report, on a local Ray runtime; the metrics of a serial run to
the last digit; a corrupt bag named and the others scored; a worker killed mid-bag retried and
its bag counted once; bad bag lists are usage errors. The bags themselves are rendered as Ray
tasks (`sim bag --seeds`) and are the bytes of a serial rendering.

One local Ray runtime serves the whole module (starting one costs 10-40 s here): this process
starts it with the library's `ray_runtime`, renders the bags on it, and `fusion-stream eval
--ray-address` joins it. Its workers are started with the test-only kill switch set for bag `b`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcap.reader import make_reader

from fusion_stream.bag.mapping import TopicMap
from fusion_stream.errors import UsageError
from fusion_stream.eval.bag_eval import evaluate_bag, setup_from_launch
from fusion_stream.eval.bag_list import expand_bags, report_names
from fusion_stream.eval.fleet import KILL_ENV, FleetJob, run_on_ray
from fusion_stream.eval.html import jsonable
from fusion_stream.eval.metrics import FrameResult
from fusion_stream.eval.scores import ground_truth_scores
from fusion_stream.runtime.ray_runtime import ray_runtime
from fusion_stream.sim.recording import TOPICS
from fusion_stream.sim.scenario_fleet import PARTIAL, BagSpec, render_on_ray, render_serial
from fusion_stream.sim.world import Scenario

from .conftest import run_cli, wait_for

pytest.importorskip("ray")

SCORE_KEYS = ("nuscenes", "kitti_bev", "kitti_3d", "siren")


def eval_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("eval", *args, timeout=170)


@pytest.fixture(scope="module")
def kill_marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made by the worker that dies in the middle of bag `b` (the retry finds it and goes on)."""
    return tmp_path_factory.mktemp("kill") / "b.killed"


@pytest.fixture(scope="module")
def ray_gcs(kill_marker: Path) -> Iterator[str]:
    """A local Ray runtime with 2 CPUs for the module; its workers die once in the middle of bag
    `b` (:data:`KILL_ENV`: the environment they inherit). Nothing of it is left afterwards."""
    os.environ[KILL_ENV] = f"b:{kill_marker}"
    try:
        with ray_runtime(2) as gcs:
            del os.environ[KILL_ENV]  # the runtime's processes have it; later ones here do not
            yield gcs
    finally:
        os.environ.pop(KILL_ENV, None)
    wait_for(lambda: not processes_mentioning(gcs), timeout=10, what="the local Ray runtime to end")


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if text in line:
            found.append(line[:200])
    return found


def specs(folder: Path) -> list[BagSpec]:
    """Two half-second bags of the simulated rig (5 sets each)."""
    return [
        BagSpec(folder / "a.mcap", Scenario(seed=4, actors=24), start_s=200.0, duration_s=0.5),
        BagSpec(folder / "b.mcap", Scenario(seed=5, actors=24), start_s=100.0, duration_s=0.5),
    ]


@pytest.fixture(scope="module")
def bags(ray_gcs: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The two bags rendered as Ray tasks on 2 workers, and a truncated copy of the first."""
    d = tmp_path_factory.mktemp("fleet_bags")
    rendered = render_on_ray(specs(d), lambda r: None, workers=2)
    assert all(r.ok for r in rendered), [r.error for r in rendered]
    assert rendered[0].worker != rendered[1].worker  # the two went to different workers
    first, second = d / "a.mcap", d / "b.mcap"
    data = first.read_bytes()
    corrupt = d / "c_corrupt.mcap"
    corrupt.write_bytes(data[: len(data) // 2])
    return first, second, corrupt


def messages_of(path: Path) -> list[tuple[str, int, int, bytes]]:
    with path.open("rb") as f:
        return [(c.topic, m.log_time, m.publish_time, m.data) for _, c, m in make_reader(f).iter_messages()]


def test_bags_rendered_on_ray_workers_are_the_bytes_of_a_serial_rendering(
    bags: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    serial = render_serial(specs(tmp_path), lambda r: None)
    for on_ray, alone in zip(bags[:2], serial, strict=True):
        ours = messages_of(on_ray)
        assert len(ours) > 40 and {t for t, *_ in ours} >= set(TOPICS.values())
        assert ours == messages_of(alone.spec.path)
        assert on_ray.read_bytes() == alone.spec.path.read_bytes()  # the whole file, not only the messages
    assert not (bags[0].parent / PARTIAL).exists()


@pytest.fixture(scope="module")
def fleet_run(
    ray_gcs: str, bags: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The folder of bags evaluated by 2 workers on the module's Ray runtime."""
    out = tmp_path_factory.mktemp("fleet_out")
    run = eval_cli(
        str(bags[0].parent), "--workers", "2", "--ray-address", ray_gcs, "--threads", "1", "--strict", "-o", str(out)
    )
    return run, out


@pytest.fixture(scope="module")
def serial(bags: tuple[Path, Path, Path]) -> dict[str, Any]:
    """The good bags evaluated one after the other in this process, with the library: their own
    metrics and the scores over the frames of both."""
    setup = setup_from_launch("sim")
    results = [evaluate_bag(b, setup, threads=1) for b in bags[:2]]
    scored = [FrameResult(f.gt, f.detections) for r in results for f in r.frames if f.gt is not None]
    return {
        "per_bag": [r.metrics for r in results],
        "fleet": jsonable(ground_truth_scores(scored, results[0].classes)),
        "second_alone": jsonable(ground_truth_scores(scored[len(results[0].frames) :], results[0].classes)),
        "sets": sum(len(r.frames) for r in results),
    }


def test_two_ray_workers_give_the_serial_metrics_to_the_last_digit(
    fleet_run: tuple[subprocess.CompletedProcess[str], Path], serial: dict[str, Any]
) -> None:
    _, out = fleet_run
    m = json.loads((out / "metrics.json").read_text())
    assert m["bags"] == 3 and m["evaluated"] == 2
    assert {k: m[k] for k in SCORE_KEYS} == serial["fleet"]
    assert m["sets"] == serial["sets"] == 10 and m["frames_with_ground_truth"] == 10
    for name, alone in zip(("a", "b"), serial["per_bag"], strict=True):  # each bag's own report too
        own = json.loads((out / name / "metrics.json").read_text())
        assert {k: own[k] for k in SCORE_KEYS} == jsonable({k: alone[k] for k in SCORE_KEYS})
    rows = m["per_bag"]
    assert [r["name"] for r in rows] == ["a", "b", "c_corrupt"]
    assert rows[0]["worker"] != rows[1]["worker"]  # the first two bags went to different workers
    assert m["workers"] == 2 and m["ray"]["address"] == m["ray"]["gcs_address"]


def test_a_worker_killed_mid_bag_is_retried_and_its_bag_counted_once(
    kill_marker: Path, fleet_run: tuple[subprocess.CompletedProcess[str], Path], serial: dict[str, Any]
) -> None:
    _, out = fleet_run
    assert kill_marker.exists()  # a worker did die in the middle of bag b
    m = json.loads((out / "metrics.json").read_text())
    b = [r for r in m["per_bag"] if r["name"] == "b"]
    assert len(b) == 1 and b[0]["sets"] == 5  # once, with all its sets
    assert m["sets"] == serial["sets"] and {k: m[k] for k in SCORE_KEYS} == serial["fleet"]
    assert len(list((out / "logs").glob("b*.log"))) == 1


def test_the_corrupt_bag_is_named_and_strict_fails(fleet_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    run, out = fleet_run
    assert run.returncode == 1, run.stderr  # --strict: one bag failed
    m = json.loads((out / "metrics.json").read_text())
    [failed] = m["failed"]
    assert failed["bag"].endswith("c_corrupt.mcap") and "truncated" in failed["reason"]
    page = (out / "report.html").read_text()
    assert "Failed bags (1)" in page and "c_corrupt.mcap" in page and 'href="a/report.html"' in page
    assert "c_corrupt.mcap" in run.stderr and "fleet: 2 of 3 bags" in run.stdout
    assert "truncated" in (out / "logs" / "c_corrupt.log").read_text()
    pictures = [p for w in m["worst_frames"] for p in w["pictures"]]
    assert all((out / p).stat().st_size > 1000 for p in pictures)


def test_the_eval_command_leaves_no_process_of_its_own_on_the_cluster(
    ray_gcs: str, fleet_run: tuple[subprocess.CompletedProcess[str], Path]
) -> None:
    _, out = fleet_run
    assert json.loads((out / "metrics.json").read_text())["ray"]["gcs_address"] == ray_gcs
    # its workers were killed when it ended (the runtime is the module's, checked when it stops)
    wait_for(lambda: not processes_mentioning("ray::BagWorker"), timeout=20, what="the eval workers to end")


def test_without_strict_a_failed_bag_does_not_fail_the_run_serially(
    bags: tuple[Path, Path, Path], serial: dict[str, Any], tmp_path: Path
) -> None:
    run = eval_cli(str(bags[2]), str(bags[1]), "--threads", "1", "-o", str(tmp_path))
    assert run.returncode == 0, run.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["evaluated"] == 1 and m["ray"] is None
    assert {k: m[k] for k in SCORE_KEYS} == serial["second_alone"]


def test_an_empty_or_missing_bag_list_or_an_unreachable_cluster_is_a_usage_error(
    bags: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    run = eval_cli(str(empty), "-o", str(tmp_path / "out"))
    assert run.returncode == 2 and "no bag in this folder" in run.stderr
    run = eval_cli(str(tmp_path / "absent.mcap"), str(tmp_path / "nothing_*.bag"), "-o", str(tmp_path / "out"))
    assert run.returncode == 2 and "absent.mcap" in run.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError):  # refused at once, before ray.init (which would wait forever)
        run_on_ray(
            bags[:2],
            ["a", "b"],
            FleetJob(setup_from_launch("sim"), TopicMap()),
            print,
            workers=2,
            address="127.0.0.1:1",
        )


def test_bags_are_found_in_folders_and_by_pattern_once_each(tmp_path: Path) -> None:
    (tmp_path / "x" / "ros2").mkdir(parents=True)
    (tmp_path / "x" / "ros2" / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    (tmp_path / "x" / "ros2" / "inner.mcap").write_bytes(b"")  # part of the ROS 2 bag, not a bag of its own
    for name in ("x/one.mcap", "x/two.bag", "y/one.mcap", "x/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = expand_bags([str(tmp_path / "x"), str(tmp_path / "*" / "one.mcap")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["x/one.mcap", "x/ros2", "x/two.bag", "y/one.mcap"]
    assert report_names(found) == ["x__one", "ros2", "two", "y__one"]
    for bad in ([], [str(tmp_path / "z*.mcap")], [str(tmp_path / "absent")]):
        with pytest.raises(UsageError):
            expand_bags(bad)
