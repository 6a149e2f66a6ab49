"""Sensor messages → the fusion network's fixed-shape input tensors (pure numpy, deterministic).

Pillarization happens here rather than in the graph so the exported model uses standard ops only
and the same points always give the same tensors. The calibration enters as data (the camera's
projection matrix, the microphones' positions), so a new rig needs no retraining of the geometry.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_stream.core import calib, msgs
from fusion_stream.errors import FormatError
from fusion_stream.model.config import MODALITIES, ModelConfig
from fusion_stream.runtime import jit

SPEED_OF_SOUND = 343.0
STRONG_BIN_FACTOR = 10.0
MIN_STRONG_BINS = 3
INPUT_NAMES: tuple[str, ...] = (
    "lidar_pillars",
    "lidar_index",
    "radar_pillars",
    "radar_index",
    "image",
    "cam_proj",
    "audio",
    "present",
)
LIDAR_FEATURES = 10
RADAR_FEATURES = 10

Inputs = dict[str, np.ndarray]
"""One frame's network inputs by name (no batch axis)."""


@dataclass(frozen=True)
class RigGeometry:
    """What pre-processing needs from the calibration, resolved once per rig."""

    lidar: calib.Sensor | None
    camera: calib.Sensor | None
    radar: calib.Sensor | None
    microphones: np.ndarray | None
    """M×3 microphone positions in the rig frame."""

    @classmethod
    def from_rig(cls, rig: calib.Rig) -> RigGeometry:
        def first(kind: calib.SensorType) -> calib.Sensor | None:
            found = rig.of_type(kind)
            return found[0] if found else None

        mic = first("microphones")
        mics = None if mic is None or mic.microphones is None else mic.extrinsics.apply(mic.microphones)
        return cls(first("lidar"), first("camera"), first("radar"), mics)


# --------------------------------------------------------------------------- pillars


def pillarize(
    xy: np.ndarray, features: np.ndarray, cfg: ModelConfig, max_pillars: int, max_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group points into BEV cells: (pillars P×N×F, flat cell index P, cell centres P×2).

    Unused pillar slots point at the dummy cell ``nx·ny`` and hold zeros. When there are more
    occupied cells than ``max_pillars``, the fullest are kept (ties by cell index), and within a
    cell the first ``max_points`` points in input order — so the result never depends on hashing
    or threads. A point with a NaN or infinite coordinate is in no cell. One pass of a compiled
    kernel, bit-identical to the numpy :func:`_pillarize_reference` (tests/test_kernels.py)."""
    pillars, index, centres, _ = _pillarize(xy, features, cfg, max_pillars, max_points)
    return pillars, index, centres


def _pillarize(
    xy: np.ndarray, features: np.ndarray, cfg: ModelConfig, max_pillars: int, max_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """:func:`pillarize`, and how many pillars are occupied (they come first)."""
    nx, ny = cfg.grid
    feats = np.asarray(features, np.float32)
    if np.ndim(xy) != 2 or np.shape(xy)[1] < 2 or feats.ndim != 2 or len(feats) != len(xy):
        # the kernel does not check bounds: a mismatch must stop here, not read past an array
        raise FormatError(f"pillarize needs N×2 coordinates and N×F features, got {np.shape(xy)} and {feats.shape}")
    pillars = np.zeros((max_pillars, max_points, feats.shape[1]), np.float32)
    index = np.full(max_pillars, nx * ny, np.int64)
    centres = np.zeros((max_pillars, 2), np.float32)
    # numpy computes the cell in the coordinates' own precision (float32 stays float32): so does the kernel
    single = np.asarray(xy).dtype == np.float32
    kind = np.float32 if single else np.float64
    xy = np.asarray(xy, np.float64)
    used = _kernels().pillars(
        xy[:, 0],
        xy[:, 1],
        single,
        float(kind(cfg.x_range[0])),
        float(kind(cfg.y_range[0])),
        float(kind(cfg.cell)),
        feats,
        nx,
        ny,
        float(cfg.x_range[0]),
        float(cfg.y_range[0]),
        float(cfg.cell),
        pillars,
        index,
        centres,
    )
    return pillars, index, centres, int(used)


def lidar_inputs(points_rig: np.ndarray, intensity: np.ndarray, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """LiDAR points (rig frame) → pillars [P, N, 10] and their cells [P].

    Point features: x, y, z, intensity, offsets to the pillar mean (3) and centre (2), valid."""
    feats = _lidar_features(points_rig, intensity)
    pillars, index, centres, used = _pillarize(
        points_rig[:, :2], feats, cfg, cfg.lidar_pillars, cfg.lidar_points_per_pillar
    )
    _kernels().offsets(pillars, centres, used, 3, 4, 7)
    return pillars, index


def radar_inputs(
    points_rig: np.ndarray, radial_velocity: np.ndarray, rcs: np.ndarray, origin: np.ndarray, cfg: ModelConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Radar detections (rig frame) → pillars [P, N, 10] and their cells [P].

    Point features: x, y, z, radial velocity, RCS/10, the radial velocity as a vector along the
    line of sight (2), offsets to the pillar centre (2), valid."""
    feats = _radar_features(points_rig, radial_velocity, rcs, origin)
    pillars, index, centres, used = _pillarize(
        points_rig[:, :2], feats, cfg, cfg.radar_pillars, cfg.radar_points_per_pillar
    )
    _kernels().offsets(pillars, centres, used, 0, 7, 7)
    return pillars, index


def _lidar_features(points_rig: np.ndarray, intensity: np.ndarray) -> np.ndarray:
    feats = np.zeros((len(points_rig), LIDAR_FEATURES), np.float32)
    feats[:, :3] = points_rig
    feats[:, 3] = intensity
    feats[:, -1] = 1.0
    return feats


def _radar_features(
    points_rig: np.ndarray, radial_velocity: np.ndarray, rcs: np.ndarray, origin: np.ndarray
) -> np.ndarray:
    los = points_rig[:, :2] - origin[:2]
    los /= np.maximum(np.linalg.norm(los, axis=1, keepdims=True), 1e-6)
    feats = np.zeros((len(points_rig), RADAR_FEATURES), np.float32)
    feats[:, :3] = points_rig
    feats[:, 3] = radial_velocity
    feats[:, 4] = rcs / 10.0
    feats[:, 5:7] = los * radial_velocity[:, None]
    feats[:, -1] = 1.0
    return feats


# --------------------------------------------------------------------------- compiled kernels
# Plain functions over arrays, compiled by numba on first use rather than at import (a command
# that never pillarizes pays nothing, not even numba's import), with explicit signatures: any
# layout of the arrays (a column view, an empty or a one-point cloud) runs the same machine code
# instead of compiling another version. The code is cached next to this file, or in the user's
# cache directory when the install is read-only; with neither writable it is compiled in memory
# in each process. No fastmath: the same IEEE operations as numpy in the same order, so the
# results are bit-identical.


def _pillar_kernel(
    x: np.ndarray,
    y: np.ndarray,
    single: bool,
    x0: float,
    y0: float,
    cell: float,
    feats: np.ndarray,
    nx: int,
    ny: int,
    centre_x0: float,
    centre_y0: float,
    centre_cell: float,
    pillars: np.ndarray,
    index: np.ndarray,
    centres: np.ndarray,
) -> int:
    """Fill ``pillars``, ``index`` and ``centres`` (zeros and the dummy cell on entry); the number
    of occupied pillars.

    A counting sort over the grid in place of numpy's stable argsort gives the same order: cells
    ascending, a cell's points in input order. When cells overflow ``max_pillars``, a histogram
    of the counts finds the fewest points a kept cell has (``threshold``); cells above it are all
    kept and the first ``ties`` cells with exactly that many, ascending, as the reference's lexsort."""
    n = x.shape[0]
    max_pillars, max_points, n_feats = pillars.shape
    point_cell = np.empty(n, np.int64)
    counts = np.zeros(nx * ny, np.int64)
    occupied = 0
    most = 0
    for i in range(n):
        if single:  # float32 arithmetic: each float64 result rounded to float32 is the float32 result
            fx = np.floor(np.float64(np.float32(np.float64(np.float32(x[i] - x0)) / cell)))
            fy = np.floor(np.float64(np.float32(np.float64(np.float32(y[i] - y0)) / cell)))
        else:
            fx = np.floor((x[i] - x0) / cell)
            fy = np.floor((y[i] - y0) / cell)
        # comparing floats rejects NaN and ±inf, which numpy's cast turns into INT64_MIN (outside too)
        if fx >= 0 and fx < nx and fy >= 0 and fy < ny:
            c = int(fx) * ny + int(fy)
            point_cell[i] = c
            if counts[c] == 0:
                occupied += 1
            counts[c] += 1
            most = max(most, counts[c])
        else:
            point_cell[i] = -1
    threshold = 1
    ties = occupied
    if occupied > max_pillars:
        histogram = np.zeros(most + 1, np.int64)
        for c in range(nx * ny):
            histogram[counts[c]] += 1
        ties = max_pillars
        threshold = most
        while ties > histogram[threshold]:  # stops above 0: more than max_pillars cells hold points
            ties -= histogram[threshold]
            threshold -= 1
    slot = counts  # reused in place: a cell's pillar slot, -1 for an empty or dropped cell
    used = 0
    for c in range(nx * ny):
        k = counts[c]
        keep = k > threshold
        if k == threshold and ties > 0:
            keep = True
            ties -= 1
        if keep:
            slot[c] = used
            index[used] = c
            centres[used, 0] = np.float32(centre_x0 + (c // ny + 0.5) * centre_cell)
            centres[used, 1] = np.float32(centre_y0 + (c % ny + 0.5) * centre_cell)
            used += 1
        else:
            slot[c] = -1
    filled = np.zeros(max(used, 1), np.int64)
    for i in range(n):
        c = point_cell[i]
        if c >= 0:
            s = slot[c]
            if s >= 0 and filled[s] < max_points:
                for f in range(n_feats):
                    pillars[s, filled[s], f] = feats[i, f]
                filled[s] += 1
    return used


def _offsets_kernel(
    pillars: np.ndarray, centres: np.ndarray, used: int, mean_cols: int, mean_at: int, centre_at: int
) -> None:
    """In the first ``used`` pillars: columns ``mean_at…+mean_cols`` ← the first ``mean_cols``
    coordinates minus their mean over the pillar's valid points, ``centre_at…+2`` ← x, y minus the
    cell centre, each times the valid flag (last column).

    float32 throughout, sums in point order (as numpy's reduction over that axis), padding rows
    get ``(0 - m)·0``, a signed zero, exactly as in the reference."""
    n_points, n_feats = pillars.shape[1], pillars.shape[2]
    mean = np.zeros(max(mean_cols, 1), np.float32)
    for p in range(used):
        if mean_cols > 0:
            count = np.float32(0.0)
            for j in range(n_points):
                count += pillars[p, j, n_feats - 1]
            count = max(count, np.float32(1.0))
            for k in range(mean_cols):
                total = np.float32(0.0)
                for j in range(n_points):
                    total += pillars[p, j, k] * pillars[p, j, n_feats - 1]
                mean[k] = total / count
        for j in range(n_points):
            valid = pillars[p, j, n_feats - 1]
            for k in range(mean_cols):
                pillars[p, j, mean_at + k] = (pillars[p, j, k] - mean[k]) * valid
            for k in range(2):
                pillars[p, j, centre_at + k] = (pillars[p, j, k] - centres[p, k]) * valid


_PILLAR_SIGNATURES = [
    "int64(float64[:], float64[:], boolean, float64, float64, float64, float32[:, :], int64, int64, "
    "float64, float64, float64, float32[:, :, :], int64[:], float32[:, :])"
]
_OFFSETS_SIGNATURES = ["void(float32[:, :, :], float32[:, :], int64, int64, int64, int64)"]


@dataclass(frozen=True)
class _Kernels:
    pillars: Callable[..., int]
    offsets: Callable[..., None]


@functools.cache
def _kernels() -> _Kernels:
    """The compiled kernels, built on the first call in a process (loaded from numba's cache
    when it has them)."""
    return _Kernels(
        pillars=_jit(_pillar_kernel, _PILLAR_SIGNATURES), offsets=_jit(_offsets_kernel, _OFFSETS_SIGNATURES)
    )


def compile_kernels() -> float:
    """Compile the pre-processing kernels now (or load them from numba's cache); the milliseconds
    it took. A node calls this before its first frame so that frame does not pay for it."""
    t0 = time.perf_counter()
    _kernels()
    return (time.perf_counter() - t0) * 1e3


def _jit(func: Callable[..., Any], signatures: list[str]) -> Callable[..., Any]:
    return jit.njit(func, signatures)


# --------------------------------------------------------------------------- numpy references
# The numpy implementation the kernels replaced, for tests/test_kernels.py and bench/kernels.py.


def _pillarize_reference(
    xy: np.ndarray, features: np.ndarray, cfg: ModelConfig, max_pillars: int, max_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pillarize` in numpy (argsort, unique, lexsort)."""
    nx, ny = cfg.grid
    n_features = features.shape[1]
    pillars = np.zeros((max_pillars, max_points, n_features), np.float32)
    index = np.full(max_pillars, nx * ny, np.int64)
    centres = np.zeros((max_pillars, 2), np.float32)
    ix = np.floor((xy[:, 0] - cfg.x_range[0]) / cfg.cell).astype(np.int64)
    iy = np.floor((xy[:, 1] - cfg.y_range[0]) / cfg.cell).astype(np.int64)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    if not inside.any():
        return pillars, index, centres
    cell = (ix * ny + iy)[inside]
    feats = features[inside]
    order = np.argsort(cell, kind="stable")
    cell, feats = cell[order], feats[order]
    cells, starts, counts = np.unique(cell, return_index=True, return_counts=True)
    if len(cells) > max_pillars:
        keep = np.lexsort((cells, -counts))[:max_pillars]
        keep.sort()
    else:
        keep = np.arange(len(cells))
    slot = np.full(len(cells), -1, np.int64)
    slot[keep] = np.arange(len(keep))
    rank = np.arange(len(cell)) - np.repeat(starts, counts)
    point_slot = np.repeat(slot, counts)
    ok = (point_slot >= 0) & (rank < max_points)
    pillars[point_slot[ok], rank[ok]] = feats[ok]
    index[: len(keep)] = cells[keep]
    centres[: len(keep), 0] = cfg.x_range[0] + (cells[keep] // ny + 0.5) * cfg.cell
    centres[: len(keep), 1] = cfg.y_range[0] + (cells[keep] % ny + 0.5) * cfg.cell
    return pillars, index, centres


def _with_pillar_offsets_reference(all_pillars: np.ndarray, centres: np.ndarray, xyz_cols: int) -> None:
    """Fill the offset columns (to the pillar's mean point, then to its centre) in place.

    Layout of the last axis: [own features..., dx_mean, dy_mean, dz_mean?, dx_centre, dy_centre, valid]."""
    used = int(np.count_nonzero(all_pillars[:, 0, -1]))  # occupied pillars come first
    pillars = all_pillars[:used]
    centres = centres[:used]
    valid = pillars[..., -1:]
    count = np.maximum(valid.sum(axis=1, keepdims=True), 1.0)
    mean = (pillars[..., :xyz_cols] * valid).sum(axis=1, keepdims=True) / count
    off = pillars.shape[-1] - 1 - 2 - xyz_cols
    pillars[..., off : off + xyz_cols] = (pillars[..., :xyz_cols] - mean) * valid
    pillars[..., off + xyz_cols : off + xyz_cols + 2] = (pillars[..., :2] - centres[:, None, :]) * valid


def _lidar_inputs_reference(
    points_rig: np.ndarray, intensity: np.ndarray, cfg: ModelConfig
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lidar_inputs` in numpy."""
    feats = _lidar_features(points_rig, intensity)
    pillars, index, centres = _pillarize_reference(
        points_rig[:, :2], feats, cfg, cfg.lidar_pillars, cfg.lidar_points_per_pillar
    )
    _with_pillar_offsets_reference(pillars, centres, 3)
    return pillars, index


def _radar_inputs_reference(
    points_rig: np.ndarray, radial_velocity: np.ndarray, rcs: np.ndarray, origin: np.ndarray, cfg: ModelConfig
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`radar_inputs` in numpy."""
    feats = _radar_features(points_rig, radial_velocity, rcs, origin)
    pillars, index, centres = _pillarize_reference(
        points_rig[:, :2], feats, cfg, cfg.radar_pillars, cfg.radar_points_per_pillar
    )
    valid = pillars[..., -1:]
    pillars[..., 7:9] = (pillars[..., :2] - centres[:, None, :]) * valid
    return pillars, index


# --------------------------------------------------------------------------- camera


def camera_inputs(rgb: np.ndarray, camera: calib.Sensor, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """An H×W×3 uint8 image → a 3×h×w float image in [0, 1] at the model's size, and the 3×4
    matrix projecting rig points to pixels of that resized image (u in [0, w) across)."""
    assert camera.intrinsics is not None
    h, w = cfg.image_size
    src_h, src_w = rgb.shape[:2]
    if (src_h, src_w) == (2 * h, 2 * w):  # 2×2 box filter by slicing: 10× faster than a reshaped mean
        total = rgb[0::2, 0::2].astype(np.uint16) + rgb[1::2, 0::2] + rgb[0::2, 1::2] + rgb[1::2, 1::2]
        small = total.astype(np.float32) / np.float32(4.0)
    elif (src_h, src_w) == (h, w):
        small = rgb.astype(np.float32)
    else:
        from PIL import Image as PILImage

        small = np.asarray(PILImage.fromarray(rgb).resize((w, h), PILImage.Resampling.BILINEAR), np.float32)
    image = np.ascontiguousarray(small.transpose(2, 0, 1)) / np.float32(255.0)
    k = camera.intrinsics
    scale = np.diag([w / k.width, h / k.height, 1.0])
    rig_to_cam = camera.extrinsics.inverse().matrix[:3, :]
    return image.astype(np.float32), (scale @ k.matrix @ rig_to_cam).astype(np.float32)


# --------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class _AudioPlan:
    """What SRP-PHAT needs that depends only on the array, the rate and the window: computed once."""

    window: np.ndarray
    band: np.ndarray
    pairs: tuple[tuple[int, int], ...]
    steering: np.ndarray
    """pairs × azimuth bins × band frequencies: the phase that aligns each pair for each direction."""
    band_edges: np.ndarray
    """Spectrum index ranges of the log-energy bands."""


@functools.lru_cache(maxsize=8)
def _audio_plan(mics_key: bytes, n_mics: int, sample_rate: int, n: int, bins: int, bands: int) -> _AudioPlan:
    mics = np.frombuffer(mics_key, np.float64).reshape(n_mics, 3)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    band = np.nonzero((freqs >= 300.0) & (freqs <= 4000.0))[0]
    az = np.arange(bins) * (2 * np.pi / bins)
    dirs = np.stack([np.cos(az), np.sin(az), np.zeros_like(az)], axis=1)
    centred = mics - mics.mean(axis=0)
    delay = -(dirs @ centred.T) / SPEED_OF_SOUND  # arrival delay per direction and microphone
    pairs = tuple((i, j) for i in range(n_mics) for j in range(i + 1, n_mics))
    steering = np.stack([np.exp(2j * np.pi * np.outer(delay[:, i] - delay[:, j], freqs[band])) for i, j in pairs])
    edges = np.searchsorted(freqs, np.geomspace(250.0, 4000.0, bands + 1))
    return _AudioPlan(np.hanning(n), band, pairs, steering, edges)


def audio_inputs(samples: np.ndarray, sample_rate: int, microphones_rig: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """C×S microphone samples → [SRP-PHAT over azimuth bins (normalised 0..1), log band energies
    (mean removed), log level, SRP peak-to-mean ratio].

    SRP-PHAT: the phase-transform cross-spectra of every microphone pair, steered over horizontal
    directions; the direction of a siren gives the highest response."""
    n = cfg.audio_samples
    mics = np.ascontiguousarray(microphones_rig, np.float64)
    plan = _audio_plan(mics.tobytes(), len(mics), sample_rate, n, cfg.azimuth_bins, cfg.audio_bands)
    x = np.zeros((samples.shape[0], n), np.float64)
    take = min(n, samples.shape[1])
    x[:, :take] = samples[:, -take:]
    x -= x.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(x * plan.window, axis=1)
    inband = spec[:, plan.band]
    i, j = np.array(plan.pairs).T
    cross = inband[i] * np.conj(inband[j])
    cross /= np.maximum(np.abs(cross), 1e-12)
    # PHAT gives every frequency bin the same weight, so the many bins holding only road noise
    # (partly common to all microphones: a zero-delay "source") would outvote a siren's few
    # tonal bins and pull the peak ~10° off. Steer only the bins that stand well above the
    # in-band noise floor, when there are any.
    bin_power = np.mean(np.abs(inband) ** 2, axis=0)
    loud = bin_power > STRONG_BIN_FACTOR * np.median(bin_power)
    if loud.sum() >= MIN_STRONG_BINS:
        cross = cross * loud
    srp = np.einsum("pkf,pf->k", plan.steering, cross).real
    lo, hi = srp.min(), srp.max()
    srp_norm = (srp - lo) / (hi - lo) if hi > lo else np.zeros_like(srp)
    peak = float((hi - srp.mean()) / (np.abs(srp).mean() + 1e-9)) if hi > lo else 0.0
    power = np.abs(spec).mean(axis=0) ** 2
    sums = np.add.reduceat(power[: plan.band_edges[-1]], plan.band_edges[:-1])
    counts = np.maximum(np.diff(plan.band_edges), 1)
    log_bands = np.log10(sums / counts + 1e-12)
    level = float(np.log10(power.mean() + 1e-12))
    out = np.concatenate([srp_norm, log_bands - log_bands.mean(), [level / 10.0, min(peak, 10.0) / 10.0]])
    return out.astype(np.float32)


# --------------------------------------------------------------------------- a whole frame


def empty_inputs(cfg: ModelConfig) -> Inputs:
    """Inputs with every modality absent (all zeros, dummy pillar cells)."""
    nx, ny = cfg.grid
    h, w = cfg.image_size
    return {
        "lidar_pillars": np.zeros((cfg.lidar_pillars, cfg.lidar_points_per_pillar, LIDAR_FEATURES), np.float32),
        "lidar_index": np.full(cfg.lidar_pillars, nx * ny, np.int64),
        "radar_pillars": np.zeros((cfg.radar_pillars, cfg.radar_points_per_pillar, RADAR_FEATURES), np.float32),
        "radar_index": np.full(cfg.radar_pillars, nx * ny, np.int64),
        "image": np.zeros((3, h, w), np.float32),
        "cam_proj": np.zeros((3, 4), np.float32),
        "audio": np.zeros(cfg.audio_features, np.float32),
        "present": np.zeros(len(MODALITIES), np.float32),
    }


def _field(msg: msgs.PointCloud | msgs.RadarScan, name: str) -> np.ndarray:
    if name not in msg.fields:
        raise FormatError(
            f"{type(msg).__name__} from {msg.frame_id!r} has no {name!r} field (it has {list(msg.fields)})"
        )
    return np.asarray(msg.data[:, msg.fields.index(name)], np.float64)


def prepare(
    members: Mapping[str, Sequence[msgs.SensorMessage]],
    geometry: RigGeometry,
    cfg: ModelConfig,
) -> Inputs:
    """A synced set's members (keyed lidar/camera/radar/audio) → network inputs.

    A modality that is missing, empty, not in ``cfg.modalities`` or lacks its calibration is
    fed as zeros with its ``present`` flag at 0. A point cloud on the radar input without the radar
    fields (radial_velocity) is a :class:`FormatError` naming it (messages check their own shapes)."""
    out = empty_inputs(cfg)

    def use(name: str) -> bool:
        return name in cfg.modalities and bool(members.get(name))

    if use("lidar") and geometry.lidar is not None:
        cloud = members["lidar"][-1]
        if isinstance(cloud, msgs.PointCloud) and len(cloud.data):
            xyz = np.stack([_field(cloud, c) for c in ("x", "y", "z")], axis=1)
            intensity = _field(cloud, "intensity") if "intensity" in cloud.fields else np.zeros(len(xyz))
            out["lidar_pillars"], out["lidar_index"] = lidar_inputs(
                geometry.lidar.extrinsics.apply(xyz), intensity, cfg
            )
            out["present"][0] = 1.0
    if use("camera") and geometry.camera is not None:
        image = members["camera"][-1]
        if isinstance(image, msgs.Image) and image.encoding == "rgb8":
            out["image"], out["cam_proj"] = camera_inputs(image.data, geometry.camera, cfg)
            out["present"][1] = 1.0
    if use("radar") and geometry.radar is not None:
        scan = members["radar"][-1]
        if isinstance(scan, msgs.RadarScan | msgs.PointCloud) and len(scan.data):
            xyz = np.stack([_field(scan, c) for c in ("x", "y", "z")], axis=1)
            vr = _field(scan, "radial_velocity")
            rcs = _field(scan, "rcs") if "rcs" in scan.fields else np.zeros(len(xyz))
            out["radar_pillars"], out["radar_index"] = radar_inputs(
                geometry.radar.extrinsics.apply(xyz), vr, rcs, geometry.radar.extrinsics.translation, cfg
            )
            out["present"][2] = 1.0
    if use("audio") and geometry.microphones is not None:
        chunks = sorted((c for c in members["audio"] if isinstance(c, msgs.AudioChunk)), key=lambda c: c.first_sample)
        if chunks and chunks[0].data.shape[0] == len(geometry.microphones):
            samples = np.concatenate([c.data for c in chunks], axis=1)
            out["audio"] = audio_inputs(samples, chunks[0].sample_rate, geometry.microphones, cfg)
            out["present"][3] = 1.0
    return out


PILLAR_STEP = 256
"""Trimmed pillar counts are rounded up to a multiple of this, so a runtime sees few shapes."""


def trim_pillars(inputs: Inputs, cfg: ModelConfig, step: int = PILLAR_STEP) -> Inputs:
    """Batched inputs with the trailing unused LiDAR pillar slots (dummy cell, zero points) cut,
    for a graph exported with a variable pillar count: the encoder then skips the padding, and
    the detections are the same, since unused slots scatter into the dropped dummy cell."""
    nx, ny = cfg.grid
    used = np.flatnonzero((inputs["lidar_index"] != nx * ny).any(axis=0))
    n = int(used[-1]) + 1 if len(used) else 0
    n = min(inputs["lidar_index"].shape[1], max(step, -(-n // step) * step))
    out = dict(inputs)
    out["lidar_pillars"] = inputs["lidar_pillars"][:, :n]
    out["lidar_index"] = inputs["lidar_index"][:, :n]
    return out


def batch(frames: Sequence[Inputs]) -> Inputs:
    """Stack frames along a new leading batch axis."""
    return {name: np.stack([f[name] for f in frames]) for name in INPUT_NAMES}
