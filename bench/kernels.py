"""Benchmark: the numba per-point kernels against the numpy code they replaced, in the same run.

For each kernel on realistic inputs: milliseconds per call of the numpy reference and of the
compiled kernel (median of ``--repeat`` calls after one warm-up), and whether the outputs are
bit-identical. Before that, the first-call cost in fresh processes: importing numba and
compiling the kernels with an empty cache (the first run after an install pays it), then
loading them from numba's cache (every later process start).

Inputs: the three KITTI sweeps in ../shared/data/kitti (~120,000 points each, when present), a
synthetic 120,000-point sweep over ±40 m, simulated 32- and 64-beam sweeps and a radar scan of
the simulated rig.

    python bench/kernels.py
    python bench/kernels.py --repeat 50 --no-compile
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fusion_stream.core import calib, resources
from fusion_stream.model import preprocess
from fusion_stream.model.config import ModelConfig
from fusion_stream.sim import Scenario, World, lidar, radar

console = Console(width=150)
KITTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti"
Hits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]
"""What a sweep hands to its returns: distance, reflectivity, cosine, label, directions, times, start."""

_FIRST_CALL = """
import time
t0 = time.perf_counter()
import numba
t1 = time.perf_counter()
from fusion_stream.model import preprocess
from fusion_stream.sim import lidar
t2 = time.perf_counter()
preprocess.compile_kernels()
t3 = time.perf_counter()
lidar._returns_kernel()
t4 = time.perf_counter()
print(f"{(t1 - t0) * 1e3:.0f} {(t3 - t2) * 1e3:.0f} {(t4 - t3) * 1e3:.0f}")
"""


def first_call() -> Table:
    """numba's import and the kernels' build in fresh processes: empty cache, then warm cache."""
    table = Table(title="first call in a fresh process (ms)")
    for col in ("numba cache", "import numba", "pillar kernels", "LiDAR returns kernel"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}  # a private, empty cache: a cold start
        for label in ("empty (compiles)", "warm (loads)"):
            out = subprocess.run(
                [sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True, check=True
            )
            table.add_row(label, *out.stdout.split())
    return table


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _identical(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:
    return all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True)
    )


def _returns(fn: Callable[..., lidar.Sweep], hits: Hits, spec: lidar.LidarSpec) -> tuple[np.ndarray, np.ndarray]:
    sweep = fn(*hits, spec, "rain", np.random.default_rng(1))
    return sweep.data, sweep.label


def _simulated_hits(world: World, mount: calib.Transform, spec: lidar.LidarSpec) -> Hits:
    """The ray-cast arrays one real simulated sweep hands to its returns."""
    captured: list[Hits] = []
    real = lidar._returns

    def capture(*args: object) -> lidar.Sweep:
        captured.append(args[:7])  # type: ignore[arg-type]
        return real(*args)  # type: ignore[arg-type]

    lidar._returns = capture  # type: ignore[assignment]
    try:
        lidar.sweep(world, 20.0, mount, spec)
    finally:
        lidar._returns = real
    return captured[0]


def kernels(repeat: int) -> Table:
    cfg = ModelConfig()
    rng = np.random.default_rng(0)
    clouds: list[tuple[str, np.ndarray, np.ndarray]] = []
    for path in sorted(KITTI.glob("*/velodyne.bin")):
        raw = np.fromfile(path, np.float32).reshape(-1, 4)
        clouds.append((f"KITTI {path.parent.name}", raw[:, :3].astype(np.float64), raw[:, 3].astype(np.float64)))
    n = 120_000
    synthetic = np.concatenate([rng.uniform(-40, 40, (n, 2)), rng.uniform(-2, 1, (n, 1))], axis=1)
    clouds.append(("synthetic ±40 m", synthetic, rng.random(n)))

    rig = calib.load(resources.resolve("calib/sim_rig.yaml"))
    world = World(Scenario(seed=3, actors=30, weather="rain"))
    mount = rig["lidar_top"].extrinsics
    for beams in (32, 64):
        sweep = lidar.sweep(world, 20.0, mount, lidar.LidarSpec.preset(beams))
        clouds.append((f"simulated {beams}-beam", lidar.to_rig(sweep.data, mount, np.zeros(3)), sweep.data[:, 3]))

    table = Table(title=f"ms per call (median of {repeat})")
    for col in ("kernel", "input", "points", "numpy", "numba", "speed-up", "bit-identical"):
        table.add_column(col, justify="left" if col in ("kernel", "input") else "right")

    def row(
        kernel: str,
        name: str,
        points: int,
        ref: Callable[[], Sequence[np.ndarray]],
        new: Callable[[], Sequence[np.ndarray]],
    ) -> None:
        t_ref, t_new = _median_ms(ref, repeat), _median_ms(new, repeat)
        same = "yes" if _identical(new(), ref()) else "NO"
        table.add_row(kernel, name, f"{points:,}", f"{t_ref:.2f}", f"{t_new:.2f}", f"{t_ref / t_new:.1f}×", same)

    for name, xyz, intensity in clouds:
        row(
            "lidar_inputs (pillars + offsets)",
            name,
            len(xyz),
            functools.partial(preprocess._lidar_inputs_reference, xyz, intensity, cfg),
            functools.partial(preprocess.lidar_inputs, xyz, intensity, cfg),
        )
    xy, feats = synthetic[:, :2], preprocess._lidar_features(synthetic, rng.random(n))
    size = (cfg, cfg.lidar_pillars, cfg.lidar_points_per_pillar)
    row(
        "pillarize alone",
        "synthetic ±40 m",
        n,
        functools.partial(preprocess._pillarize_reference, xy, feats, *size),
        functools.partial(preprocess.pillarize, xy, feats, *size),
    )
    radar_mount = rig["radar_front"].extrinsics
    scan = radar.scan(world, 20.0, radar_mount, radar.RadarSpec())
    radar_args = (
        radar_mount.apply(scan.data[:, :3].astype(np.float64)),
        scan.data[:, 3].astype(np.float64),
        scan.data[:, 4].astype(np.float64),
        radar_mount.translation,
        cfg,
    )
    row(
        "radar_inputs",
        "simulated scan",
        len(scan.data),
        functools.partial(preprocess._radar_inputs_reference, *radar_args),
        functools.partial(preprocess.radar_inputs, *radar_args),
    )
    for beams in (32, 64):
        spec = lidar.LidarSpec.preset(beams)
        hits = _simulated_hits(world, mount, spec)
        row(
            "sim LiDAR returns (draws incl.)",
            f"{beams}×{spec.columns} rays, rain",
            spec.columns * beams,
            functools.partial(_returns, lidar._returns_reference, hits, spec),
            functools.partial(_returns, lidar._returns, hits, spec),
        )
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per kernel and input")
    parser.add_argument("--no-compile", action="store_true", help="skip the fresh-process compile timing")
    args = parser.parse_args(argv)
    console.print(f"numba kernels vs numpy on {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    if not args.no_compile:
        console.print(first_call())
    console.print(kernels(args.repeat))


if __name__ == "__main__":
    main()
