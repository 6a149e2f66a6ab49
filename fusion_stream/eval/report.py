"""Run a model over cached simulated samples and score it (``fusion-stream eval-sim``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusion_stream.core import calib, msgs, render
from fusion_stream.core.msgs import Box3D
from fusion_stream.eval.metrics import FrameResult, detection_metrics, siren_accuracy
from fusion_stream.infer.open import CARD_SUFFIXES, open_detector, rig_warning
from fusion_stream.infer.pipeline import FusionPipeline
from fusion_stream.model.config import ModelConfig
from fusion_stream.model.dataset import SimDataset, boxes_from_array, members_of
from fusion_stream.model.decode import DEFAULT_THRESHOLD, in_range

EVAL_THRESHOLD = 0.05
"""Detections scored for AP go down to this score (the PR curve needs the low-confidence tail)."""


def evaluate_split(
    model: Path | str,
    data: SimDataset,
    *,
    backend: str | None = None,
    drop: Sequence[str] = (),
    on_frame: Callable[[], None] | None = None,
    render_dir: Path | str | None = None,
    render_count: int = 4,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Metrics of ``model`` (weights, a model card or a built-in name) on every sample of
    ``data`` (ground truth limited to the network's grid), with the modalities in ``drop``
    withheld. ``backend``: None is torch for weights (the reference), ONNX Runtime for a card.
    With ``render_dir``, ``render_count`` frames spread over the split are drawn there (camera with
    detections; bird's-eye view with LiDAR, radar, detections and the ground truth in grey)."""
    spec = str(model)
    if backend is None:
        card = spec == "cluster" or Path(spec).suffix in CARD_SUFFIXES
        backend = "auto" if card else "onnxruntime" if precision == "int8" else "torch"
    rig = calib.load(data.rig_path)
    device = "cuda" if backend == "tensorrt" else "cpu"
    detector = open_detector(spec, rig, backend=backend, device=device, threshold=EVAL_THRESHOLD, precision=precision)
    own = isinstance(detector, FusionPipeline)
    cfg = detector.backend.config if isinstance(detector, FusionPipeline) else ModelConfig()
    detector.warm_up()  # compilation and first-run allocation are not a frame's inference time
    camera = next(iter(rig.of_type("camera")), None)
    frames = []
    times = []
    for i in range(len(data)):
        sample = data.load(i)
        members = {k: v for k, v in members_of(sample, rig).items() if k not in drop}
        stamp = max((m.stamp_ns for ms in members.values() for m in ms), default=0)
        frame = msgs.SyncedFrame(stamp_ns=stamp, frame_id=rig.frame_id, members=members, missing=tuple(drop))
        det, stage = detector.process(frame)
        times.append(stage.inference_ms / 1e3)
        gt = [b for b in boxes_from_array(sample["boxes"]) if in_range(b, cfg)]
        found = det.boxes if own else tuple(b for b in det.boxes if in_range(b, cfg))
        frames.append(FrameResult(gt, found))
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
            "backend": detector.backend.name if isinstance(detector, FusionPipeline) else detector.name,
            "dropped": list(drop),
            "inference_ms": {
                "p50": float(np.percentile(times, 50) * 1e3),
                "p99": float(np.percentile(times, 99) * 1e3),
            },
        }
    )
    warning = rig_warning(spec, rig)
    if warning:
        result["model_warning"] = warning
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
