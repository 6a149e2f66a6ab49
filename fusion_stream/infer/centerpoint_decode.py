"""CenterPoint's heads → boxes in the model frame: a pure function of the head tensors and the
card's :class:`~fusion_stream.infer.centerpoint_card.Decoding`, separate from ONNX I/O.

As OpenPCDet's ``decode_bbox_from_heatmap`` and mmdetection3d's ``CenterPointBBoxCoder`` do it:
the ``top_k`` best heatmap cells over all classes (after a sigmoid where the export outputs
logits) scoring at least ``score_threshold``; a cell (row y, column x) is a box centred at
``((x + reg_x) · out_size_factor · voxel_x + x_min, (y + reg_y) · … + y_min, height)``, sized
by ``dim`` (``exp`` of it where log-encoded), yawed ``atan2(sin, cos)``, moving at ``vel``;
then circle NMS, rotated-IoU NMS or none.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fusion_stream.errors import InferenceError
from fusion_stream.infer.centerpoint_card import Decoding, Nms

LAYOUT = ("x", "y", "z", "l", "w", "h", "yaw", "vx", "vy")
"""The columns of the boxes :func:`decode_heads` gives."""


def _chw(heads: Mapping[str, np.ndarray], role: str, channels: int, rows: int, cols: int) -> np.ndarray:
    """A head as C×H×W float64 (its batch of one dropped), or an InferenceError saying its shape."""
    a = np.asarray(heads[role])
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.shape != (channels, rows, cols):
        raise InferenceError(f"the {role} head has shape {a.shape}, not {(channels, rows, cols)}")
    return a.astype(np.float64)


def decode_heads(
    heads: Mapping[str, np.ndarray], d: Decoding, classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (K×9, columns :data:`LAYOUT`, model frame), scores (K) and class indices (K), best
    first, from the heads by role (``heatmap``, ``reg``, ``height``, ``dim``, ``rot``, optional
    ``vel``; each [1×]C×H×W)."""
    rows, cols = np.asarray(heads["heatmap"]).shape[-2:]
    heat = _chw(heads, "heatmap", classes, rows, cols)
    if d.sigmoid:
        heat = 1.0 / (1.0 + np.exp(-heat))
    flat = heat.reshape(-1)
    k = min(d.top_k, flat.size)
    best = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    best = best[np.argsort(-flat[best], kind="stable")]
    best = best[flat[best] >= d.score_threshold]
    label, cell = np.divmod(best, rows * cols)
    y, x = np.divmod(cell, cols)
    reg = _chw(heads, "reg", 2, rows, cols)[:, y, x]
    z = _chw(heads, "height", 1, rows, cols)[0, y, x]
    dim = _chw(heads, "dim", 3, rows, cols)[:, y, x]
    if d.dim_log:
        dim = np.exp(dim)
    lwh = dim[[d.dim_order.index(c) for c in ("l", "w", "h")]]
    rot = _chw(heads, "rot", 2, rows, cols)[:, y, x]
    yaw = np.arctan2(rot[d.rot_order.index("sin")], rot[d.rot_order.index("cos")])
    vel = _chw(heads, "vel", 2, rows, cols)[:, y, x] if "vel" in heads else np.zeros((2, len(best)))
    lo, size, step = d.grid.point_cloud_range, d.grid.voxel_size, d.out_size_factor
    cx = (x + reg[0]) * step * size[0] + lo[0]
    cy = (y + reg[1]) * step * size[1] + lo[1]
    boxes = np.column_stack([cx, cy, z, lwh.T, yaw, vel.T]).reshape(-1, len(LAYOUT))
    scores = flat[best]
    keep = nms(boxes, scores, label, d.nms)
    return boxes[keep], scores[keep], label[keep]


def nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, cfg: Nms) -> np.ndarray:
    """Indices of the boxes kept (rows of :data:`LAYOUT`, sorted best first), at most
    ``post_max_size``; a box is dropped when a kept better one (of its class, where
    ``per_class``) is within ``radius`` (circle) or overlaps it above ``iou_threshold`` (iou)."""
    order = np.argsort(-scores, kind="stable")
    if cfg.type == "none":
        return order[: cfg.post_max_size]
    kept: list[int] = []
    for i in order.tolist():
        if len(kept) == cfg.post_max_size:
            break
        rivals = [j for j in kept if not cfg.per_class or labels[j] == labels[i]]
        if cfg.type == "circle":
            near = [np.hypot(*(boxes[i, :2] - boxes[j, :2])) < cfg.radius for j in rivals]
        else:
            near = [bev_iou(boxes[i], boxes[j]) > cfg.iou_threshold for j in rivals]
        if not any(near):
            kept.append(i)
    return np.asarray(kept, np.int64)


def corners(box: np.ndarray) -> np.ndarray:
    """The four bird's-eye-view corners (4×2, counter-clockwise) of a box row of :data:`LAYOUT`."""
    c, s = np.cos(box[6]), np.sin(box[6])
    half = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * (box[3] / 2, box[4] / 2)
    out: np.ndarray = half @ np.array([[c, s], [-s, c]]) + box[:2]
    return out


def _clip(poly: list[np.ndarray], a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """``poly`` cut to the left of the edge a → b (one Sutherland–Hodgman step)."""

    def side(p: np.ndarray) -> float:
        return float((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]))

    out: list[np.ndarray] = []
    for k, p in enumerate(poly):
        q = poly[(k + 1) % len(poly)]
        sp, sq = side(p), side(q)
        if sp >= 0:
            out.append(p)
        if sp * sq < 0:
            out.append(p + (q - p) * (sp / (sp - sq)))
    return out


def _area(poly: list[np.ndarray]) -> float:
    if len(poly) < 3:
        return 0.0
    xy = np.array(poly)
    return 0.5 * abs(float(np.dot(xy[:, 0], np.roll(xy[:, 1], -1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], -1))))


def bev_iou(a: np.ndarray, b: np.ndarray) -> float:
    """The rotated bird's-eye-view IoU of two box rows of :data:`LAYOUT`."""
    if np.hypot(*(a[:2] - b[:2])) > (np.hypot(a[3], a[4]) + np.hypot(b[3], b[4])) / 2:
        return 0.0  # their circumscribed circles do not meet
    poly = list(corners(a))
    cb = corners(b)
    for k in range(4):
        poly = _clip(poly, cb[k], cb[(k + 1) % 4])
        if not poly:
            return 0.0
    inter = _area(poly)
    union = a[3] * a[4] + b[3] * b[4] - inter
    return inter / union if union > 0 else 0.0
