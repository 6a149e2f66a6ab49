"""Benchmark: voxelization for ``pillars`` cards (OpenPCDet's KITTI PointPillars grid:
POINT_CLOUD_RANGE [0, -39.68, -3, 69.12, 39.68, 1], VOXEL_SIZE [0.16, 0.16, 4], 32 points per
voxel, 16000 voxels), on the real KITTI HDL-64E sweeps beside the project and on a synthetic
120k-point sweep, next to a vectorized numpy baseline (sorts; the first version) in the same run.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/voxelize.py
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fusion_stream.core import kitti
from fusion_stream.infer.cards import VoxelGrid
from fusion_stream.infer.voxelize import compile_kernels, voxelize

KITTI = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kitti"
GRID = VoxelGrid((0.0, -39.68, -3.0, 69.12, 39.68, 1.0), (0.16, 0.16, 4.0), 32, 16000)


def numpy_baseline(points: np.ndarray, grid: VoxelGrid) -> int:
    """Voxels as ``voxelize`` gives them, by sorts instead of one loop: the baseline."""
    lo, size, shape = np.asarray(grid.point_cloud_range[:3]), np.asarray(grid.voxel_size), np.asarray(grid.shape)
    cell = np.floor((points[:, :3].astype(np.float64) - lo) / size).astype(np.int64)
    index = np.flatnonzero(((cell >= 0) & (cell < shape)).all(axis=1))
    cell = cell[index]
    key = (cell[:, 2] * shape[1] + cell[:, 1]) * shape[0] + cell[:, 0]
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    voxel = rank[inverse.reshape(-1)]
    keep = voxel < grid.max_voxels
    index, voxel, cell = index[keep], voxel[keep], cell[keep]
    order = np.argsort(voxel, kind="stable")
    sorted_voxel = voxel[order]
    slot = np.empty(len(order), np.int64)
    slot[order] = np.arange(len(order)) - np.searchsorted(sorted_voxel, sorted_voxel)
    keep = slot < grid.max_points_per_voxel
    voxels = np.zeros((grid.max_voxels, grid.max_points_per_voxel, points.shape[1]), np.float32)
    voxels[voxel[keep], slot[keep]] = points[index[keep]]
    coords = np.zeros((grid.max_voxels, 4), np.int32)
    coords[voxel, 1:] = cell[:, ::-1]
    return min(len(uniq), grid.max_voxels)


def ms(fn: Callable[[], object], repeats: int = 30) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 99))


def main() -> None:
    print(f"numba kernel compiled or loaded in {compile_kernels():.0f} ms")
    rng = np.random.default_rng(0)
    sweeps = {
        "synthetic 120k (uniform ±60 m)": np.concatenate(
            [rng.uniform([-60, -60, -3], [60, 60, 2], (120_000, 3)), rng.uniform(0, 1, (120_000, 1))], axis=1
        ).astype(np.float32)
    }
    for path in sorted(KITTI.glob("*/velodyne.bin")):
        sweeps[f"KITTI {path.parent.name}"] = kitti.read_velodyne(path).astype(np.float32)
    print(f"{'sweep':34} {'points':>8} {'voxels':>7} {'voxelize p50/p99 ms':>20} {'numpy baseline p50/p99 ms':>26}")
    for name, pts in sweeps.items():
        v = voxelize(pts, GRID)
        assert numpy_baseline(pts, GRID) == v.count
        a, b = ms(functools.partial(voxelize, pts, GRID)), ms(functools.partial(numpy_baseline, pts, GRID))
        print(f"{name:34} {len(pts):>8} {v.count:>7} {a[0]:>11.2f} / {a[1]:<7.2f} {b[0]:>14.2f} / {b[1]:<7.2f}")


if __name__ == "__main__":
    main()
