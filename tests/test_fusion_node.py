"""The fusion node as a real process: synced sets of simulated data in, detections out; newest
set wins; partial sets still run; a bad weights file exits with a clear message."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from fusion_stream import calib, msgs
from fusion_stream.infer.backends import onnx_for
from fusion_stream.model import dataset
from fusion_stream.registry import Registry
from fusion_stream.transport import Publisher, Subscriber
from nodes.fusion import resolve_device

from .conftest import Procs, wait_for

RIG = calib.load(calib.resolve_path("calib/sim_rig.yaml"))
NO_GPU = resolve_device("auto") == "cpu"


@pytest.mark.skipif(not NO_GPU, reason="with an NVIDIA driver, device auto asks torch for CUDA")
def test_fusion_node_starts_from_the_cached_export_without_torch(procs: Procs, registry: Registry) -> None:
    """What a respawn costs: with the ONNX export cached, the node as launch/sim.yaml runs it
    (backend and device auto) loads and warms the model without importing torch (seconds), and
    appears on /detections ready: the first set it gets is answered."""
    onnx_for(calib.resolve_path("weights/fusion_sim.pt"))  # what the first start of a graph leaves
    members = dataset.members_of(dataset.simulate(dataset.SampleSpec(seed=7, t=3.0, actors=12), RIG), RIG)
    node = procs.python("-m", "nodes.fusion", "--name", "fusion")
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
    procs.python("-m", "nodes.fusion", "--name", "fusion", "-p", "backend:=onnxruntime")
    with (
        Publisher("/sync/frames", registry=registry) as pub,
        Subscriber("/detections", registry=registry, timeout=30.0) as dets,
        Subscriber("/diagnostics", registry=registry, timeout=5.0) as diag,
    ):
        dets.wait_for_publishers(60.0)
        # first a set the node cannot use (a plain cloud on the radar input): skipped and counted
        radar = members["radar"][0]
        bad_radar = msgs.PointCloud(
            stamp_ns=1, frame_id="radar_front", data=radar.data[:, :4], fields=("x", "y", "z", "intensity")
        )
        pub.publish(msgs.SyncedFrame(stamp_ns=1, frame_id="base_link", members={**members, "radar": (bad_radar,)}))
        time.sleep(0.5)
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
        [sys.executable, "-m", "nodes.fusion", "--name", "fusion", "-p", "weights:=/nonexistent/w.pt"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "/nonexistent/w.pt" in proc.stderr and "weights" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "nodes.fusion", "--name", "fusion", "-p", "threshold:=1.5"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "threshold" in proc.stderr
