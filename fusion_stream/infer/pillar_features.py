"""Between the two files of Autoware's CenterPoint: per-point pillar features for the voxel
encoder, and the scatter of its per-pillar output to the BEV pseudo-image the head takes.

Pure numpy over :func:`~fusion_stream.infer.voxelize.voxelize`'s output. The features are
PointPillars' (Autoware's ``encoder_in_feature_size: 9`` is x, y, z, the time lag, the offset
from the mean of the pillar's points and the x/y offset from the pillar's centre); padded point
slots are zero, as the encoder was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fusion_stream.infer.cards import VoxelGrid
from fusion_stream.infer.voxelize import Voxels


def encoder_features(
    v: Voxels, grid: VoxelGrid, fields: Sequence[str], names: Sequence[str], coords_order: Sequence[str]
) -> np.ndarray:
    """V×P×E float32: for each kept point of each voxel the features ``names`` (a field of
    ``fields``, ``cluster_x|y|z`` or ``center_x|y|z``); zero for empty slots."""
    n = v.count  # only the real voxels; the padding rows stay zero
    real = (np.arange(v.voxels.shape[1])[None, :] < v.num_points[:n, None])[:, :, None]
    xyz = v.voxels[:n, :, :3]
    count = np.maximum(v.num_points[:n], 1)[:, None].astype(np.float32)
    mean = xyz.sum(axis=1) / count  # V×3 (empty slots are zeros, so they add nothing)
    cell = np.stack([v.coords[:n, 1 + list(coords_order).index(a)] for a in "xyz"], axis=1).astype(np.float64)
    centre = ((cell + 0.5) * np.asarray(grid.voxel_size) + np.asarray(grid.point_cloud_range[:3])).astype(np.float32)
    out = np.zeros((*v.voxels.shape[:2], len(names)), np.float32)
    for k, name in enumerate(names):
        if name in fields:
            column = v.voxels[:n, :, list(fields).index(name)]
        else:
            kind, axis = name.split("_")
            a = "xyz".index(axis)
            column = xyz[:, :, a] - (mean if kind == "cluster" else centre)[:, a : a + 1]
        out[:n, :, k] = column
    out[:n] *= real
    return out


def scatter(pillars: np.ndarray, v: Voxels, grid: VoxelGrid, coords_order: Sequence[str]) -> np.ndarray:
    """The encoder's V×C (or V×1×C) per-pillar features placed at their cells: 1×C×ny×nx
    float32, zero where no pillar is."""
    feats = pillars.reshape(pillars.shape[0], -1)[: v.count]
    nx, ny, _ = grid.shape
    canvas = np.zeros((1, feats.shape[1], ny, nx), np.float32)
    order = list(coords_order)
    ys = v.coords[: v.count, 1 + order.index("y")]
    xs = v.coords[: v.count, 1 + order.index("x")]
    canvas[0][:, ys, xs] = feats.T
    return canvas
