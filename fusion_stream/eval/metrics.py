"""nuScenes-style detection metrics (pure functions over boxes).

mAP: average precision per class from greedy matching on BEV centre distance at 0.5, 1, 2 and
4 m (precision interpolated on 101 recall points, ignoring recall and precision below 0.1, as
nuScenes does), averaged over thresholds and classes. True-positive errors at 2 m: ATE (centre
distance), ASE (1 − IoU of the aligned sizes), AOE (yaw difference), AVE (velocity error) and AAE
(1 − attribute accuracy; here the siren attribute of cars and trucks). NDS combines them.

Simplification: TP errors are averaged over every true positive rather than only up to the
recall where precision falls under 10 %."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fusion_stream.core.msgs import Box3D

THRESHOLDS = (0.5, 1.0, 2.0, 4.0)
TP_THRESHOLD = 2.0
MIN_RECALL = 0.1
MIN_PRECISION = 0.1
TP_METRICS = ("ate", "ase", "aoe", "ave", "aae")
ATTRIBUTE_CLASSES = ("car", "truck")


@dataclass
class FrameResult:
    """One frame's ground truth and detections (both in the same frame of reference)."""

    gt: Sequence[Box3D]
    detections: Sequence[Box3D]


@dataclass
class _Match:
    score: float
    tp: bool
    errors: dict[str, float] = field(default_factory=dict)


def _yaw_diff(a: float, b: float) -> float:
    return abs(math.remainder(a - b, 2 * math.pi))


def _aligned_iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = float(np.prod([min(x, y) for x, y in zip(a, b, strict=True)]))
    return inter / (float(np.prod(a)) + float(np.prod(b)) - inter)


def _errors(det: Box3D, gt: Box3D) -> dict[str, float]:
    out = {
        "ate": math.dist(det.center[:2], gt.center[:2]),
        "ase": 1.0 - _aligned_iou(det.size, gt.size),
        "aoe": _yaw_diff(det.yaw, gt.yaw),
        "ave": math.dist(det.velocity, gt.velocity),
    }
    if gt.label in ATTRIBUTE_CLASSES:
        out["aae"] = float(bool(det.attributes.get("siren", False)) != bool(gt.attributes.get("siren", False)))
    return out


def match_class(frames: Sequence[FrameResult], cls: str, threshold: float) -> tuple[list[_Match], int]:
    """Greedy matching by descending score, nearest unmatched ground truth within ``threshold``."""
    n_gt = 0
    candidates: list[tuple[float, int, int]] = []
    gts: list[list[Box3D]] = []
    for f_i, frame in enumerate(frames):
        gt = [b for b in frame.gt if b.label == cls]
        gts.append(gt)
        n_gt += len(gt)
        candidates.extend((d.score, f_i, d_i) for d_i, d in enumerate(frame.detections) if d.label == cls)
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    taken: list[set[int]] = [set() for _ in frames]
    matches = []
    for score, f_i, d_i in candidates:
        det = frames[f_i].detections[d_i]
        best, best_d = -1, threshold
        for g_i, g in enumerate(gts[f_i]):
            if g_i in taken[f_i]:
                continue
            d = math.dist(det.center[:2], g.center[:2])
            if d < best_d:
                best, best_d = g_i, d
        if best >= 0:
            taken[f_i].add(best)
            matches.append(_Match(score, True, _errors(det, gts[f_i][best])))
        else:
            matches.append(_Match(score, False))
    return matches, n_gt


def average_precision(matches: Sequence[_Match], n_gt: int) -> float:
    """nuScenes AP: precision interpolated at 101 recall points, the part above 10 % precision
    for recall ≥ 10 %, normalised to [0, 1]. NaN where there is no ground truth."""
    if n_gt == 0:
        return float("nan")
    if not matches:
        return 0.0
    tp = np.cumsum([m.tp for m in matches], dtype=np.float64)
    fp = np.cumsum([not m.tp for m in matches], dtype=np.float64)
    precision = tp / (tp + fp)
    recall = tp / n_gt
    points = np.linspace(0, 1, 101)
    # best precision at recall >= r (the monotone envelope)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, points, side="left")
    interp = np.where(idx < len(recall), envelope[np.minimum(idx, len(recall) - 1)], 0.0)
    kept = interp[round(100 * MIN_RECALL) + 1 :] - MIN_PRECISION
    return float(np.mean(np.clip(kept, 0.0, None)) / (1.0 - MIN_PRECISION))


def precision_recall(matches: Sequence[_Match], n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    tp = np.cumsum([m.tp for m in matches], dtype=np.float64)
    fp = np.cumsum([not m.tp for m in matches], dtype=np.float64)
    return tp / np.maximum(tp + fp, 1), tp / max(n_gt, 1)


def detection_metrics(frames: Sequence[FrameResult], classes: Sequence[str]) -> dict[str, object]:
    """Per-class AP (per threshold and mean) and TP errors; mAP, the mean TP errors and NDS."""
    per_class: dict[str, dict[str, float]] = {}
    for cls in classes:
        row: dict[str, float] = {}
        aps = []
        for t in THRESHOLDS:
            matches, n_gt = match_class(frames, cls, t)
            ap = average_precision(matches, n_gt)
            row[f"ap@{t:g}"] = ap
            aps.append(ap)
            if t == TP_THRESHOLD:
                tps = [m.errors for m in matches if m.tp]
                for k in TP_METRICS:
                    vals = [e[k] for e in tps if k in e]
                    row[k] = float(np.mean(vals)) if vals else float("nan")
                row["gt"] = n_gt
                row["tp@2"] = len(tps)
        row["ap"] = float(np.mean(aps))
        per_class[cls] = row
    valid = [r for r in per_class.values() if not math.isnan(r["ap"])]
    m_ap = float(np.mean([r["ap"] for r in valid])) if valid else float("nan")
    mean_tp = {}
    for k in TP_METRICS:
        vals = [r[k] for r in valid if not math.isnan(r[k])]
        mean_tp[k] = float(np.mean(vals)) if vals else float("nan")
    tp_score = sum(1.0 - min(1.0, v) for v in mean_tp.values() if not math.isnan(v))
    nds = (5 * m_ap + tp_score) / 10 if not math.isnan(m_ap) else float("nan")
    return {"mAP": m_ap, "NDS": nds, "mean_tp": mean_tp, "per_class": per_class}


def siren_accuracy(frames: Sequence[FrameResult], threshold: float = TP_THRESHOLD) -> tuple[float, int, int]:
    """Accuracy of the siren attribute on detected cars and trucks in frames where a siren is
    audible (an emergency vehicle is in the ground truth), with the number of such detections and
    of emergency vehicles among them."""
    right = total = sirens = 0
    for frame in frames:
        if not any(g.attributes.get("siren") for g in frame.gt):
            continue
        sub = [FrameResult(frame.gt, frame.detections)]
        for cls in ATTRIBUTE_CLASSES:
            matches, _ = match_class(sub, cls, threshold)
            for m in matches:
                if m.tp and "aae" in m.errors:
                    total += 1
                    right += m.errors["aae"] == 0.0
        sirens += sum(bool(g.attributes.get("siren")) for g in frame.gt)
    return (right / total if total else float("nan")), total, sirens
