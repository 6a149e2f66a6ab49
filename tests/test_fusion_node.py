"""The fusion node as a real process: synced sets of simulated data in, detections out; newest
set wins; partial sets still run; a bad weights file exits with a clear message."""

from __future__ import annotations

import subprocess
import sys
import time

from fusion_stream import calib, msgs
from fusion_stream.model import dataset
from fusion_stream.registry import Registry
from fusion_stream.transport import Publisher, Subscriber

from .conftest import Procs, wait_for

RIG = calib.load(calib.resolve_path("calib/sim_rig.yaml"))


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
