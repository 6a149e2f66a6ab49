"""launch/kitti.yaml end to end on the real KITTI frames: camera, LiDAR and labels as live
streams, synced and fused, recorded to MCAP and scored by `fusion-stream eval`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fusion_stream.bag.mapping import messages
from fusion_stream.bag.reader import Bag
from fusion_stream.core import msgs
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber

from .conftest import ROOT, Procs, wait_for

KITTI = ROOT.parent / "shared" / "data" / "kitti"
pytestmark = pytest.mark.skipif(not KITTI.exists(), reason="../shared/data/kitti not present")


def test_kitti_launch_streams_records_and_evaluates(procs: Procs, runtime_dir: Path, tmp_path: Path) -> None:
    rig = tmp_path / "kitti_rig.yaml"
    cli = [sys.executable, "-m", "fusion_stream.cli"]
    convert = [*cli, "calib", "from-kitti", str(KITTI / "000000" / "calib.txt"), "-o", str(rig)]
    subprocess.run(convert, cwd=ROOT, check=True, capture_output=True)
    launch = procs.cli("launch", "launch/kitti.yaml", f"kitti:={KITTI}", f"calib:={rig}", "rate:=5")
    registry = Registry(runtime_dir, "kitti")
    bag = tmp_path / "kitti.mcap"
    with Subscriber(["/sync/frames", "/detections"], registry=registry, queue_size=100) as sub:
        wait_for(lambda: registry.lookup("/detections") and registry.lookup("/sync/frames"), 60.0, "the graph")
        frames: list[msgs.SyncedFrame] = []

        def complete_sets() -> bool:
            if isinstance(m := sub.recv(timeout=0.2), msgs.SyncedFrame) and not m.missing:
                frames.append(m)
            return len(frames) >= 3

        wait_for(complete_sets, 60.0, "complete synced sets of image + sweep")
        # the image and the sweep of a set are the same KITTI frame, stamped alike
        for f in frames:
            lidar, camera = f.first("lidar"), f.first("camera")
            assert lidar is not None and camera is not None and lidar.stamp_ns == camera.stamp_ns
            assert isinstance(camera, msgs.Image) and camera.data.shape[0] in (370, 375)
            assert isinstance(lidar, msgs.PointCloud) and len(lidar) in (115384, 120268, 126891)
        rec = procs.cli("--graph", "kitti", "record", "--all", "-x", "/diagnostics", "-o", str(bag), "--duration", "4")
        assert rec.wait(timeout=60) == 0, rec.communicate()[1][-2000:]
    launch.send_signal(signal.SIGINT)
    out, _ = launch.communicate(timeout=30)
    assert launch.returncode == 0, out[-3000:]

    with Bag(bag) as b:
        counts = {t.topic: t.count for t in b.info().topics}
        labels = [c.message for c in messages(b, topics=["/ground_truth/objects"])]
    assert counts["/lidar/top/points"] >= 10 and counts["/camera/front/image"] >= 10 and labels
    kinds = {tuple(sorted(box.label for box in d.boxes)) for d in labels}  # type: ignore[union-attr]
    assert kinds <= {("pedestrian",), ("car", "cyclist", "truck"), ("car",)}  # the three frames' labels

    evaluate = [*cli, "eval", str(bag), "--launch", "launch/kitti.yaml", f"calib:={rig}", "-o", str(tmp_path / "ev")]
    r = subprocess.run(evaluate, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["sets"] >= 10 and m["frames_with_ground_truth"] >= 10
    # scored against the KITTI labels within the model's ±32 m grid (the pedestrian of frame 000000)
    assert m["nuscenes"]["per_class"]["pedestrian"]["gt"] > 0
