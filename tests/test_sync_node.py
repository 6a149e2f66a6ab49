"""The sync node between real sensor processes: full sets, partial sets while a sensor is dead,
full sets again when it returns."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from fusion_stream.core import msgs
from fusion_stream.errors import LaunchError
from fusion_stream.graph import launch
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Publisher, Subscriber

from .conftest import Procs, collect_frames, wait_for

SYNC_YAML = """
policy: reference
deadline_ms: 150
inputs:
  - {name: lidar, topic: /lidar/top/points, mode: reference}
  - {name: camera, topic: /camera/front/image, mode: nearest, slop_ms: 25}
  - {name: audio, topic: /audio/array/chunk, mode: window, window_ms: 100}
"""


def start_camera(procs: Procs) -> subprocess.Popen[str]:
    return procs.python(
        "-m",
        "fusion_stream.nodes.pattern",
        "--name",
        "camera",
        "-p",
        "kind:=image",
        "-p",
        "rate_hz:=30",
        "-p",
        "width:=64",
        "-p",
        "height:=48",
        "-p",
        "topic:=/camera/front/image",
    )


def test_sync_node_partial_sets_while_a_sensor_is_dead(procs: Procs, registry: Registry, runtime_dir: Path) -> None:
    cfg = runtime_dir / "sync.yaml"
    cfg.write_text(SYNC_YAML)
    procs.python(
        "-m",
        "fusion_stream.nodes.pattern",
        "--name",
        "lidar",
        "-p",
        "kind:=points",
        "-p",
        "points:=2000",
        "-p",
        "rate_hz:=10",
        "-p",
        "topic:=/lidar/top/points",
    )
    camera = start_camera(procs)
    procs.python(
        "-m",
        "fusion_stream.nodes.pattern",
        "--name",
        "audio",
        "-p",
        "kind:=audio",
        "-p",
        "rate_hz:=50",
        "-p",
        "topic:=/audio/array/chunk",
    )
    sync = procs.python("-m", "fusion_stream.nodes.sync", "--params-file", str(cfg))
    with Subscriber("/sync/frames", registry=registry, queue_size=100) as sub:
        sub.wait_for_publishers(20.0)

        def complete_sets() -> bool:
            return sum(1 for f in collect_frames(sub, 0.5) if not f.missing) >= 3

        wait_for(complete_sets, 20.0, "complete synchronized sets")
        frames = collect_frames(sub, 1.0)
        assert len(frames) >= 7, "expected ~10 sets per second"
        full = [f for f in frames if not f.missing]
        assert len(full) >= len(frames) - 1
        f = full[-1]
        lidar, cam = f.first("lidar"), f.first("camera")
        assert isinstance(lidar, msgs.PointCloud) and isinstance(cam, msgs.Image)
        assert abs(cam.stamp_ns - lidar.stamp_ns) <= 25_000_000
        audio = f.members["audio"]
        assert len(audio) >= 4 and all(isinstance(a, msgs.AudioChunk) for a in audio)
        firsts = [a.first_sample for a in audio if isinstance(a, msgs.AudioChunk)]
        assert firsts == sorted(firsts)

        camera.send_signal(signal.SIGKILL)
        camera.wait(timeout=5)
        time.sleep(0.3)
        dead = collect_frames(sub, 1.5)
        assert len(dead) >= 10, "the synchronizer must keep emitting without the camera"
        assert all(f.missing == ("camera",) for f in dead[3:]), [f.missing for f in dead]
        assert all(isinstance(f.first("lidar"), msgs.PointCloud) for f in dead)

        start_camera(procs)
        wait_for(complete_sets, 20.0, "complete sets after the camera came back")
    assert sync.poll() is None, "sync node died"
    sync.send_signal(signal.SIGTERM)
    assert sync.wait(timeout=5) == 0


def test_sync_node_rejects_a_bad_configuration(procs: Procs, runtime_dir: Path) -> None:
    cfg = runtime_dir / "bad.yaml"
    cfg.write_text("inputs:\n  - {name: a, topic: /a, mode: nearest}\n  - {name: b, topic: /b, mode: nearest}\n")
    p = procs.python("-m", "fusion_stream.nodes.sync", "--params-file", str(cfg))
    _, err = p.communicate(timeout=20)
    assert p.returncode == 2
    assert "reference" in err and "inputs" in err


def test_messages_of_a_wrong_type_on_sync_inputs_are_logged_once_and_counted(
    procs: Procs, registry: Registry, runtime_dir: Path
) -> None:
    """Another program publishes its own type on the sync node's input topics: the node logs one
    line per input and type (no traceback per message), counts them in /diagnostics and goes on."""
    cfg = runtime_dir / "sync.yaml"
    cfg.write_text(SYNC_YAML)
    sync = procs.python("-m", "fusion_stream.nodes.sync", "--name", "sync", "--params-file", str(cfg))
    intruders = [
        Publisher("/lidar/top/points", registry=registry, node="intruder", msg_type=msgs.Diagnostics),
        Publisher("/camera/front/image", registry=registry, node="intruder", msg_type=msgs.ClockTick),
    ]
    wrong: dict[str, msgs.ScalarValue] = {}
    statuses: list[str] = []  # a report's status is set by the report before it
    try:
        with Subscriber("/diagnostics", registry=registry, queue_size=100) as diags:
            deadline = time.monotonic() + 20.0
            while not (isinstance(n := wrong.get("sync.in.lidar.wrong_type"), int) and n >= 30 and statuses):
                assert time.monotonic() < deadline, f"no wrong types counted in 20 s: {wrong}"
                for i in range(10):
                    intruders[0].publish(msgs.Diagnostics(stamp_ns=i + 1, node="x", level=msgs.Level.OK, message=""))
                    intruders[1].publish(msgs.ClockTick(stamp_ns=i + 1))
                    time.sleep(0.01)
                while (d := diags.recv(timeout=0.05)) is not None:
                    if isinstance(d, msgs.Diagnostics) and d.node == "sync":
                        wrong = dict(d.values)
                        if d.level == msgs.Level.WARN and "of a wrong type on" in d.message:
                            statuses.append(d.message)
        assert isinstance(c := wrong.get("sync.in.camera.wrong_type"), int) and c > 0, wrong
        assert wrong["errors"] == 0, wrong
    finally:
        for p in intruders:
            p.close()
    assert sync.poll() is None, "sync node died"
    sync.send_signal(signal.SIGTERM)
    _, err = sync.communicate(timeout=10)
    assert sync.returncode == 0, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.count("input lidar (/lidar/top/points): dropping Diagnostics messages") == 1, err[-3000:]
    assert err.count("input camera (/camera/front/image): dropping ClockTick messages") == 1, err[-3000:]


def test_launch_checker_refuses_a_misspelt_or_bad_sync_input(tmp_path: Path) -> None:
    """``slop: 20`` for ``slop_ms`` was silently ignored (the default 50 ms applied); now each
    input is checked as the file is read, with its place in the file."""
    graph = tmp_path / "g.yaml"
    template = (
        "graph: t\nnodes:\n"
        "  - {name: lidar, type: pattern, params: {kind: points, topic: /lidar/top/points}}\n"
        "  - {name: camera, type: pattern, params: {kind: image, topic: /camera/front/image}}\n"
        "  - name: sync\n    type: sync\n    params:\n      inputs:\n"
        "        - {name: lidar, topic: /lidar/top/points, mode: reference}\n"
        "        - {name: camera, topic: /camera/front/image, INPUT}\n"
    )
    graph.write_text(template.replace("INPUT", "slop_ms: 20"))
    assert launch.load(graph).node("sync").topics.inputs == ("/lidar/top/points", "/camera/front/image")
    for bad, reason in (
        ("slop: 20", "unknown field `slop`"),
        ("mode: closest", "mode must be one of"),
        ("period_ms: .nan", "period_ms must be a finite number >= 0"),
    ):
        graph.write_text(template.replace("INPUT", bad))
        with pytest.raises(LaunchError) as err:
            launch.load(graph)
        assert "nodes[2] (sync).params.inputs[1]" in str(err.value) and reason in str(err.value), str(err.value)
