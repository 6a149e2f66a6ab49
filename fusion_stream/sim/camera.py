"""A pinhole camera rendered by ray casting one ray per pixel into the simulated world.

Ray casting (rather than a rasterizer) keeps one scene for every sensor, needs no GPU or display,
and gives a per-pixel label and depth for free, which the physical checks use. Each class has its
own look (car bodies with dark windows, white trucks, pedestrians with head/shirt/legs, cyclists on
black frames, an emergency vehicle with a flashing light bar) so a network can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_stream.calib import Intrinsics, Transform
from fusion_stream.sim.scene import (
    GROUND,
    GROUND_LABEL,
    MATERIALS,
    SKY,
    STATIC,
    Raycaster,
    Solid,
    build_mesh,
    road_marking,
    rotate,
    sensor_poses,
    solids,
)
from fusion_stream.sim.world import World

_SUN = np.array([-0.4, 0.3, 0.86]) / np.linalg.norm([-0.4, 0.3, 0.86])
_CAR_PAINT = np.array(
    [[40, 70, 160], [180, 30, 30], [200, 200, 205], [30, 30, 35], [90, 95, 100], [20, 90, 60], [210, 170, 40]], float
)
_SHIRTS = np.array([[200, 90, 60], [60, 120, 200], [230, 200, 60], [120, 60, 150], [240, 240, 240]], float)
_KIND_CODE = {kind: code for code, kind in enumerate(MATERIALS)}
_GROUND_PALETTE = np.array(
    [[85, 110, 65], [150, 148, 140], [72, 72, 76], [235, 235, 230], [225, 190, 60]], np.float32
)  # verge, pavement, asphalt, paint, centre line
# weather → (visibility m, brightness factor)
_ATMOSPHERE = {"clear": (1e6, 1.0), "rain": (180.0, 0.75), "fog": (35.0, 0.9)}


@dataclass(frozen=True, eq=False)
class Frame:
    """One rendered image (H×W×3 uint8 RGB), what each pixel sees (actor id ≥ 0, or
    :data:`GROUND_LABEL`, :data:`STATIC`, :data:`SKY`) and its depth along the ray (m)."""

    rgb: np.ndarray
    label: np.ndarray
    depth: np.ndarray


def pixel_rays(intrinsics: Intrinsics, distortion: tuple[float, ...]) -> np.ndarray:
    """Unit rays (H·W×3, optical frame: z forward, x right, y down) through every pixel centre,
    undistorted with the plumb_bob model so they agree with :meth:`Sensor.project`."""
    k = intrinsics
    u, v = np.meshgrid(np.arange(k.width) + 0.5, np.arange(k.height) + 0.5)
    xd, yd = ((u - k.cx) / k.fx).ravel(), ((v - k.cy) / k.fy).ravel()
    x, y = xd.copy(), yd.copy()
    if any(distortion):
        k1, k2, p1, p2, k3 = (list(distortion) + [0.0] * 5)[:5]
        for _ in range(20):  # fixed-point inversion of the distortion model
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
            dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            x, y = (xd - dx) / radial, (yd - dy) / radial
    rays = np.stack([x, y, np.ones_like(x)], axis=1)
    return np.asarray(rays / np.linalg.norm(rays, axis=1, keepdims=True))


class CameraModel:
    """Renders frames for one camera; the per-pixel rays are computed once."""

    def __init__(self, intrinsics: Intrinsics, distortion: tuple[float, ...] = ()) -> None:
        self.intrinsics = intrinsics
        self._rays = pixel_rays(intrinsics, distortion)
        self._sky: tuple[bytes, np.ndarray] | None = None
        self._rays_at: tuple[bytes, np.ndarray] | None = None
        h, w = intrinsics.height, intrinsics.width
        self._noise_bank = np.random.default_rng(12345).standard_normal((2 * h, 2 * w, 3), dtype=np.float32)

    def _noise(self, rng: np.random.Generator) -> np.ndarray:
        """Unit sensor noise for one frame: a random window of a pre-drawn field (drawing 700 k
        normals per frame would cost more than the ray casting)."""
        h, w = self.intrinsics.height, self.intrinsics.width
        dy, dx = int(rng.integers(h)), int(rng.integers(w))
        return self._noise_bank[dy : dy + h, dx : dx + w]

    def _ray_buffer(self, rotation: np.ndarray) -> np.ndarray:
        """N×6 rays for this camera orientation; directions are kept while it does not turn."""
        key = rotation.tobytes()
        if self._rays_at is None or self._rays_at[0] != key:
            buffer = np.empty((len(self._rays), 6), np.float32)
            buffer[:, 3:] = rotate(self._rays, rotation)
            self._rays_at = (key, buffer)
        return self._rays_at[1]

    def _sky_colors(self, dirs: np.ndarray, rotation: np.ndarray, condition: str) -> np.ndarray:
        """Sky colour of every pixel (it depends only on the ray, so it is cached per pose)."""
        key = rotation.tobytes() + condition.encode()
        if self._sky is None or self._sky[0] != key:
            self._sky = (key, _sky(dirs[:, 2], condition).astype(np.float32))
        return self._sky[1]

    def render(self, world: World, t: float, mount: Transform, *, salt: int = 0, stamp_ns: int = 0) -> Frame:
        """The image at scenario time ``t`` from a camera mounted at ``mount`` (optical → rig)."""
        k = self.intrinsics
        s = world.scenario
        anchor_x = world.ego_pose(t)[0]
        origins, rotations = sensor_poses(world, np.array([t]), anchor_x, mount)
        rays = self._ray_buffer(rotations[0])
        rays[:, :3] = origins[0]
        dirs = rays[:, 3:]
        mesh = build_mesh(solids(world, t, anchor_x, radius=150.0))
        hits = Raycaster(mesh).cast_rays(rays)
        points = origins[0].astype(np.float32) + dirs * np.where(hits.hit, hits.distance, 0.0)[:, None]
        rng = np.random.default_rng([s.seed, 2, salt, stamp_ns])

        color = self._sky_colors(dirs, rotations[0], s.condition).copy()
        label = np.full(len(dirs), SKY, np.int64)
        sky = ~hits.hit
        ground = hits.owner == GROUND
        color[ground] = _ground(points[ground, 0] + anchor_x, points[ground, 1], s.lanes, s.lane_width)
        label[ground] = GROUND_LABEL
        objects = hits.owner >= 0
        emissive = np.zeros(len(dirs), np.float32)
        if objects.any():
            obj_color, obj_emissive, obj_label = _objects(
                mesh.solids, hits.owner[objects], points[objects], t, s.condition
            )
            color[objects], emissive[objects], label[objects] = obj_color, obj_emissive, obj_label

        light = _lighting(hits.normal, dirs, hits.distance, s.condition)
        light[sky] = 1.0
        rgb = color * light[:, None]
        lit = np.flatnonzero(emissive)
        rgb[lit] += emissive[lit, None] * np.array([255.0, 240.0, 200.0], np.float32)
        visibility, brightness = _ATMOSPHERE[s.weather]
        if s.weather != "clear":
            fog_color = np.array([185.0, 185.0, 190.0] if s.condition == "day" else [28.0, 28.0, 34.0], np.float32)
            through = np.exp(-np.where(sky, visibility * 3, hits.distance) / visibility)[:, None]
            rgb = (rgb * through + fog_color * (1 - through)) * np.float32(brightness)
        noise = 2.0 if s.condition == "day" else 7.0
        image = rgb.reshape(k.height, k.width, 3)
        image += self._noise(rng) * np.float32(noise)
        if s.weather == "rain":
            _rain_streaks(image, rng)
        depth = hits.distance.reshape(k.height, k.width)
        np.clip(image, 0, 255, out=image)
        return Frame(rgb=image.astype(np.uint8), label=label.reshape(k.height, k.width), depth=depth)


def _sky(up: np.ndarray, condition: str) -> np.ndarray:
    """Sky colour by the ray's elevation (its z component in the local frame)."""
    a = np.clip(up, 0.0, 1.0)[:, None] ** 0.5
    if condition == "night":
        horizon, top = np.array([30.0, 32.0, 45.0]), np.array([6.0, 8.0, 18.0])
    else:
        horizon, top = np.array([200.0, 215.0, 230.0]), np.array([90.0, 140.0, 215.0])
    return np.asarray(horizon * (1 - a) + top * a)


def _ground(x: np.ndarray, y: np.ndarray, lanes: int, lane_width: float) -> np.ndarray:
    half_road = lanes * lane_width
    ay = np.abs(y)
    surface = (ay < half_road + 3.0).astype(np.int8) + (ay < half_road)  # 0 verge, 1 pavement, 2 asphalt
    paint = road_marking(x, y, lanes, lane_width)
    surface[paint] = 3
    surface[paint & (ay < 0.2)] = 4  # centre line
    return np.asarray(_GROUND_PALETTE[surface])


def _objects(
    items: tuple[Solid, ...], owner: np.ndarray, points: np.ndarray, t: float, condition: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour, emitted light and label of pixels on solids, from where on the box each one is."""
    centers = np.array([s.center for s in items])[owner]
    sizes = np.array([s.size for s in items])[owner]
    yaws = np.array([s.yaw for s in items])[owner]
    kinds = np.array([_KIND_CODE[s.kind] for s in items], np.int8)[owner]
    ids = np.array([s.actor_id for s in items])[owner]
    sirens = np.array([s.siren for s in items])[owner]
    c, s = np.cos(yaws), np.sin(yaws)
    d = points - centers
    # position on the box, each axis in -0.5..0.5 (x along the length, z up)
    u = np.stack(
        [(c * d[:, 0] + s * d[:, 1]) / sizes[:, 0], (-s * d[:, 0] + c * d[:, 1]) / sizes[:, 1], d[:, 2] / sizes[:, 2]],
        1,
    )
    color = np.zeros((len(owner), 3), np.float32)
    emissive = np.zeros(len(owner), np.float32)
    key = np.where(ids >= 0, ids, np.abs(np.round(centers[:, 0] * 7 + centers[:, 1] * 3)).astype(np.int64))
    night = condition == "night"

    car = (kinds == _KIND_CODE["car"]) | (kinds == _KIND_CODE["parked_car"])
    color[car] = _CAR_PAINT[key[car] % len(_CAR_PAINT)]
    color[car & (u[:, 2] > 0.07)] = (45.0, 55.0, 65.0)  # glass
    color[car & (u[:, 2] < -0.32) & (np.abs(np.abs(u[:, 0]) - 0.3) < 0.09)] = (15.0, 15.0, 15.0)  # wheels

    truck = kinds == _KIND_CODE["truck"]
    color[truck] = (215.0, 215.0, 205.0)
    cab = truck & (u[:, 0] > 0.26)
    color[cab] = _CAR_PAINT[key[cab] % len(_CAR_PAINT)]
    color[cab & (u[:, 2] > 0.05)] = (45.0, 55.0, 65.0)
    color[truck & (u[:, 2] < -0.4) & (np.abs(u[:, 0]) > 0.3)] = (15.0, 15.0, 15.0)

    ped = kinds == _KIND_CODE["pedestrian"]
    rider = kinds == _KIND_CODE["cyclist"]
    person = ped | rider
    color[person] = _SHIRTS[key[person] % len(_SHIRTS)]
    color[person & (u[:, 2] < -0.05)] = (40.0, 42.0, 70.0)  # trousers
    color[person & (u[:, 2] > 0.37)] = (225.0, 185.0, 150.0)  # head
    bike = rider & (u[:, 2] < -0.1)
    color[bike] = (20.0, 20.0, 20.0)
    color[bike & (np.abs(np.abs(u[:, 0]) - 0.3) < 0.12)] = (90.0, 90.0, 90.0)  # wheels

    building = kinds == _KIND_CODE["building"]
    tint = (key[building] % 5)[:, None] * np.array([12.0, 9.0, 7.0])
    color[building] = np.array([120.0, 105.0, 95.0]) + tint
    along = points[building, 0] + points[building, 1]
    window = (np.mod(along, 3.0) > 1.0) & (np.mod(points[building, 2], 3.2) > 1.2) & (points[building, 2] > 1.0)
    idx = np.flatnonzero(building)[window]
    color[idx] = (50.0, 65.0, 90.0)
    if night:
        lit = (np.floor(along[window] / 3.0).astype(np.int64) * 7 + key[idx]) % 3 == 0
        emissive[idx[lit]] = 0.55

    color[kinds == _KIND_CODE["pole"]] = (110.0, 112.0, 118.0)

    siren = sirens & (truck | car)
    color[siren & (u[:, 2] <= 0.07)] = (235.0, 235.0, 235.0)
    color[siren & (np.abs(u[:, 2] + 0.15) < 0.06)] = (200.0, 20.0, 20.0)
    bar = siren & (u[:, 2] > 0.46)
    red_phase = (t * 2.0) % 1.0 < 0.5
    color[bar & ((u[:, 1] > 0) == red_phase)] = (255.0, 30.0, 30.0)
    color[bar & ((u[:, 1] > 0) != red_phase)] = (30.0, 60.0, 255.0)
    emissive[bar] = 0.6

    if night:  # head- and tail-lights on vehicles
        lamp = (car | truck) & (u[:, 2] < -0.15) & (u[:, 2] > -0.35) & (np.abs(u[:, 1]) > 0.3)
        emissive[lamp & (u[:, 0] > 0.49)] = 1.0
        tail = lamp & (u[:, 0] < -0.49)
        color[tail] = (255.0, 20.0, 20.0)
        emissive[tail] = 0.3
    return color, emissive, np.where(ids >= 0, ids, STATIC)


def _lighting(normal: np.ndarray, dirs: np.ndarray, distance: np.ndarray, condition: str) -> np.ndarray:
    """Brightness of each hit: sun and sky by day; the ego's headlights and a little sky at night."""
    if condition == "day":
        return np.asarray(0.5 + 0.5 * np.clip(rotate(normal, _SUN[None, :].astype(np.float32))[:, 0], 0.0, 1.0))
    forward = np.clip(dirs[:, 0], 0.0, 1.0) ** 6
    facing = np.clip(-np.einsum("ij,ij->i", normal, dirs), 0.0, 1.0)
    near = np.exp(-np.where(np.isfinite(distance), distance, 1e3) / 25.0)
    return np.asarray(0.12 + 1.6 * forward * facing * near)


def _rain_streaks(image: np.ndarray, rng: np.random.Generator, count: int = 250) -> None:
    """Short bright slanted streaks, drawn in place."""
    h, w, _ = image.shape
    ys, xs = rng.integers(0, h - 12, count), rng.integers(2, w - 2, count)
    for dy in range(10):
        image[ys + dy, xs - dy // 5] += 18.0
