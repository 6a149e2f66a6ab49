"""Run a model over cached simulated samples and score it (``fusion-stream eval-sim``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusion_stream.core import calib, render
from fusion_stream.core.msgs import Box3D
from fusion_stream.eval.metrics import FrameResult, detection_metrics, siren_accuracy
from fusion_stream.infer.backends import load
from fusion_stream.infer.pipeline import decode_frame
from fusion_stream.model import preprocess
from fusion_stream.model.dataset import SimDataset, boxes_from_array, members_of
from fusion_stream.model.decode import DEFAULT_THRESHOLD
from fusion_stream.model.targets import in_range

EVAL_THRESHOLD = 0.05
"""Detections scored for AP go down to this score (the PR curve needs the low-confidence tail)."""


def evaluate_split(
    weights: Path | str,
    data: SimDataset,
    *,
    backend: str = "torch",
    drop: Sequence[str] = (),
    on_frame: Callable[[], None] | None = None,
    render_dir: Path | str | None = None,
    render_count: int = 4,
) -> dict[str, Any]:
    """Metrics of ``weights`` on every sample of ``data`` (ground truth limited to the model's
    grid), with the modalities in ``drop`` withheld. With ``render_dir``, ``render_count`` frames
    spread over the split are drawn there (camera with detections; bird's-eye view with LiDAR,
    radar, detections and the ground truth in grey)."""
    model = load(weights, backend=backend, device="cpu" if backend != "tensorrt" else "cuda")
    cfg = model.config
    rig = calib.load(data.rig_path)
    geometry = preprocess.RigGeometry.from_rig(rig)
    camera = next(iter(rig.of_type("camera")), None)
    frames = []
    times = []
    for i in range(len(data)):
        sample = data.load(i)
        members = {k: v for k, v in members_of(sample, rig).items() if k not in drop}
        inputs = preprocess.batch([preprocess.prepare(members, geometry, cfg)])
        t0 = time.perf_counter()
        out = model.run(inputs)
        times.append(time.perf_counter() - t0)
        gt = [b for b in boxes_from_array(sample["boxes"]) if in_range(b, cfg)]
        frames.append(FrameResult(gt, decode_frame(out, inputs, geometry, cfg, EVAL_THRESHOLD)))
        if render_dir is not None and i % max(1, len(data) // max(render_count, 1)) == 0:
            shown = [d for d in frames[-1].detections if d.score >= DEFAULT_THRESHOLD]
            render_frame(Path(render_dir) / f"frame_{i:04d}", members, rig, gt, shown)
        if on_frame is not None:
            on_frame()
    result = detection_metrics(frames, cfg.classes)
    if camera is not None:
        # where the camera looks (and the radar too): what fusion can add over LiDAR at all
        seen = [FrameResult(in_view(f.gt, camera), in_view(f.detections, camera)) for f in frames]
        result["camera_view"] = detection_metrics(seen, cfg.classes)
    acc, n, sirens = siren_accuracy([FrameResult(f.gt, [d for d in f.detections if d.score >= 0.3]) for f in frames])
    result.update(
        {
            "siren_accuracy": acc,
            "siren_matches": n,
            "siren_vehicles": sirens,
            "frames": len(frames),
            "backend": model.name,
            "dropped": list(drop),
            "inference_ms": {
                "p50": float(np.percentile(times, 50) * 1e3),
                "p99": float(np.percentile(times, 99) * 1e3),
            },
        }
    )
    return result


def in_view(boxes: Sequence[Box3D], camera: calib.Sensor) -> list[Box3D]:
    """The boxes whose centre projects into ``camera``'s image."""
    if not boxes:
        return []
    _, visible = camera.project(np.array([b.center for b in boxes], np.float64))
    return [b for b, v in zip(boxes, visible, strict=True) if v]


def render_frame(
    stem: Path, members: dict[str, Any], rig: calib.Rig, gt: Sequence[Box3D], detections: Sequence[Box3D]
) -> None:
    """``<stem>_camera.png`` (when the set and the rig have a camera) and ``<stem>_bev.png``."""

    def sensor(kind: calib.SensorType) -> calib.Sensor | None:
        found = rig.of_type(kind)
        return found[0] if found else None

    lidar_sensor, camera, radar_sensor = sensor("lidar"), sensor("camera"), sensor("radar")
    cloud = members["lidar"][0] if members.get("lidar") else None
    points = None
    if cloud is not None:
        points = cloud.data[:, :3] if lidar_sensor is None else lidar_sensor.extrinsics.apply(cloud.data[:, :3])
    if members.get("camera") and camera is not None:
        image = render.camera_overlay(members["camera"][0].data, camera, None, detections)
        render.save_png(image, stem.with_name(stem.name + "_camera.png"))
    radar_xyz = radar_v = None
    if members.get("radar") and radar_sensor is not None:
        scan = members["radar"][0]
        radar_xyz = radar_sensor.extrinsics.apply(scan.data[:, :3])
        radar_v = scan.data[:, scan.fields.index("radial_velocity")]
    bev = render.bird_eye_view(points, detections, radar_xyz, radar_v, ground_truth=gt, extent_m=35.0)
    render.save_png(bev, stem.with_name(stem.name + "_bev.png"))
