"""The world as geometry: oriented boxes around the ego, one triangle mesh, and ray casting.

Sensor models ask for the scene at a capture time and cast their rays into it with open3d (the
camera rasterizes the same mesh instead, see :mod:`.raster`).
Coordinates are *local*: world coordinates shifted so the ego sits at x = 0 at an anchor time.
The world's x grows with time without bound (the scenario clock may be Unix time), and float32
geometry far from the origin would lose centimetres, so everything is cast near the origin.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_stream.core.calib import Transform
from fusion_stream.sim.world import World


@dataclass(frozen=True)
class Material:
    """How a kind of surface looks to each sensor."""

    reflectivity: float
    """LiDAR reflectance, 0..1."""
    rcs_dbsm: float
    """Radar cross-section of a whole object (dBsm); for buildings, of one facet."""


MATERIALS: dict[str, Material] = {
    "car": Material(0.55, 10.0),
    "truck": Material(0.45, 20.0),
    "pedestrian": Material(0.25, -5.0),
    "cyclist": Material(0.35, 0.0),
    "building": Material(0.2, 15.0),
    "pole": Material(0.7, 5.0),
    "parked_car": Material(0.55, 10.0),
    "ground": Material(0.08, -20.0),
}

GROUND = -1
"""Owner index of the ground plane in :class:`Hits`."""
NOTHING = -2
"""Owner index of a ray that hit nothing."""

# What sensor samples are labelled with (for tests and training): an actor id >= 0, or one of these.
GROUND_LABEL = -1
STATIC = -2
"""Static clutter: buildings, poles, parked cars."""
WEATHER_CLUTTER = -3
"""A spurious near return off rain drops or fog."""
SKY = -4


@dataclass(frozen=True)
class Solid:
    """One object as an oriented box in the local frame (centre at half height)."""

    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float
    velocity: tuple[float, float] = (0.0, 0.0)
    """World-frame velocity (m/s); static objects are at rest."""
    actor_id: int = -1
    siren: bool = False


def solids(world: World, t: float, anchor_x: float, radius: float = 120.0) -> list[Solid]:
    """Actors and static clutter within ``radius`` of the ego at ``t``, local to ``anchor_x``."""
    ex = world.ego_pose(t)[0]
    out: list[Solid] = []
    for st in world.nearby(t, radius):
        cx, cy, cz = st.center
        out.append(
            Solid(
                st.actor.cls, (cx - anchor_x, cy, cz), st.actor.size, st.yaw, st.velocity, st.actor.id, st.actor.siren
            )
        )
    for box in world.static_boxes(ex - radius, ex + radius):
        bx, by, bz = box.center
        out.append(Solid(box.kind, (bx - anchor_x, by, bz), box.size, box.yaw))
    return out


def _parts(solid: Solid) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """(centre offset, size) of the boxes a solid is built from, in its own frame.

    Vehicles are a body plus a cabin (trucks: cab plus cargo box) so they do not look like bricks;
    every part stays inside the solid's box, which is what ground truth reports."""
    length, width, height = solid.size
    if solid.kind in ("car", "parked_car"):
        body_h = 0.55 * height
        return [
            ((0.0, 0.0, body_h / 2 - height / 2), (length, width, body_h)),
            ((-0.05 * length, 0.0, height / 2 - (height - body_h) / 2), (0.55 * length, 0.92 * width, height - body_h)),
        ]
    if solid.kind == "truck":
        cab = 0.24 * length
        return [
            ((length / 2 - cab / 2, 0.0, -0.125 * height), (cab, width, 0.75 * height)),
            ((-cab / 2, 0.0, 0.0), (length - cab - 0.1, width, height)),
        ]
    return [((0.0, 0.0, 0.0), solid.size)]


_CORNERS = (
    np.array(
        [[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], np.float64
    )
    / 2
)
_BOX_TRIANGLES = np.array(
    [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6],
     [3, 0, 4], [3, 4, 7]],
    np.uint32,
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class SceneMesh:
    """Every solid and the ground as one triangle soup; ``owner[i]`` is triangle i's solid."""

    vertices: np.ndarray
    triangles: np.ndarray
    owner: np.ndarray
    solids: tuple[Solid, ...]


def build_mesh(items: list[Solid], ground_half: float = 300.0) -> SceneMesh:
    """Triangulate ``items`` plus a square ground plane at z = 0 around the local origin."""
    offsets: list[tuple[float, float, float]] = []
    sizes: list[tuple[float, float, float]] = []
    owners: list[int] = []
    for index, solid in enumerate(items):
        for offset, size in _parts(solid):
            offsets.append(offset)
            sizes.append(size)
            owners.append(index)
    n = len(owners)
    owner = np.asarray(owners, np.int32)
    yaw = np.array([s.yaw for s in items])[owner] if n else np.zeros(0)
    center = np.array([s.center for s in items]).reshape(-1, 3)[owner] if n else np.zeros((0, 3))
    c, s = np.cos(yaw), np.sin(yaw)
    local = _CORNERS[None] * np.asarray(sizes).reshape(n, 1, 3) + np.asarray(offsets).reshape(n, 1, 3)  # P×8×3
    corners = np.empty_like(local)
    corners[..., 0] = c[:, None] * local[..., 0] - s[:, None] * local[..., 1]
    corners[..., 1] = s[:, None] * local[..., 0] + c[:, None] * local[..., 1]
    corners[..., 2] = local[..., 2]
    corners += center[:, None, :]
    g = ground_half
    ground = np.array([[-g, -g, 0], [g, -g, 0], [g, g, 0], [-g, g, 0]], np.float64)
    triangles = np.concatenate(
        [
            np.array([[0, 1, 2], [0, 2, 3]], np.uint32),
            (_BOX_TRIANGLES[None] + 4 + 8 * np.arange(n, dtype=np.uint32)[:, None, None]).reshape(-1, 3),
        ]
    )
    return SceneMesh(
        vertices=np.concatenate([ground, corners.reshape(-1, 3)]).astype(np.float32),
        triangles=triangles,
        owner=np.concatenate([np.full(2, GROUND, np.int32), np.repeat(owner, 12)]),
        solids=tuple(items),
    )


@dataclass(frozen=True, eq=False)
class Hits:
    """What each ray hit: distance along the (unit) ray (inf: nothing), the owner index and the
    surface normal turned towards the ray's origin. float32, like the geometry."""

    distance: np.ndarray
    owner: np.ndarray
    normal: np.ndarray
    face: np.ndarray | None = None
    """Which planar face was hit (its two triangles share one id); -1 for nothing."""

    @property
    def hit(self) -> np.ndarray:
        return np.asarray(self.owner != NOTHING)


class Raycaster:
    """Casts rays into a :class:`SceneMesh` (open3d's Embree-backed RaycastingScene)."""

    def __init__(self, mesh: SceneMesh) -> None:
        # heavy import, only in processes that cast rays; typed Any (its stubs are incomplete)
        o3d: Any = importlib.import_module("open3d")
        self._o3d = o3d
        self.mesh = mesh
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(o3d.core.Tensor(mesh.vertices), o3d.core.Tensor(mesh.triangles.astype(np.uint32)))

    def cast(self, origins: np.ndarray, directions: np.ndarray, max_distance: float = math.inf) -> Hits:
        """Rays from ``origins`` along unit ``directions`` (N×3 each, local frame)."""
        rays = np.ascontiguousarray(np.concatenate([origins, directions], axis=1), dtype=np.float32)
        return self.cast_rays(rays, max_distance)

    def cast_rays(self, rays: np.ndarray, max_distance: float = math.inf) -> Hits:
        """Rays as one contiguous N×6 float32 array (origin, unit direction): callers that cast
        the same directions every frame keep the array and only rewrite the origins."""
        out = self._scene.cast_rays(self._o3d.core.Tensor.from_numpy(rays))
        distance = out["t_hit"].numpy()
        hit = np.isfinite(distance) & (distance <= max_distance)
        owner = np.full(len(rays), NOTHING, np.int32)
        owner[hit] = self.mesh.owner[out["primitive_ids"].numpy()[hit]]
        normal = out["primitive_normals"].numpy()
        facing = np.einsum("ij,ij->i", normal, rays[:, 3:]) > 0
        normal[facing] *= -1
        distance[~hit] = np.inf
        face = np.where(hit, out["primitive_ids"].numpy().astype(np.int64) // 2, -1)  # quads are triangle pairs
        return Hits(distance=distance, owner=owner, normal=normal, face=face)


def rotate(vectors: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``vectors @ rotation.T`` without BLAS: on N×3 arrays OpenBLAS's worker threads spin and
    cost twice the CPU (measured on the camera: 145 vs 70 ms per frame) in processes that share
    a few cores."""
    return np.asarray(np.einsum("ij,kj->ik", vectors, rotation))


def sensor_poses(world: World, times: np.ndarray, anchor_x: float, mount: Transform) -> tuple[np.ndarray, np.ndarray]:
    """Where a sensor mounted at ``mount`` (sensor → rig) is at each of ``times``: origins (N×3)
    and rotations (N×3×3, sensor → local). Vectorised, for per-column poses within a sweep."""
    poses = np.array([world.ego_pose(float(t)) for t in times], dtype=np.float64).reshape(-1, 3)
    c, s = np.cos(poses[:, 2]), np.sin(poses[:, 2])
    rig_rot = np.zeros((len(poses), 3, 3))
    rig_rot[:, 0, 0], rig_rot[:, 0, 1], rig_rot[:, 1, 0], rig_rot[:, 1, 1] = c, -s, s, c
    rig_rot[:, 2, 2] = 1.0
    origins = rig_rot @ mount.translation + np.stack([poses[:, 0] - anchor_x, poses[:, 1], np.zeros(len(poses))], 1)
    return origins, rig_rot @ mount.rotation


def road_marking(x: np.ndarray, y: np.ndarray, lanes: int, lane_width: float) -> np.ndarray:
    """Which ground points (world x, y) are painted: solid centre and edge lines, dashed lane lines.

    Shared by the camera (white paint) and the LiDAR (paint is retro-reflective)."""
    half_line = 0.08
    out = np.zeros(np.shape(x), dtype=bool)
    for k in range(-lanes, lanes + 1):
        on_line = np.abs(y - k * lane_width) < half_line
        if k in (-lanes, 0, lanes):
            out |= on_line
        else:
            out |= on_line & (np.mod(x, 9.0) < 3.0)
    return out


def ego_velocity(world: World, t: float) -> np.ndarray:
    """The ego's world-frame velocity (m/s, 3-vector), by central difference of its pose."""
    dt = 1e-3
    a, b = world.ego_pose(t - dt), world.ego_pose(t + dt)
    return np.array([(b[0] - a[0]) / (2 * dt), (b[1] - a[1]) / (2 * dt), 0.0])
