"""A spinning multi-beam LiDAR, ray-cast into the simulated world.

The head turns once per sweep; each column of beams fires at its own time from where the car is
at that moment, and each point is reported in the sensor frame *of that moment*. That is exactly
why real sweeps look smeared when the car moves, and why ``time_offset`` exists.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fusion_stream.core.calib import Transform
from fusion_stream.errors import ParamError
from fusion_stream.runtime import jit
from fusion_stream.sim.scene import (
    GROUND,
    GROUND_LABEL,
    MATERIALS,
    NOTHING,
    STATIC,
    WEATHER_CLUTTER,
    Raycaster,
    build_mesh,
    road_marking,
    sensor_poses,
    solids,
)
from fusion_stream.sim.world import World

FIELDS = ("x", "y", "z", "intensity", "ring", "time_offset")


# weather → (random dropout, two-way extinction per metre, fraction of rays returning off droplets)
_WEATHER = {"clear": (0.005, 0.0, 0.0), "rain": (0.03, 0.004, 0.002), "fog": (0.05, 0.02, 0.01)}
_PAINT_REFLECTIVITY = 0.65


@dataclass(frozen=True)
class LidarSpec:
    """The unit's geometry and noise. Defaults are an HDL-32E-like sensor."""

    beams: int = 32
    columns: int = 1024
    rate_hz: float = 10.0
    elevation_deg: tuple[float, float] = (-30.67, 10.67)
    max_range_m: float = 100.0
    min_range_m: float = 0.8
    range_noise_m: float = 0.02
    sectors: int = 8
    """Actors are re-posed this many times per sweep (their motion within a sector is ignored)."""

    def __post_init__(self) -> None:
        for key, ok, need in (
            ("beams", self.beams >= 1, ">= 1"),
            ("columns", self.columns >= 8, ">= 8"),
            ("rate_hz", self.rate_hz > 0, "> 0"),
            ("sectors", self.sectors >= 1, ">= 1"),
        ):
            if not ok:
                raise ParamError(key, f"must be {need}, got {getattr(self, key)}")

    @classmethod
    def preset(cls, beams: int, rate_hz: float = 10.0) -> LidarSpec:
        """16, 32 or 64 beams with the vertical field of view of the matching Velodyne unit."""
        fov = {16: (-15.0, 15.0), 32: (-30.67, 10.67), 64: (-24.9, 2.0)}
        if beams not in fov:
            raise ParamError("beams", f"must be 16, 32 or 64, got {beams}")
        return cls(beams=beams, rate_hz=rate_hz, elevation_deg=fov[beams])

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def max_points(self) -> int:
        """The most points a sweep can have: one return per ray (weather clutter replaces a miss)."""
        return self.columns * self.beams

    @property
    def max_bytes(self) -> int:
        """Bytes of a sweep of :attr:`max_points` rows of :data:`FIELDS` (float32)."""
        return self.max_points * len(FIELDS) * np.dtype(np.float32).itemsize

    def directions(self) -> np.ndarray:
        """Unit ray directions in the sensor frame, columns × beams × 3 (x forward, z up)."""
        az = 2 * np.pi * np.arange(self.columns) / self.columns
        el = np.radians(np.linspace(*self.elevation_deg, self.beams))
        ce = np.cos(el)
        return np.stack(
            [
                np.outer(np.cos(az), ce),
                np.outer(np.sin(az), ce),
                np.broadcast_to(np.sin(el), (self.columns, self.beams)),
            ],
            axis=2,
        )


@dataclass(frozen=True, eq=False)
class Sweep:
    """One rotation: N×6 float32 rows of :data:`FIELDS` in the sensor frame, and what each point
    hit (actor id ≥ 0, :data:`GROUND_LABEL`, :data:`STATIC` or :data:`WEATHER_CLUTTER`)."""

    data: np.ndarray
    label: np.ndarray


def sweep(
    world: World, start_s: float, mount: Transform, spec: LidarSpec, *, salt: int = 0, stamp_ns: int = 0
) -> Sweep:
    """The sweep that starts at scenario time ``start_s``; ``mount`` is sensor → rig.

    Random effects are seeded by (scenario seed, ``salt``, ``stamp_ns``), so the same call gives
    the same points in any process."""
    return SweepCast(world, start_s, mount, spec, salt=salt, stamp_ns=stamp_ns).finish()


class SweepCast:
    """One sweep, ray-cast a sector at a time as the head passes it.

    A live node casts each sector once its last column has fired (:meth:`cast_until`), so when the
    rotation ends only the last sector and the returns are left: the sweep is out a few ms after
    its end, as a real unit's driver would have it, instead of one whole cast (~50 ms) later.
    The result does not depend on how the casting was split: :meth:`finish` gives exactly
    :func:`sweep`'s points."""

    def __init__(
        self, world: World, start_s: float, mount: Transform, spec: LidarSpec, *, salt: int = 0, stamp_ns: int = 0
    ) -> None:
        self.world, self.start_s, self.spec = world, start_s, spec
        self._seed = [world.scenario.seed, 1, salt, stamp_ns]
        cols = np.arange(spec.columns)
        self.times = start_s + (cols + 0.5) / spec.columns * spec.period_s
        self._anchor_x = world.ego_pose(start_s)[0]
        self._origins, rotations = sensor_poses(world, self.times, self._anchor_x, mount)
        self._dirs_sensor = spec.directions()  # C×B×3
        self._dirs_local = np.einsum("cij,cbj->cbi", rotations, self._dirs_sensor)
        shape = (spec.columns, spec.beams)
        self._distance = np.full(shape, np.inf)
        self._label = np.full(shape, NOTHING, np.int64)
        self._reflect = np.zeros(shape)
        self._cosine = np.zeros(shape)
        self._sectors = np.array_split(cols, spec.sectors)
        self._cast = 0

    @property
    def remaining(self) -> int:
        """Sectors not cast yet."""
        return len(self._sectors) - self._cast

    def cast_until(self, t_s: float) -> int:
        """Cast every sector whose last column fired by scenario time ``t_s``; how many were cast."""
        done = 0
        while self.remaining and self.times[self._sectors[self._cast][-1]] <= t_s:
            self._cast_next()
            done += 1
        return done

    def finish(self, out: np.ndarray | None = None) -> Sweep:
        """Cast what is left and turn the hits into the sweep's points.

        With ``out`` (float32, C-contiguous, at least :attr:`LidarSpec.max_points` rows of
        :data:`FIELDS`; a publisher's loan, say) the points are written straight into its first
        rows and the sweep's ``data`` is that prefix of ``out``: no array of its own, no copy."""
        while self.remaining:
            self._cast_next()
        rng = np.random.default_rng(self._seed)
        weather = self.world.scenario.weather
        return _returns(
            self._distance,
            self._reflect,
            self._cosine,
            self._label,
            self._dirs_sensor,
            self.times,
            self.start_s,
            self.spec,
            weather,
            rng,
            out=out,
        )

    def _cast_next(self) -> None:
        sector = self._sectors[self._cast]
        self._cast += 1
        world, spec = self.world, self.spec
        t_mid = float(self.times[sector].mean())
        mesh = build_mesh(solids(world, t_mid, self._anchor_x, radius=spec.max_range_m + 20))
        caster = Raycaster(mesh)
        o = np.repeat(self._origins[sector], spec.beams, axis=0)
        d = self._dirs_local[sector].reshape(-1, 3)
        hits = caster.cast(o, d, spec.max_range_m)
        shape = (len(sector), spec.beams)
        self._distance[sector] = hits.distance.reshape(shape)
        self._cosine[sector] = np.abs(np.einsum("ij,ij->i", hits.normal, d)).reshape(shape)
        kinds = [s.kind for s in mesh.solids]
        # owner -1 (ground) and -2 (nothing) index the last two table entries
        ids = np.array([s.actor_id if s.actor_id >= 0 else STATIC for s in mesh.solids] + [NOTHING, GROUND_LABEL])
        refl = np.array([MATERIALS[k].reflectivity for k in kinds] + [0.0, MATERIALS["ground"].reflectivity])
        owner = hits.owner
        self._label[sector] = ids[owner].reshape(shape)
        r = refl[owner]
        on_ground = owner == GROUND
        if on_ground.any():
            p = o[on_ground] + d[on_ground] * hits.distance[on_ground, None]
            paint = road_marking(p[:, 0] + self._anchor_x, p[:, 1], world.scenario.lanes, world.scenario.lane_width)
            r[np.flatnonzero(on_ground)[paint]] = _PAINT_REFLECTIVITY
        self._reflect[sector] = r.reshape(shape)


def _returns(
    distance: np.ndarray,
    reflect: np.ndarray,
    cosine: np.ndarray,
    label: np.ndarray,
    dirs_sensor: np.ndarray,
    times: np.ndarray,
    start_s: float,
    spec: LidarSpec,
    weather: str,
    rng: np.random.Generator,
    out: np.ndarray | None = None,
) -> Sweep:
    """Ray hits (columns × beams) → the sweep's points: which rays return (range, light back,
    dropout, absorption, weather clutter), with noise, as N×6 rows in column-then-beam order,
    written into the first rows of ``out`` when given (see :meth:`SweepCast.finish`).

    One pass of a compiled kernel; the random draws stay numpy's, in the same order, so the
    result is bit-identical to :func:`_returns_reference`."""
    dropout, extinction, clutter = _WEATHER[weather]
    # the random draws, in the order and shapes the numpy reference makes them (_returns_reference)
    shape = distance.shape
    lost, absorbed = rng.random(shape), rng.random(shape)
    rng_noise = rng.normal(0.0, spec.range_noise_m, shape)
    spurious_draw, spurious_range = (
        (rng.random(shape), rng.uniform(spec.min_range_m, 8.0, shape))
        if clutter > 0
        else (np.empty((0, 0)), np.empty((0, 0)))
    )
    if extinction > 0:  # numpy's exp, not the kernel's: libm and numpy's SIMD exp may differ in the last bit
        hit = np.isfinite(distance) & (distance >= spec.min_range_m)
        attenuation = np.exp(-2 * extinction * np.where(hit, distance, 1.0))
    else:
        attenuation = np.empty((0, 0))  # exp(-0) = 1 exactly
    data = np.empty((distance.size, len(FIELDS)), np.float32) if out is None else _rows_of(out, distance.size)
    kept_intensity = np.empty(distance.size)
    kept_label = np.empty(distance.size, np.int64)
    n = _returns_kernel()(
        distance,
        reflect,
        cosine,
        label,
        dirs_sensor,
        times - start_s,
        spec.min_range_m,
        attenuation,
        dropout,
        clutter,
        lost,
        absorbed,
        rng_noise,
        spurious_draw,
        spurious_range,
        WEATHER_CLUTTER,
        data,
        kept_intensity,
        kept_label,
    )
    data = data[:n]
    data[:, 3] = np.clip(kept_intensity[:n] + rng.normal(0, 0.01, n), 0.0, 1.0)
    return Sweep(data=data, label=kept_label[:n])


def _rows_of(out: np.ndarray, rows: int) -> np.ndarray:
    """The first ``rows`` rows of ``out``, checked to be a buffer the kernel can fill in place."""
    if out.dtype != np.float32 or out.ndim != 2 or out.shape[1] != len(FIELDS) or not out.flags.c_contiguous:
        raise ParamError(
            "out", f"must be a C-contiguous float32 array of {len(FIELDS)} columns, got {out.dtype} {out.shape}"
        )
    if out.shape[0] < rows or not out.flags.writeable:
        raise ParamError("out", f"must be writable with at least {rows} rows (one per ray), got {out.shape[0]}")
    return out[:rows]


def _returns_loop(
    distance: np.ndarray,
    reflect: np.ndarray,
    cosine: np.ndarray,
    label: np.ndarray,
    dirs: np.ndarray,
    column_offset: np.ndarray,
    min_range: float,
    attenuation: np.ndarray,
    dropout: float,
    clutter: float,
    lost: np.ndarray,
    absorbed: np.ndarray,
    noise: np.ndarray,
    spurious_draw: np.ndarray,
    spurious_range: np.ndarray,
    clutter_label: int,
    data: np.ndarray,
    kept_intensity: np.ndarray,
    kept_label: np.ndarray,
) -> int:
    """The kernel of :func:`_returns`: fills the first rows of ``data`` (all but the intensity
    column), ``kept_intensity`` and ``kept_label``; the number of points. An empty
    ``attenuation`` means 1 everywhere, an empty ``spurious_draw`` no clutter. The reference's
    float64 expressions, operand for operand."""
    n_cols, n_beams = distance.shape
    has_attenuation = attenuation.shape[0] > 0
    has_clutter = spurious_draw.shape[0] > 0
    n = 0
    for c in range(n_cols):
        for b in range(n_beams):
            d = distance[c, b]
            hit = math.isfinite(d) and d >= min_range
            safe = d if hit else 1.0
            light = attenuation[c, b] if has_attenuation else 1.0
            intensity = reflect[c, b] * (0.3 + 0.7 * cosine[c, b]) * light
            scale = safe / 40.0
            strong = intensity / (scale * scale) > 0.01
            kept = hit and strong and lost[c, b] >= dropout and absorbed[c, b] < light
            measured = d + noise[c, b]
            owner = label[c, b]
            if has_clutter and not kept and spurious_draw[c, b] < clutter:
                measured, intensity, owner, kept = spurious_range[c, b], 0.02, clutter_label, True
            if kept:
                for k in range(3):
                    data[n, k] = np.float32(dirs[c, b, k] * measured)
                data[n, 4] = np.float32(b)
                data[n, 5] = np.float32(column_offset[c])
                kept_intensity[n] = intensity
                kept_label[n] = owner
                n += 1
    return n


_RETURNS_SIGNATURE = (
    "int64(float64[:, :], float64[:, :], float64[:, :], int64[:, :], float64[:, :, :], float64[:], float64, "
    "float64[:, :], float64, float64, float64[:, :], float64[:, :], float64[:, :], float64[:, :], float64[:, :], "
    "int64, float32[:, :], float64[:], int64[:])"
)


@functools.cache
def _returns_kernel() -> Callable[..., int]:
    """:func:`_returns_loop` compiled on first use (see :mod:`fusion_stream.runtime.jit`)."""
    return jit.njit(_returns_loop, [_RETURNS_SIGNATURE])


def _returns_reference(
    distance: np.ndarray,
    reflect: np.ndarray,
    cosine: np.ndarray,
    label: np.ndarray,
    dirs_sensor: np.ndarray,
    times: np.ndarray,
    start_s: float,
    spec: LidarSpec,
    weather: str,
    rng: np.random.Generator,
    out: np.ndarray | None = None,
) -> Sweep:
    """Ray hits → the sweep's points: the numpy code :func:`_returns` replaced, for
    tests/test_kernels.py and bench/kernels.py (``out`` as there)."""
    dropout, extinction, clutter = _WEATHER[weather]
    hit = np.isfinite(distance) & (distance >= spec.min_range_m)
    safe = np.where(hit, distance, 1.0)
    attenuation = np.exp(-2 * extinction * safe)
    intensity = reflect * (0.3 + 0.7 * cosine) * attenuation
    # a return needs enough light back: dark, far or grazing surfaces drop out, as on a real unit
    strong = intensity / (safe / 40.0) ** 2 > 0.01
    kept = hit & strong & (rng.random(hit.shape) >= dropout) & (rng.random(hit.shape) < attenuation)
    rng_noise = rng.normal(0.0, spec.range_noise_m, hit.shape)
    measured = distance + rng_noise
    if clutter > 0:
        spurious = ~kept & (rng.random(hit.shape) < clutter)
        measured = np.where(spurious, rng.uniform(spec.min_range_m, 8.0, hit.shape), measured)
        intensity = np.where(spurious, 0.02, intensity)
        label = np.where(spurious, WEATHER_CLUTTER, label)
        kept = kept | spurious
    col_idx, beam_idx = np.nonzero(kept)
    points = dirs_sensor[col_idx, beam_idx] * measured[col_idx, beam_idx, None]
    n = len(col_idx)
    data = np.empty((n, len(FIELDS)), np.float32) if out is None else _rows_of(out, distance.size)[:n]
    data[:, :3] = points
    data[:, 3] = np.clip(intensity[col_idx, beam_idx] + rng.normal(0, 0.01, len(col_idx)), 0.0, 1.0)
    data[:, 4] = beam_idx
    data[:, 5] = times[col_idx] - start_s
    return Sweep(data=data, label=label[col_idx, beam_idx])


def to_rig(data: np.ndarray, mount: Transform, velocity_rig: np.ndarray) -> np.ndarray:
    """Sweep points (rows of :data:`FIELDS`) → N×3 in the rig frame *at the sweep's stamp*,
    undoing the ego's motion during the sweep for a constant velocity (m/s, rig frame)."""
    xyz = mount.apply(data[:, :3].astype(np.float64))
    return np.asarray(xyz + data[:, 5:6].astype(np.float64) * np.asarray(velocity_rig)[None, :3])


def azimuth_of(points: np.ndarray) -> np.ndarray:
    """Azimuth (rad, 0..2π) of sensor-frame points, the column they were fired in."""
    return np.asarray(np.mod(np.arctan2(points[:, 1], points[:, 0]), 2 * math.pi))
