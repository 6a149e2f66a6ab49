"""The compiled (numba) per-point kernels against the numpy code they replaced: bit for bit.

"Bit-identical" is checked on the raw bytes, so a -0.0 where numpy writes -0.0 counts, as do the
dtypes and the order of points within a pillar."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fusion_stream.core import calib, resources
from fusion_stream.errors import FormatError
from fusion_stream.model import preprocess
from fusion_stream.model.config import ModelConfig
from fusion_stream.sim import Scenario, World, lidar
from fusion_stream.sim.scene import WEATHER_CLUTTER

CFG = ModelConfig()
NX, NY = CFG.grid
KITTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti"


def same(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        if g.tobytes() != w.tobytes():
            bad = np.argwhere(g != w)
            raise AssertionError(f"{len(bad)} values differ (first at {bad[:3].tolist()}), or the signs of zeros")


def reference_pillarize(
    xy: np.ndarray, feats: np.ndarray, max_pillars: int, max_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with warnings.catch_warnings():  # numpy warns when it casts NaN/inf cells to int64
        warnings.simplefilter("ignore", RuntimeWarning)
        return preprocess._pillarize_reference(xy, feats, CFG, max_pillars, max_points)


def check_pillarize(xy: np.ndarray, max_pillars: int, max_points: int, n_feats: int = 5) -> None:
    n = len(xy)
    feats = np.zeros((n, n_feats), np.float32)
    feats[:, :2] = xy
    feats[:, 2] = np.arange(n)  # input order, to see which points a pillar keeps
    feats[:, -1] = 1.0
    same(
        preprocess.pillarize(xy, feats, CFG, max_pillars, max_points),
        reference_pillarize(xy, feats, max_pillars, max_points),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("n", "spread", "max_pillars", "max_points"),
    [
        (0, 30.0, 100, 10),  # empty cloud
        (1, 30.0, 100, 10),
        (5000, 40.0, 6000, 10),  # some points off the grid
        (20000, 3.0, 50, 4),  # many more points than max per pillar, more cells than max pillars
        (20000, 10.0, 200, 32),
        (3000, 50.0, 1, 1),
        (3000, 50.0, 0, 3),  # no pillar slots at all
        (3000, 1.0, 4000, 0),  # no point slots
    ],
)
def test_pillarize_matches_numpy_on_random_clouds(
    dtype: type[np.floating], n: int, spread: float, max_pillars: int, max_points: int
) -> None:
    rng = np.random.default_rng([n, max_pillars, max_points])
    check_pillarize(rng.uniform(-spread, spread, (n, 2)).astype(dtype), max_pillars, max_points)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pillarize_matches_numpy_with_nan_inf_and_far_points(dtype: type[np.floating]) -> None:
    rng = np.random.default_rng(7)
    xy = rng.uniform(-33, 33, (4000, 2))
    specials = [np.nan, np.inf, -np.inf, 1e30, -1e30, 9.3e18, -9.3e18, 32.0, -32.0]
    xy[rng.integers(0, len(xy), 600), rng.integers(0, 2, 600)] = rng.choice(specials, 600)
    check_pillarize(xy.astype(dtype), 300, 5)
    check_pillarize(np.full((10, 2), np.nan, dtype), 5, 5)  # nothing on the grid


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pillarize_matches_numpy_on_cell_borders(dtype: type[np.floating]) -> None:
    """Coordinates a few ulps either side of cell edges: where float32 and float64 arithmetic part."""
    edges = (np.arange(-66, 67) * CFG.cell).astype(dtype)
    near = np.concatenate([edges, np.nextafter(edges, dtype(-np.inf)), np.nextafter(edges, dtype(np.inf))])
    rng = np.random.default_rng(3)
    xy = np.stack([rng.permutation(np.tile(near, 4)), rng.permutation(np.tile(near, 4))], axis=1)
    check_pillarize(xy, 1000, 3)


def test_pillarize_ties_when_pillars_overflow_are_broken_by_cell_like_numpy() -> None:
    """Every cell has the same count: the kept ones are the lowest cells, as the reference's lexsort."""
    centres = (np.arange(40) - 20 + 0.5) * CFG.cell
    gx, gy = np.meshgrid(centres, centres, indexing="ij")
    xy = np.repeat(np.stack([gx.ravel(), gy.ravel()], axis=1), 3, axis=0)
    xy = np.random.default_rng(1).permutation(xy)
    for max_pillars in (1, 7, 1599, 1600, 1601):
        check_pillarize(xy, max_pillars, 2)
    # counts 1..5 by cell: the threshold count is split between kept and dropped cells
    xy2 = np.concatenate([np.repeat(xy[i : i + 1], 1 + i % 5, axis=0) for i in range(0, 4800, 3)])
    for max_pillars in (10, 320, 321, 700, 1599):
        check_pillarize(np.random.default_rng(max_pillars).permutation(xy2), max_pillars, 3)


def kitti_clouds() -> list[np.ndarray]:
    return [np.fromfile(p, np.float32).reshape(-1, 4) for p in sorted(KITTI.glob("*/velodyne.bin"))]


@pytest.mark.skipif(not KITTI.is_dir(), reason="../shared/data/kitti not present")
def test_lidar_inputs_match_numpy_on_real_kitti_sweeps() -> None:
    clouds = kitti_clouds()
    assert len(clouds) == 3 and all(len(c) > 100_000 for c in clouds)
    for cloud in clouds:
        xyz, intensity = cloud[:, :3].astype(np.float64), cloud[:, 3].astype(np.float64)
        got = preprocess.lidar_inputs(xyz, intensity, CFG)
        same(got, preprocess._lidar_inputs_reference(xyz, intensity, CFG))
        assert (got[1] < NX * NY).sum() > 1000
        # a smaller budget: pillars overflow, points too
        small = ModelConfig(lidar_pillars=500, lidar_points_per_pillar=32)
        same(preprocess.lidar_inputs(xyz, intensity, small), preprocess._lidar_inputs_reference(xyz, intensity, small))


def test_lidar_and_radar_inputs_match_numpy_on_random_and_hostile_clouds() -> None:
    rng = np.random.default_rng(11)
    origin = np.array([3.7, 0.0, 0.5])
    for n in (0, 1, 2, 50_000):
        xyz = np.concatenate([rng.uniform(-40, 40, (n, 2)), rng.uniform(-3, 3, (n, 1))], axis=1)
        if n > 2:
            xyz[rng.integers(0, n, 100), rng.integers(0, 3, 100)] = np.nan
            xyz[rng.integers(0, n, 100), rng.integers(0, 3, 100)] = np.inf
        value, rcs = rng.normal(0, 5, n), rng.normal(0, 10, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want_lidar = preprocess._lidar_inputs_reference(xyz, value, CFG)
            want_radar = preprocess._radar_inputs_reference(xyz, value, rcs, origin, CFG)
            got_radar = preprocess.radar_inputs(xyz, value, rcs, origin, CFG)  # same warning: inf / inf
        same(preprocess.lidar_inputs(xyz, value, CFG), want_lidar)
        same(got_radar, want_radar)


def test_pillarize_refuses_features_that_do_not_match_the_points() -> None:
    """The kernel reads without bounds checks, so a short feature array is refused before it."""
    xy = np.zeros((10, 2))
    with pytest.raises(FormatError, match="N×2 coordinates"):
        preprocess.pillarize(xy, np.zeros((9, 4), np.float32), CFG, 10, 10)
    with pytest.raises(FormatError, match="N×2 coordinates"):
        preprocess.pillarize(np.zeros((10, 1)), np.zeros((10, 4), np.float32), CFG, 10, 10)


def test_a_read_only_install_without_a_cache_directory_still_compiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """numba refuses ``cache=True`` at decoration when it finds nowhere to write (a read-only
    site-packages, no writable home): the kernels are then compiled in memory instead.

    Simulated as root can: ``__pycache__`` beside the module and the user cache are plain files."""
    import numba  # type: ignore[import-untyped]

    package = tmp_path / "ro_kernels"
    package.mkdir()
    (package / "mod.py").write_text("def twice(x):\n    return 2 * x\n")
    (package / "__pycache__").write_text("a file, not a directory\n")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    monkeypatch.setenv("HOME", str(blocker / "home"))
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("ro_kernels.mod")
    try:
        with pytest.raises(RuntimeError, match="no locator available"):
            numba.njit(["int64(int64)"], cache=True)(mod.twice)
        assert preprocess._jit(mod.twice, ["int64(int64)"])(21) == 42
    finally:
        sys.modules.pop("ro_kernels.mod", None)
        sys.modules.pop("ro_kernels", None)


def test_compile_kernels_reports_its_time_and_is_done_once() -> None:
    first = preprocess.compile_kernels()
    assert first >= 0.0
    assert preprocess.compile_kernels() < 50.0  # already built in this process


# --------------------------------------------------------------------------- simulated LiDAR returns


@pytest.mark.parametrize("weather", ["clear", "rain", "fog"])
def test_simulated_lidar_sweep_matches_the_numpy_post_processing(weather: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole simulated sweep (real ray casts into the scenario) with the compiled returns,
    then again with the numpy ones: the same random draws give the same bytes."""
    rig = calib.load(resources.resolve("calib/sim_rig.yaml"))
    world = World(Scenario(seed=5, actors=25, weather=weather))
    spec = lidar.LidarSpec.preset(64)
    got = lidar.sweep(world, 31.0, rig["lidar_top"].extrinsics, spec, salt=2, stamp_ns=17)
    monkeypatch.setattr(lidar, "_returns", lidar._returns_reference)
    want = lidar.sweep(world, 31.0, rig["lidar_top"].extrinsics, spec, salt=2, stamp_ns=17)
    assert len(got.data) > 10_000
    same((got.data, got.label), (want.data, want.label))
    if weather != "clear":
        assert (got.label == WEATHER_CLUTTER).any()


@pytest.mark.parametrize("weather", ["clear", "rain", "fog"])
def test_lidar_returns_match_numpy_on_random_and_hostile_hits(weather: str) -> None:
    """Synthetic hits with what a ray caster never gives too: NaN and negative distances, hits
    inside the minimum range, no hit at all, grazing and reflective extremes."""
    rng = np.random.default_rng(9)
    spec = lidar.LidarSpec(beams=16, columns=256)
    shape = (spec.columns, spec.beams)
    distance = rng.uniform(0.0, 120.0, shape)
    distance[rng.random(shape) < 0.2] = np.inf
    distance.flat[rng.integers(0, distance.size, 40)] = rng.choice([np.nan, -np.inf, -3.0, 0.0, spec.min_range_m], 40)
    reflect = rng.choice([0.0, 0.05, 0.4, 1.0], shape)
    cosine = rng.uniform(0.0, 1.0, shape)
    label = rng.integers(-4, 30, shape)
    times = 10.0 + (np.arange(spec.columns) + 0.5) / spec.columns * spec.period_s
    args = (distance, reflect, cosine, label, spec.directions(), times, 10.0, spec, weather)
    got = lidar._returns(*args, np.random.default_rng(4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = lidar._returns_reference(*args, np.random.default_rng(4))
    same((got.data, got.label), (want.data, want.label))
    assert len(got.data) > 0
    nothing = (np.full(shape, np.inf), *args[1:])  # no ray hit: in rain and fog, clutter only
    got = lidar._returns(*nothing, np.random.default_rng(4))
    want = lidar._returns_reference(*nothing, np.random.default_rng(4))
    same((got.data, got.label), (want.data, want.label))
    assert got.data.shape[1] == 6 and (len(got.data) == 0) == (weather == "clear")
