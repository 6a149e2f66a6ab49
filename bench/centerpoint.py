"""Benchmark: the CPU work of a ``centerpoint`` card around its ONNX graphs, per KITTI sweep.

On the real KITTI HDL-64E sweeps beside the project, with Autoware's centerpoint grid
(point_cloud_range [-76.8, -76.8, -4, 76.8, 76.8, 6], voxel_size [0.32, 0.32, 10], 32 points per
pillar, 40000 pillars, out_size_factor 2, 5 classes): the pillar features for the voxel encoder,
the scatter to the BEV image, and the decoding of the heads (a heatmap whose occupied cells
score 0.3–0.9, top_k 500, circle NMS and IoU NMS). The voxelization of the same sweep, timed in
the same run, is the baseline.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/centerpoint.py
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fusion_stream.core import kitti
from fusion_stream.infer.cards import VoxelGrid
from fusion_stream.infer.centerpoint_card import Decoding, Nms
from fusion_stream.infer.centerpoint_decode import decode_heads
from fusion_stream.infer.pillar_features import encoder_features, scatter
from fusion_stream.infer.voxelize import compile_kernels, voxelize

KITTI = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kitti"
GRID = VoxelGrid((-76.8, -76.8, -4.0, 76.8, 76.8, 6.0), (0.32, 0.32, 10.0), 32, 40000)
FIELDS = ("x", "y", "z", "intensity")
FEATURES = (*FIELDS, "cluster_x", "cluster_y", "cluster_z", "center_x", "center_y")
CLASSES = 5
ORDER = ("z", "y", "x")


def ms(fn: Callable[[], object], repeats: int = 20) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 99))


def heads_for(canvas: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Heads as a detector might give them: cells under occupied pillars score 0.3–0.9 in one class."""
    occupied = canvas[0].any(axis=0)[::2, ::2]  # the head grid (out_size_factor 2)
    rows, cols = occupied.shape
    heat = np.full((1, CLASSES, rows, cols), -6.0, np.float32)
    ys, xs = np.nonzero(occupied)
    heat[0, rng.integers(0, CLASSES, len(ys)), ys, xs] = rng.uniform(-0.85, 2.2, len(ys))

    def noise(c: int) -> np.ndarray:
        return rng.normal(0, 0.3, (1, c, rows, cols)).astype(np.float32)

    return {"heatmap": heat, "reg": noise(2), "height": noise(1), "dim": noise(3), "rot": noise(2), "vel": noise(2)}


def frame_row(path: Path, decoding: Decoding, iou: Decoding, rng: np.random.Generator) -> str:
    """One table row: the figures for one sweep."""
    points = kitti.read_velodyne(path)
    v = voxelize(points, GRID, ORDER)
    feats = encoder_features(v, GRID, FIELDS, FEATURES, ORDER)
    pillars = feats.max(axis=1, keepdims=True)  # a stand-in for the encoder output, V×1×9
    canvas = scatter(pillars, v, GRID, ORDER)
    heads = heads_for(canvas, rng)
    figures = [
        ms(lambda: voxelize(points, GRID, ORDER)),
        ms(lambda: encoder_features(v, GRID, FIELDS, FEATURES, ORDER)),
        ms(lambda: scatter(pillars, v, GRID, ORDER)),
        ms(lambda: decode_heads(heads, decoding, CLASSES)),
        ms(lambda: decode_heads(heads, iou, CLASSES), repeats=5),
    ]
    boxes = len(decode_heads(heads, decoding, CLASSES)[0])
    cells = "".join(f"{f'{a:.1f} / {b:.1f}':>{w}}" for (a, b), w in zip(figures, (22, 14, 14, 16, 14), strict=True))

    return f"{path.parent.name:8}{len(points):>8}{cells}{boxes:>7}"


def main() -> None:
    if not KITTI.exists():
        raise SystemExit(f"{KITTI}: the KITTI frames are not here")
    print(f"numba voxelizer compiled or loaded in {compile_kernels():.0f} ms")
    decoding = Decoding(GRID, 2, score_threshold=0.3, top_k=500, nms=Nms("circle", radius=0.5, post_max_size=83))
    iou = dataclasses.replace(decoding, nms=Nms("iou", iou_threshold=0.2, post_max_size=83))
    rng = np.random.default_rng(0)
    print("ms p50 / p99 per sweep")
    print(
        f"{'frame':8}{'points':>8}{'voxelize (baseline)':>22}{'features':>14}{'scatter':>14}"
        f"{'decode circle':>16}{'decode iou':>14}{'boxes':>7}"
    )
    for path in sorted(KITTI.glob("*/velodyne.bin")):
        print(frame_row(path, decoding, iou, rng))


if __name__ == "__main__":
    main()
