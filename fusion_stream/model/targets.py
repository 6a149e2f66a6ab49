"""Training targets and losses for the CenterPoint-style head.

Targets are numpy (built once per sample in the data loader); losses are torch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from fusion_stream.core.geometry import box_corners
from fusion_stream.core.msgs import Box3D
from fusion_stream.model.config import ModelConfig
from fusion_stream.model.decode import in_range
from fusion_stream.model.net import HEAD_CHANNELS, IMAGE_STRIDE

REGRESS = sum(HEAD_CHANNELS.values())


def gaussian_radius(length: float, width: float, cell: float, min_overlap: float = 0.1) -> int:
    """CenterNet's radius (in cells) within which a shifted box still overlaps ``min_overlap``."""
    h, w = length / cell, width / cell
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return max(1, int(min(r1, r2, r3)))


def build(boxes: Sequence[Box3D], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Heatmap [classes, hx, hy], regression targets [R, hx, hy] and their mask [hx, hy]."""
    hx, hy = cfg.head_grid
    cell = cfg.head_cell
    heat = np.zeros((len(cfg.classes), hx, hy), np.float32)
    reg = np.zeros((REGRESS, hx, hy), np.float32)
    mask = np.zeros((hx, hy), np.float32)
    gx = np.arange(hx)[:, None]
    gy = np.arange(hy)[None, :]
    for box in boxes:
        if box.label not in cfg.classes or not in_range(box, cfg):
            continue
        fx = (box.center[0] - cfg.x_range[0]) / cell
        fy = (box.center[1] - cfg.y_range[0]) / cell
        ix, iy = int(fx), int(fy)
        r = gaussian_radius(box.size[0], box.size[1], cell)
        sigma = (2 * r + 1) / 6
        g = np.exp(-((gx - ix) ** 2 + (gy - iy) ** 2) / (2 * sigma * sigma)).astype(np.float32)
        g[np.abs(gx - ix).repeat(hy, 1) > r] = 0
        g[np.abs(gy - iy).repeat(hx, 0) > r] = 0
        k = cfg.classes.index(box.label)
        np.maximum(heat[k], g, out=heat[k])
        length, width, height = (max(s, 0.05) for s in box.size)
        reg[:, ix, iy] = (
            fx - ix,
            fy - iy,
            box.center[2],
            math.log(length),
            math.log(width),
            math.log(height),
            math.sin(box.yaw),
            math.cos(box.yaw),
            box.velocity[0],
            box.velocity[1],
            float(bool(box.attributes.get("siren", False))),
        )
        mask[ix, iy] = 1.0
    return {"heatmap": heat, "regress": reg, "mask": mask}


def image_heatmap(
    boxes: Sequence[Box3D], cam_proj: np.ndarray, cfg: ModelConfig, max_depth: float = 80.0
) -> np.ndarray:
    """Per-class heatmap [classes, h/4, w/4] of the boxes' centres projected into the model's
    image, a Gaussian sized by each box's projected extent (the camera branch's auxiliary target).

    Boxes partly behind the camera or beyond ``max_depth`` are left out; occluded ones are kept
    (the simulator's ground truth has no visibility flag)."""
    h, w = cfg.image_size
    fh, fw = h // IMAGE_STRIDE, w // IMAGE_STRIDE
    heat = np.zeros((len(cfg.classes), fh, fw), np.float32)
    if not np.any(cam_proj):
        return heat
    gu = np.arange(fw)[None, :]
    gv = np.arange(fh)[:, None]
    for box in boxes:
        if box.label not in cfg.classes:
            continue
        pts = np.concatenate([box_corners(box), [box.center]], 0)
        uvw = cam_proj @ np.concatenate([pts, np.ones((9, 1))], 1).T
        depth = uvw[2]
        if depth.min() < 0.5 or depth[-1] > max_depth:
            continue
        u, v = uvw[0] / depth / IMAGE_STRIDE, uvw[1] / depth / IMAGE_STRIDE
        cu, cv = u[-1], v[-1]
        if not (0 <= cu < fw and 0 <= cv < fh):
            continue
        r = gaussian_radius(max(float(np.ptp(v[:8])), 0.5), max(float(np.ptp(u[:8])), 0.5), 1.0, min_overlap=0.7)
        sigma = (2 * r + 1) / 6
        iu, iv = int(cu), int(cv)
        g = np.exp(-((gu - iu) ** 2 + (gv - iv) ** 2) / (2 * sigma * sigma)).astype(np.float32)
        k = cfg.classes.index(box.label)
        np.maximum(heat[k], g, out=heat[k])
    return heat


def focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of objects."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg_w = torch.pow(1 - target, 4)
    pos_loss = torch.log(p) * torch.pow(1 - p, 2) * pos
    neg_loss = torch.log(1 - p) * torch.pow(p, 2) * neg_w * (1 - pos)
    n = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / n


SIREN_POS_WEIGHT = 10.0
"""Emergency vehicles are ~1 in 15 cars and trucks near the ego: unweighted, the attribute head
learned to answer "no siren" always."""
IMAGE_LOSS_WEIGHT = 0.5
"""Weight of the camera branch's image-space heatmap loss (absent for models without a camera)."""
_WEIGHTS = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5])


def loss(out: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
    """Heatmap focal loss, masked L1 on box regressions, BCE on the siren attribute and on the
    audio branch's siren-present output."""
    hm = focal_loss(out["heatmap"], target["heatmap"])
    mask = target["mask"].unsqueeze(1)
    n = mask.sum().clamp(min=1.0)
    reg = out["regress"]
    l1 = (torch.abs(reg[:, :10] - target["regress"][:, :10]) * mask).sum(dim=(0, 2, 3)) / n
    box = (l1 * _WEIGHTS.to(l1.device)).sum()
    siren_target = target["regress"][:, 10:11]
    siren = (
        F.binary_cross_entropy_with_logits(
            reg[:, 10:11], siren_target, reduction="none", pos_weight=reg.new_tensor(SIREN_POS_WEIGHT)
        )
        * mask
    ).sum() / n
    heard = target["audio_present"]
    audio = (
        F.binary_cross_entropy_with_logits(out["audio_siren"], target["audio_siren"], reduction="none") * heard
    ).sum() / heard.sum().clamp(min=1.0)
    total = hm + box + 0.5 * siren + 0.2 * audio
    result = {"heatmap": hm, "box": box, "siren": siren, "audio": audio}
    if "image_heatmap" in target:
        seen = target["camera_present"] > 0
        image = (
            focal_loss(out["image_heatmap"][seen], target["image_heatmap"][seen])
            if bool(seen.any())
            else hm.new_zeros(())
        )
        total = total + IMAGE_LOSS_WEIGHT * image
        result["image"] = image
    return {"total": total, **result}
