"""Benchmark: the model-free LiDAR baseline (``cluster``) next to the shipped network.

Speed: ms per sweep (p50 / p99, one core) on simulated 32-beam sweeps and the real KITTI 64-beam
frames, for the baseline and for the sim-trained network on ONNX Runtime fed the same LiDAR
sweep only. Quality: KITTI BEV AP|R40 on the KITTI frames (boxes whose centre is in the camera
image, as ``eval`` scores them: KITTI labels only what the camera sees), and nuScenes-style mAP /
NDS on simulated frames (the network with the LiDAR only and with its whole synced set).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/cluster.py      # one core: 6 sim frames, KITTI if present
    python bench/cluster.py --frames 12 --repeats 5
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fusion_stream.core import calib, kitti, msgs, resources
from fusion_stream.eval.kitti import kitti_metrics
from fusion_stream.eval.metrics import FrameResult, detection_metrics
from fusion_stream.eval.report import EVAL_THRESHOLD, in_view
from fusion_stream.infer import backends
from fusion_stream.infer.cluster import ClusterDetector
from fusion_stream.infer.detector import Detector
from fusion_stream.infer.pipeline import FusionPipeline
from fusion_stream.model import dataset
from fusion_stream.model.config import CLASSES, DEFAULT_WEIGHTS

console = Console(width=150)
KITTI = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kitti"


def lidar_only(frame: msgs.SyncedFrame) -> msgs.SyncedFrame:
    return msgs.SyncedFrame(stamp_ns=frame.stamp_ns, frame_id=frame.frame_id, members={"lidar": frame.members["lidar"]})


def sim_frames(n: int, rig: calib.Rig) -> list[tuple[msgs.SyncedFrame, tuple[msgs.Box3D, ...]]]:
    """Held-out simulated synced sets (as bench/infer.py) and their ground truth."""
    out = []
    for spec in dataset.plan(range(100, 100 + n), 1):
        sample = dataset.simulate(spec, rig)
        members = dataset.members_of(sample, rig)
        frame = msgs.SyncedFrame(stamp_ns=round(spec.t * 1e9), frame_id="base_link", members=members)
        out.append((frame, dataset.boxes_from_array(sample["boxes"])))
    return out


def timed(
    detector: Detector, frames: Sequence[msgs.SyncedFrame], repeats: int
) -> tuple[list[float], list[list[msgs.Box3D]]]:
    """Per-sweep ms over ``repeats`` passes, and the last pass's detections."""
    detector.warm_up()
    ms: list[float] = []
    found: list[list[msgs.Box3D]] = []
    for _ in range(repeats):
        found = []
        for f in frames:
            det, times = detector.process(f)
            ms.append(times.total_ms)
            found.append(list(det.boxes))
    return ms, found


def pct(ms: list[float]) -> str:
    return f"{np.percentile(ms, 50):.1f} / {np.percentile(ms, 99):.1f}"


def network(rig: calib.Rig) -> FusionPipeline:
    backend = backends.load(DEFAULT_WEIGHTS, backend="onnxruntime", device="cpu", threads=1)
    return FusionPipeline(backend, rig, threshold=EVAL_THRESHOLD)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=6, help="simulated frames")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    speed = Table("data", "points / sweep", "cluster ms p50 / p99", "network (onnxruntime, 1 thread) ms p50 / p99")
    quality = Table("data", "metric", "cluster", "network, LiDAR only", "network, whole set")

    rig = calib.load(resources.resolve("calib/sim_rig.yaml"))
    sim = sim_frames(args.frames, rig)
    lidar_sets = [lidar_only(f) for f, _ in sim]
    cluster: Detector = ClusterDetector(rig)
    c_ms, c_found = timed(cluster, lidar_sets, args.repeats)
    n_ms, n_found = timed(network(rig), lidar_sets, args.repeats)
    _, w_found = timed(network(rig), [f for f, _ in sim], 1)
    points = np.mean([len(f.members["lidar"][0].data) for f in lidar_sets])  # type: ignore[union-attr]
    speed.add_row(f"sim 32-beam ({len(sim)} sweeps × {args.repeats})", f"{points:.0f}", pct(c_ms), pct(n_ms))
    scores = [
        detection_metrics([FrameResult(gt, d) for (_, gt), d in zip(sim, found, strict=True)], CLASSES)
        for found in (c_found, n_found, w_found)
    ]
    for key in ("mAP", "NDS"):
        quality.add_row(f"sim ({len(sim)} frames)", key, *(f"{float(s[key]):.3f}" for s in scores))  # type: ignore[arg-type]

    if KITTI.exists():
        folder = kitti.KittiFolder(KITTI)
        frames = [folder.load(i) for i in range(len(folder))]
        ck_ms: list[float] = []
        nk_ms: list[float] = []
        results: dict[str, list[FrameResult]] = {"cluster": [], "network": []}
        for i, fr in enumerate(frames):
            synced = msgs.SyncedFrame(stamp_ns=i, frame_id="base_link", members={"lidar": fr.members["lidar"]})
            camera = fr.rig["camera_left"]
            for name, detector, sink in (
                ("cluster", ClusterDetector(fr.rig), ck_ms),
                ("network", network(fr.rig), nk_ms),
            ):
                ms, found = timed(detector, [synced], args.repeats)
                sink.extend(ms)
                results[name].append(FrameResult(in_view(fr.boxes, camera), in_view(found[0], camera)))
        points = np.mean([len(fr.members["lidar"][0].data) for fr in frames])  # type: ignore[union-attr]
        speed.add_row(f"KITTI 64-beam ({len(frames)} sweeps × {args.repeats})", f"{points:.0f}", pct(ck_ms), pct(nk_ms))
        k = {name: kitti_metrics(r, CLASSES, "bev") for name, r in results.items()}
        for cls in ("car", "pedestrian"):
            row = [k[name]["per_class"][cls] for name in ("cluster", "network")]  # type: ignore[index]
            quality.add_row(
                f"KITTI ({len(frames)} frames, {row[0]['gt']} {cls})",
                f"BEV AP|R40 {cls} (IoU {row[0]['iou_threshold']})",
                f"{row[0]['ap']:.3f} ({row[0]['tp']} TP)",
                f"{row[1]['ap']:.3f} ({row[1]['tp']} TP)",
                "-",
            )
    else:
        console.print(f"[dim]{KITTI} not present: KITTI rows left out[/dim]")
    console.print(speed)
    console.print(quality)


if __name__ == "__main__":
    main()
