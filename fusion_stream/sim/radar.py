"""An automotive radar: a few detections per object with range, azimuth, elevation, radial
(Doppler) velocity and RCS, plus false alarms. Fog barely matters to it; rain a little.

Detections come from casting a coarse fan of rays and keeping a few hits per object, which gives
returns on the visible side of each object, occlusion included, as a real radar's clusters do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_stream.core.calib import Transform
from fusion_stream.errors import ParamError
from fusion_stream.sim.scene import MATERIALS, STATIC, Raycaster, build_mesh, ego_velocity, rotate, sensor_poses, solids
from fusion_stream.sim.world import World

FIELDS = ("x", "y", "z", "radial_velocity", "rcs", "range", "azimuth", "elevation")

FALSE_ALARM = -3
"""Label of a detection that corresponds to nothing."""

# weather → probability that a detection survives
_WEATHER = {"clear": 1.0, "rain": 0.92, "fog": 0.98}


@dataclass(frozen=True)
class RadarSpec:
    """Field of view, resolution and noise; defaults are a long-range front radar."""

    rate_hz: float = 13.0
    azimuth_fov_deg: float = 120.0
    elevation_fov_deg: float = 14.0
    max_range_m: float = 150.0
    azimuth_rays: int = 480
    elevation_rays: int = 8
    max_per_object: int = 6
    false_alarms: float = 3.0
    """Mean false alarms per scan."""
    range_noise_m: float = 0.15
    azimuth_noise_deg: float = 0.3
    velocity_noise_mps: float = 0.1

    def __post_init__(self) -> None:
        if self.rate_hz <= 0:
            raise ParamError("rate_hz", f"must be > 0, got {self.rate_hz}")
        if not 0 < self.azimuth_fov_deg <= 360:
            raise ParamError("azimuth_fov_deg", f"must be in (0, 360], got {self.azimuth_fov_deg}")
        if self.max_range_m <= 0:
            raise ParamError("max_range_m", f"must be > 0, got {self.max_range_m}")


@dataclass(frozen=True, eq=False)
class Scan:
    """Detections as N×8 float32 rows of :data:`FIELDS` (sensor frame), and what each came from
    (actor id ≥ 0, :data:`~fusion_stream.sim.scene.STATIC` or :data:`FALSE_ALARM`)."""

    data: np.ndarray
    label: np.ndarray


def scan(world: World, t: float, mount: Transform, spec: RadarSpec, *, salt: int = 0, stamp_ns: int = 0) -> Scan:
    """The detections at scenario time ``t`` of a radar mounted at ``mount`` (sensor → rig)."""
    rng = np.random.default_rng([world.scenario.seed, 3, salt, stamp_ns])
    anchor_x = world.ego_pose(t)[0]
    origins, rotations = sensor_poses(world, np.array([t]), anchor_x, mount)
    origin, rot = origins[0], rotations[0]
    az = np.radians(np.linspace(-spec.azimuth_fov_deg / 2, spec.azimuth_fov_deg / 2, spec.azimuth_rays))
    el = np.radians(np.linspace(-spec.elevation_fov_deg / 2, spec.elevation_fov_deg / 2, spec.elevation_rays))
    a, e = (g.ravel() for g in np.meshgrid(az, el))
    dirs_sensor = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=1)
    dirs = rotate(dirs_sensor, rot)
    mesh = build_mesh(solids(world, t, anchor_x, radius=spec.max_range_m + 10))
    hits = Raycaster(mesh).cast(np.broadcast_to(origin, dirs.shape), dirs, spec.max_range_m)
    sensor_v = ego_velocity(world, t)
    survive = _WEATHER[world.scenario.weather]

    chosen: list[int] = []
    labels: list[int] = []
    rcs: list[float] = []
    for owner in np.unique(hits.owner[hits.owner >= 0]):
        solid = mesh.solids[owner]
        rays = np.flatnonzero(hits.owner == owner)
        material = MATERIALS[solid.kind]
        if solid.actor_id < 0 and rng.random() > 0.35:  # static clutter: only some of it is reported
            continue
        count = min(len(rays), spec.max_per_object if solid.actor_id >= 0 else 1)
        for ray in rng.choice(rays, count, replace=False):
            distance = float(hits.distance[ray])
            p_detect = np.clip(0.55 + 0.04 * (material.rcs_dbsm + 10) - distance / 400, 0.05, 0.99) * survive
            if rng.random() < p_detect:
                chosen.append(int(ray))
                labels.append(solid.actor_id if solid.actor_id >= 0 else STATIC)
                rcs.append(material.rcs_dbsm - 10 * np.log10(count) + float(rng.normal(0, 2.0)))
    idx = np.array(chosen, dtype=np.int64)
    velocity = np.zeros((len(idx), 3))
    for i, ray in enumerate(idx):
        solid = mesh.solids[hits.owner[ray]]
        velocity[i, :2] = solid.velocity
    line_of_sight = dirs[idx]
    radial = np.einsum("ij,ij->i", velocity - sensor_v, line_of_sight)
    rows = [
        hits.distance[idx].astype(np.float64) + rng.normal(0, spec.range_noise_m, len(idx)),
        a[idx] + np.radians(rng.normal(0, spec.azimuth_noise_deg, len(idx))),
        e[idx],
        radial + rng.normal(0, spec.velocity_noise_mps, len(idx)),
        np.array(rcs),
    ]
    n_false = int(rng.poisson(spec.false_alarms))
    rows_false = [
        rng.uniform(2.0, spec.max_range_m, n_false),
        np.radians(rng.uniform(-spec.azimuth_fov_deg / 2, spec.azimuth_fov_deg / 2, n_false)),
        np.radians(rng.uniform(-spec.elevation_fov_deg / 2, spec.elevation_fov_deg / 2, n_false)),
        rng.normal(0, 5.0, n_false),
        rng.normal(-12.0, 3.0, n_false),
    ]
    rng_, azim, elev, vr, sigma = (np.concatenate([x, y]) for x, y in zip(rows, rows_false, strict=True))
    data = np.empty((len(rng_), len(FIELDS)), np.float32)
    data[:, 0] = rng_ * np.cos(elev) * np.cos(azim)
    data[:, 1] = rng_ * np.cos(elev) * np.sin(azim)
    data[:, 2] = rng_ * np.sin(elev)
    data[:, 3], data[:, 4], data[:, 5], data[:, 6], data[:, 7] = vr, sigma, rng_, azim, elev
    label = np.concatenate([np.array(labels, np.int64), np.full(n_false, FALSE_ALARM, np.int64)])
    return Scan(data=data, label=label)
