"""The scores a set of frames gets, whether the frames come from one bag or from a fleet of them:
one function, so a fleet's numbers are by construction the ones a serial run over the same frames
gives (pure functions over boxes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fusion_stream.eval import kitti
from fusion_stream.eval.metrics import FrameResult, detection_metrics, siren_accuracy
from fusion_stream.model.decode import DEFAULT_THRESHOLD


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and max of ``values``; empty for none."""
    if not values:
        return {}
    a = np.asarray(values)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


def ground_truth_scores(scored: Sequence[FrameResult], classes: Sequence[str]) -> dict[str, Any]:
    """nuScenes-style metrics, KITTI BEV and 3-D AP|R40 and the siren accuracy over ``scored``
    (frames in a fixed order: greedy matching breaks score ties by frame order)."""
    confident = [FrameResult(f.gt, [d for d in f.detections if d.score >= DEFAULT_THRESHOLD]) for f in scored]
    acc, n, sirens = siren_accuracy(confident)
    return {
        "nuscenes": detection_metrics(scored, classes),
        "kitti_bev": kitti.kitti_metrics(scored, classes, kind="bev"),
        "kitti_3d": kitti.kitti_metrics(scored, classes, kind="3d"),
        "siren": {"accuracy": acc, "matches": n, "emergency_vehicles": sirens},
    }
