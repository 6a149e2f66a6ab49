"""Voxelization as OpenPCDet (spconv's ``PointToVoxel``) does it, for ``pillars`` cards.

A pure function of the points and the card's :class:`~fusion_stream.infer.cards.VoxelGrid`:
points outside ``POINT_CLOUD_RANGE`` are dropped; voxels are numbered in the order their first
point appears; each keeps its first ``MAX_POINTS_PER_VOXEL`` points in sweep order, and voxels
past ``MAX_NUMBER_OF_VOXELS`` are dropped. One pass of a numba loop with an open-addressing table
from cell to voxel (sized by the voxel limit, not the grid): 3–7 ms for KITTI's 115–127k-point
sweeps on OpenPCDet's KITTI grid, where a vectorized numpy version (sorts) takes 24–29 ms
(``bench/voxelize.py``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fusion_stream.infer.cards import VoxelGrid
from fusion_stream.runtime import jit


@dataclass(frozen=True)
class Voxels:
    """``voxels`` V×P×F float32 (zero-padded), ``coords`` V×4 int32 (batch 0, then the cell index
    along the axes in ``coords_order``), ``num_points`` V int32; ``count`` of the V rows are real
    (V is ``MAX_NUMBER_OF_VOXELS`` when padded)."""

    voxels: np.ndarray
    coords: np.ndarray
    num_points: np.ndarray
    count: int


def _voxelize_kernel(
    points: np.ndarray,
    lo: np.ndarray,
    size: np.ndarray,
    shape: np.ndarray,
    axes: np.ndarray,
    keys: np.ndarray,
    slots: np.ndarray,
    voxels: np.ndarray,
    coords: np.ndarray,
    num_points: np.ndarray,
) -> int:
    """Fill ``voxels``/``coords``/``num_points`` (zeroed, ``MAX_NUMBER_OF_VOXELS`` rows); ``keys``
    (all -1, a power of two long, over twice the voxel limit) is the cell → voxel table."""
    mask = len(keys) - 1
    max_voxels, max_points = voxels.shape[0], voxels.shape[1]
    count = 0
    cell = np.zeros(3, np.int64)
    for i in range(points.shape[0]):
        inside = True
        for a in range(3):
            c = math.floor((np.float64(points[i, a]) - lo[a]) / size[a])
            if c < 0 or c >= shape[a]:
                inside = False
                break
            cell[a] = c
        if not inside:
            continue
        key = (cell[2] * shape[1] + cell[1]) * shape[0] + cell[0]
        h = (key * 2654435761) & mask
        v = -1
        while True:
            k = keys[h]
            if k == key:
                v = slots[h]
                break
            if k == -1:
                if count < max_voxels:
                    keys[h] = key
                    slots[h] = count
                    v = count
                    for a in range(3):
                        coords[v, 1 + a] = cell[axes[a]]
                    count += 1
                break
            h = (h + 1) & mask
        if v < 0:
            continue
        n = num_points[v]
        if n < max_points:
            voxels[v, n, :] = points[i, :]
            num_points[v] = n + 1
    return count


@functools.cache
def _kernel() -> Callable[..., int]:
    """Compiled on first use (or loaded from numba's cache), not at import."""
    i64 = "int64[::1]"
    f64 = "float64[::1]"
    out = "float32[:, :, ::1], int32[:, ::1], int32[::1]"
    sig = f"int64(float32[:, ::1], {f64}, {f64}, {i64}, {i64}, {i64}, {i64}, {out})"
    return jit.njit(_voxelize_kernel, [sig])


def compile_kernels() -> float:
    """Compile (or load) the kernel now; the milliseconds it took."""
    t0 = time.perf_counter()
    _kernel()
    return (time.perf_counter() - t0) * 1e3


def voxelize(
    points: np.ndarray, grid: VoxelGrid, coords_order: Sequence[str] = ("z", "y", "x"), *, pad: bool = True
) -> Voxels:
    """N×F points (x, y, z in the first three columns, in the model's frame) as voxels; ``pad``:
    all ``MAX_NUMBER_OF_VOXELS`` rows (what a static-shape export takes), else only the real ones."""
    points = np.require(points, np.float32, ["C", "W"])  # the kernel takes writable arrays (not a read-only mmap)
    features = points.shape[1]
    voxels = np.zeros((grid.max_voxels, grid.max_points_per_voxel, features), np.float32)
    coords = np.zeros((grid.max_voxels, 4), np.int32)
    num_points = np.zeros(grid.max_voxels, np.int32)
    table = 1 << (2 * grid.max_voxels).bit_length()
    count = _kernel()(
        points,
        np.asarray(grid.point_cloud_range[:3], np.float64),
        np.asarray(grid.voxel_size, np.float64),
        np.asarray(grid.shape, np.int64),
        np.asarray(["xyz".index(a) for a in coords_order], np.int64),
        np.full(table, -1, np.int64),
        np.zeros(table, np.int64),
        voxels,
        coords,
        num_points,
    )
    if pad:
        return Voxels(voxels, coords, num_points, count)
    return Voxels(voxels[:count], coords[:count], num_points[:count], count)
