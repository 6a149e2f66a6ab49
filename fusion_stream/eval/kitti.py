"""KITTI-style detection metrics (pure functions over boxes).

A detection is a true positive when its rotated-box IoU with an unmatched ground truth of the
same frame and class reaches the class threshold (0.7 for vehicles, 0.5 for pedestrians and
cyclists, KITTI's moderate setting). IoU is either bird's-eye-view (rotated rectangles in the
x–y plane) or 3-D (BEV intersection times vertical overlap). AP is KITTI's AP|R40: interpolated
precision averaged over the 40 recall points 1/40 … 1, which unlike the old 11-point AP does not
reward a single detection at recall 0.

Simplification: no difficulty levels (KITTI splits ground truth by 2-D height, occlusion and
truncation, which ``Box3D`` does not carry) and no "don't care" regions; every ground truth of
the class counts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from fusion_stream.core.geometry import footprint
from fusion_stream.core.msgs import Box3D
from fusion_stream.errors import ParamError
from fusion_stream.eval.metrics import FrameResult

IOU_THRESHOLDS: dict[str, float] = {"car": 0.7, "truck": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
N_RECALL_POINTS = 40
IoUKind = Literal["bev", "3d"]

_Point = tuple[float, float]


def _clip(subject: list[_Point], clip: list[_Point]) -> list[_Point]:
    """Sutherland–Hodgman: the part of ``subject`` inside the convex, counter-clockwise ``clip``."""
    out = subject
    n = len(clip)
    for i in range(n):
        if not out:
            break
        ex0, ey0 = clip[i]
        ex1, ey1 = clip[(i + 1) % n]
        dx, dy = ex1 - ex0, ey1 - ey0
        pts = out
        out = []
        px, py = pts[-1]
        sp = dx * (py - ey0) - dy * (px - ex0)  # > 0: left of the edge, i.e. inside
        for qx, qy in pts:
            sq = dx * (qy - ey0) - dy * (qx - ex0)
            if (sp >= 0) != (sq >= 0):  # the segment p→q crosses the edge line; sp ≠ sq here
                t = sp / (sp - sq)
                out.append((px + t * (qx - px), py + t * (qy - py)))
            if sq >= 0:
                out.append((qx, qy))
            px, py, sp = qx, qy, sq
    return out


def _area(poly: Sequence[_Point]) -> float:
    """Shoelace area (absolute, so orientation does not matter)."""
    n = len(poly)
    if n < 3:
        return 0.0
    s = 0.0
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        s += x0 * y1 - x1 * y0
    return abs(s) / 2


def _z_overlap(a: Box3D, b: Box3D) -> float:
    lo = max(a.center[2] - a.size[2] / 2, b.center[2] - b.size[2] / 2)
    hi = min(a.center[2] + a.size[2] / 2, b.center[2] + b.size[2] / 2)
    return max(0.0, hi - lo)


def _iou(a: Box3D, b: Box3D, kind: IoUKind, ca: list[_Point] | None = None, cb: list[_Point] | None = None) -> float:
    """IoU from (optionally precomputed) footprint corners; 0 when the union is empty."""
    if kind == "3d":
        dz = _z_overlap(a, b)
        if dz <= 0.0:
            return 0.0
    inter = _area(_clip(ca if ca is not None else footprint(a), cb if cb is not None else footprint(b)))
    if kind == "bev":
        union = a.size[0] * a.size[1] + b.size[0] * b.size[1] - inter
    else:
        inter *= dz
        union = float(np.prod(a.size)) + float(np.prod(b.size)) - inter
    return inter / union if union > 0.0 else 0.0


def bev_iou(a: Box3D, b: Box3D) -> float:
    """IoU of the two rotated footprints in the x–y plane (exact polygon intersection)."""
    return _iou(a, b, "bev")


def iou_3d(a: Box3D, b: Box3D) -> float:
    """IoU of the two boxes (yaw about +z only): BEV intersection × vertical overlap over union."""
    return _iou(a, b, "3d")


def _check_kind(kind: str) -> None:
    if kind not in ("bev", "3d"):
        raise ParamError("kind", f"must be 'bev' or '3d', got {kind!r}")


def _iou_matrix(dets: Sequence[Box3D], gts: Sequence[Box3D], kind: IoUKind, threshold: float) -> np.ndarray:
    """IoU of every detection against every ground truth, exact only where it could reach
    ``threshold``: pairs whose centres are further apart than the sum of half-diagonals cannot
    overlap, and IoU ≤ smaller area (volume) / larger one, so those are left at 0."""
    out = np.zeros((len(dets), len(gts)))
    if not dets or not gts:
        return out
    dc = np.array([d.center for d in dets], dtype=np.float64)
    gc = np.array([g.center for g in gts], dtype=np.float64)
    ds = np.array([d.size for d in dets], dtype=np.float64)
    gs = np.array([g.size for g in gts], dtype=np.float64)
    d_half = 0.5 * np.hypot(ds[:, 0], ds[:, 1])
    g_half = 0.5 * np.hypot(gs[:, 0], gs[:, 1])
    dist = np.hypot(dc[:, None, 0] - gc[None, :, 0], dc[:, None, 1] - gc[None, :, 1])
    possible = dist < d_half[:, None] + g_half[None, :]
    if kind == "bev":
        d_size, g_size = ds[:, 0] * ds[:, 1], gs[:, 0] * gs[:, 1]
    else:
        d_size, g_size = np.prod(ds, axis=1), np.prod(gs, axis=1)
        dz = np.minimum(dc[:, None, 2] + ds[:, None, 2] / 2, gc[None, :, 2] + gs[None, :, 2] / 2) - np.maximum(
            dc[:, None, 2] - ds[:, None, 2] / 2, gc[None, :, 2] - gs[None, :, 2] / 2
        )
        possible &= dz > 0
    small = np.minimum(d_size[:, None], g_size[None, :])
    large = np.maximum(d_size[:, None], g_size[None, :])
    possible &= small >= threshold * large - 1e-12 * large
    rows, cols = np.nonzero(possible)
    if rows.size:
        d_corners = {int(i): footprint(dets[i]) for i in np.unique(rows)}
        g_corners = {int(j): footprint(gts[j]) for j in np.unique(cols)}
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            out[i, j] = _iou(dets[i], gts[j], kind, d_corners[i], g_corners[j])
    return out


def match_class(
    frames: Sequence[FrameResult], cls: str, threshold: float, kind: IoUKind = "bev"
) -> tuple[np.ndarray, np.ndarray, int]:
    """Greedy KITTI matching of one class over all frames.

    Detections go by descending score (ties: frame index, then detection index) and each takes
    the unmatched ground truth of its frame with the highest IoU ≥ ``threshold``. Frames are
    independent, so each is matched on its own and the results merged into the global order.
    Returns the scores and true-positive flags in that order, and the number of ground truths."""
    _check_kind(kind)
    n_gt = 0
    keys: list[tuple[float, int, int]] = []
    flags: list[bool] = []
    for f_i, frame in enumerate(frames):
        gts = [g for g in frame.gt if g.label == cls]
        n_gt += len(gts)
        dets = [(d_i, d) for d_i, d in enumerate(frame.detections) if d.label == cls]
        if not dets:
            continue
        dets.sort(key=lambda item: (-item[1].score, item[0]))
        ious = _iou_matrix([d for _, d in dets], gts, kind, threshold)
        taken = np.zeros(len(gts), dtype=bool)
        for row, (d_i, d) in enumerate(dets):
            tp = False
            if gts:
                cand = np.where(taken, -1.0, ious[row])
                best = int(np.argmax(cand))  # first of equal overlaps: lowest ground-truth index
                if cand[best] >= threshold and cand[best] > 0.0:
                    taken[best] = tp = True
            keys.append((-d.score, f_i, d_i))
            flags.append(tp)
    order = sorted(range(len(keys)), key=keys.__getitem__)
    scores = np.array([-keys[i][0] for i in order], dtype=np.float64)
    tp_flags = np.array([flags[i] for i in order], dtype=bool)
    return scores, tp_flags, n_gt


def average_precision_r40(tp_flags_sorted_by_score: Sequence[bool] | np.ndarray, n_gt: int) -> float:
    """KITTI AP|R40: the best precision at recall ≥ r, averaged over r = 1/40, 2/40, …, 1
    (0 where that recall is never reached). NaN without ground truth, 0 without detections."""
    if n_gt == 0:
        return float("nan")
    flags = np.asarray(tp_flags_sorted_by_score, dtype=bool)
    if flags.size == 0:
        return 0.0
    tp = np.cumsum(flags, dtype=np.float64)
    precision = tp / np.arange(1, flags.size + 1, dtype=np.float64)
    recall = tp / n_gt
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.arange(1, N_RECALL_POINTS + 1, dtype=np.float64) / N_RECALL_POINTS
    # both sides are correctly rounded quotients of integers, so equal recalls compare equal
    idx = np.searchsorted(recall, points, side="left")
    interp = np.where(idx < recall.size, envelope[np.minimum(idx, recall.size - 1)], 0.0)
    return float(np.mean(interp))


def _threshold(cls: str, iou_thresholds: Mapping[str, float]) -> float:
    try:
        return float(iou_thresholds[cls])
    except KeyError:
        raise ParamError("iou_thresholds", f"no IoU threshold for class {cls!r}; pass one") from None


def precision_recall_curve(
    frames: Sequence[FrameResult],
    cls: str,
    kind: IoUKind = "bev",
    iou_threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection of ``cls`` in score order, for plotting
    (empty arrays without detections; recall is 0 throughout without ground truth)."""
    threshold = _threshold(cls, IOU_THRESHOLDS) if iou_threshold is None else iou_threshold
    _, flags, n_gt = match_class(frames, cls, threshold, kind)
    tp = np.cumsum(flags, dtype=np.float64)
    precision = tp / np.arange(1, flags.size + 1, dtype=np.float64)
    return precision, tp / max(n_gt, 1)


def kitti_metrics(
    frames: Sequence[FrameResult],
    classes: Sequence[str],
    kind: IoUKind = "bev",
    iou_thresholds: Mapping[str, float] = IOU_THRESHOLDS,
) -> dict[str, object]:
    """Per-class AP|R40 (with ground-truth and true-positive counts and the IoU threshold used)
    and mAP, the mean over classes that have ground truth."""
    _check_kind(kind)
    per_class: dict[str, dict[str, float | int]] = {}
    for cls in classes:
        threshold = _threshold(cls, iou_thresholds)
        _, flags, n_gt = match_class(frames, cls, threshold, kind)
        per_class[cls] = {
            "ap": average_precision_r40(flags, n_gt),
            "gt": n_gt,
            "tp": int(flags.sum()),
            "iou_threshold": threshold,
        }
    valid = [float(r["ap"]) for r in per_class.values() if not math.isnan(r["ap"])]
    m_ap = float(np.mean(valid)) if valid else float("nan")
    return {"mAP": m_ap, "per_class": per_class}
