"""The reference camera: one ray per pixel cast with open3d, shaded with numpy.

It was the simulated camera until the rasterizer (:mod:`fusion_stream.sim.raster`) replaced it for
cost (~108 vs a few ms per 640×384 frame). It is kept as the reference the rasterized camera is
tested against (frame-level agreement in tests/test_sim_camera_raster.py) and as the in-run
baseline of ``bench/sim.py``; the shipped weights were trained on its images. The looks (palettes,
sky, fog, noise, rain) are shared with :mod:`fusion_stream.sim.camera`.
"""

from __future__ import annotations

import math

import numpy as np

from fusion_stream.core.calib import Intrinsics, Transform
from fusion_stream.sim.camera import (
    _ATMOSPHERE,
    _CAR_PAINT,
    _EMISSIVE,
    _FOG_COLOR,
    _GROUND_PALETTE,
    _KIND_CODE,
    _PALETTE,
    _SHIRTS,
    _SKY_COLORS,
    _SUN,
    Frame,
    pixel_rays,
    rain_streaks,
)
from fusion_stream.sim.raster import (
    _BAR_BLUE,
    _BAR_RED,
    _BODY,
    _CARGO,
    _EV_STRIPE,
    _EV_WHITE,
    _FRAME,
    _GLASS,
    _HEAD,
    _HEADLAMP,
    _LIT_WINDOW,
    _POLE,
    _SHIRT,
    _SPOKES,
    _TAILLIGHT,
    _TROUSERS,
    _WALL,
    _WHEEL,
    _WINDOW,
)
from fusion_stream.sim.scene import (
    GROUND,
    GROUND_LABEL,
    NOTHING,
    SKY,
    STATIC,
    Hits,
    Raycaster,
    Solid,
    build_mesh,
    road_marking,
    rotate,
    sensor_poses,
    solids,
)
from fusion_stream.sim.world import World


class RayCastCamera:
    """Renders frames for one camera by ray casting; the per-pixel rays are computed once."""

    def __init__(self, intrinsics: Intrinsics, distortion: tuple[float, ...] = (), *, adaptive: bool = True) -> None:
        self.intrinsics = intrinsics
        self.adaptive = adaptive
        """Cast one ray per 2×2 block where the view is smooth (see :meth:`_cast_adaptive`)."""
        self._rays = pixel_rays(intrinsics, distortion)
        self._sky: tuple[bytes, np.ndarray] | None = None
        self._rays_at: tuple[bytes, np.ndarray] | None = None
        self._dirs = np.zeros((0, 3), np.float32)
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
            self._dirs = np.ascontiguousarray(buffer[:, 3:])
        return self._rays_at[1]

    def _cast_adaptive(self, caster: Raycaster, rays: np.ndarray) -> Hits:
        """Every pixel's hit for about a third of the rays, exactly.

        One ray per 2×2 block first. Where a block and its eight neighbours all hit the same
        planar face, each pixel's distance follows exactly from intersecting its own ray with
        that plane; every other block (edges, small things) is cast pixel by pixel. What it can
        miss: an object thinner than two pixels that no block's ray hits."""
        k = self.intrinsics
        h, w = k.height // 2, k.width // 2
        coarse = caster.cast_rays(np.ascontiguousarray(rays.reshape(h, 2, w, 2, 6)[:, 0, :, 0].reshape(-1, 6)))
        assert coarse.face is not None
        face = coarse.face.reshape(h, w)
        pad = np.pad(face, 1, mode="edge")
        same = np.ones((h, w), bool)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                same &= pad[dy : dy + h, dx : dx + w] == face

        def up(a: np.ndarray) -> np.ndarray:  # per block → per pixel (H·W, ...)
            a = a.reshape(h, 1, w, 1, *a.shape[1:])
            return np.broadcast_to(a, (h, 2, w, 2, *a.shape[4:])).reshape(h * w * 4, *a.shape[4:])

        coarse_dirs = rays.reshape(h, 2, w, 2, 6)[:, 0, :, 0, 3:].reshape(-1, 3)
        hit_c = coarse.owner != NOTHING
        # the plane n·x = n·p0 of each block's face, as n·(p0 - origin), then per pixel t = that / n·d
        normal_c = np.where(hit_c[:, None], coarse.normal, 0.0).astype(np.float32)
        offset = np.where(hit_c, coarse.distance, 0.0) * np.einsum("ij,ij->i", normal_c, coarse_dirs)
        normal = up(normal_c)
        denom = np.einsum("ij,ij->i", normal, self._dirs)
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = np.where(up(hit_c), up(offset) / denom, np.inf).astype(np.float32)
        owner = up(coarse.owner).copy()
        normal = normal.copy()
        exact = np.flatnonzero(~up(same.ravel()))
        if len(exact):
            fine = caster.cast_rays(np.ascontiguousarray(rays[exact]))
            distance[exact], owner[exact], normal[exact] = fine.distance, fine.owner, fine.normal
        return Hits(distance=distance, owner=owner, normal=normal)

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
        caster = Raycaster(mesh)
        smooth = self.adaptive and k.height % 2 == 0 and k.width % 2 == 0
        hits = self._cast_adaptive(caster, rays) if smooth else caster.cast_rays(rays)
        rng = np.random.default_rng([s.seed, 2, salt, stamp_ns])

        color = self._sky_colors(dirs, rotations[0], s.condition).copy()
        label = np.full(len(dirs), SKY, np.int32)
        emissive = np.zeros(len(dirs), np.float32)
        hit = np.flatnonzero(hits.hit)  # shade only what was hit; the sky is cached
        points = origins[0].astype(np.float32) + dirs[hit] * hits.distance[hit, None]
        owner = hits.owner[hit]
        on_ground = owner == GROUND
        ground = hit[on_ground]
        color[ground] = _ground(points[on_ground, 0] + anchor_x, points[on_ground, 1], s.lanes, s.lane_width)
        label[ground] = GROUND_LABEL
        on_object = ~on_ground
        if on_object.any():
            objects = hit[on_object]
            obj_color, obj_emissive, obj_label = _objects(
                mesh.solids, owner[on_object], points[on_object], t, s.condition
            )
            color[objects], emissive[objects], label[objects] = obj_color, obj_emissive, obj_label
        color[hit] *= _lighting(hits.normal[hit], dirs[hit], hits.distance[hit], s.condition)[:, None]
        rgb = color
        lit = np.flatnonzero(emissive)
        rgb[lit] += emissive[lit, None] * np.array([255.0, 240.0, 200.0], np.float32)
        sky = ~hits.hit
        visibility, brightness = _ATMOSPHERE[s.weather]
        if s.weather != "clear":
            fog_color = np.array(_FOG_COLOR[s.condition], np.float32)
            through = np.exp(-np.where(sky, visibility * 3, hits.distance) / visibility)[:, None]
            rgb = (rgb * through + fog_color * (1 - through)) * np.float32(brightness)
        noise = 2.0 if s.condition == "day" else 7.0
        image = rgb.reshape(k.height, k.width, 3)
        image += self._noise(rng) * np.float32(noise)
        if s.weather == "rain":
            rain_streaks(image, rng)
        depth = hits.distance.reshape(k.height, k.width)
        np.clip(image, 0, 255, out=image)
        return Frame(rgb=image.astype(np.uint8), label=label.reshape(k.height, k.width), depth=depth)


def _sky(up: np.ndarray, condition: str) -> np.ndarray:
    """Sky colour by the ray's elevation (its z component in the local frame)."""
    a = np.clip(up, 0.0, 1.0)[:, None] ** 0.5
    horizon, top = (np.array(c) for c in _SKY_COLORS[condition])
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
    # per-solid values first (a few hundred), then one gather per pixel
    per = np.array([(*s.center, *s.size, math.cos(s.yaw), math.sin(s.yaw)) for s in items], np.float32)[owner]
    kind_of = np.array([_KIND_CODE[s.kind] for s in items], np.int8)
    ids_of = np.array([s.actor_id for s in items], np.int64)
    key_of = np.where(ids_of >= 0, ids_of, np.arange(len(items)) * 7 + 3)
    kinds, key = kind_of[owner], key_of[owner]
    siren = np.array([s.siren for s in items], bool)[owner]
    dx, dy = points[:, 0] - per[:, 0], points[:, 1] - per[:, 1]
    c, s = per[:, 6], per[:, 7]
    ux = (c * dx + s * dy) / per[:, 3]  # position on the box, -0.5..0.5 along its length
    uy = (c * dy - s * dx) / per[:, 4]
    uz = (points[:, 2] - per[:, 2]) / per[:, 5]
    night = condition == "night"
    code = np.full(len(owner), _POLE, np.int8)

    car = (kinds == _KIND_CODE["car"]) | (kinds == _KIND_CODE["parked_car"])
    truck = kinds == _KIND_CODE["truck"]
    vehicle = car | truck
    wheel_zone = np.abs(np.abs(ux) - 0.3)
    code[vehicle] = _BODY
    code[truck & (ux <= 0.26)] = _CARGO
    code[vehicle & (uz > np.where(truck, 0.05, 0.07)) & ~(truck & (ux <= 0.26))] = _GLASS
    code[car & (uz < -0.32) & (wheel_zone < 0.09)] = _WHEEL
    code[truck & (uz < -0.4) & (np.abs(ux) > 0.3)] = _WHEEL

    rider = kinds == _KIND_CODE["cyclist"]
    person = (kinds == _KIND_CODE["pedestrian"]) | rider
    code[person] = np.where(uz[person] > 0.37, _HEAD, np.where(uz[person] < -0.05, _TROUSERS, _SHIRT))
    bike = rider & (uz < -0.1)
    code[bike] = np.where(wheel_zone[bike] < 0.12, _SPOKES, _FRAME)

    building = kinds == _KIND_CODE["building"]
    code[building] = _WALL
    along = points[:, 0] + points[:, 1]
    window = building & (np.mod(along, 3.0) > 1.0) & (np.mod(points[:, 2], 3.2) > 1.2) & (points[:, 2] > 1.0)
    code[window] = _WINDOW
    if night:
        lit = window & ((np.floor(along / 3.0).astype(np.int64) * 7 + key) % 3 == 0)
        code[lit] = _LIT_WINDOW

    ev = siren & vehicle
    code[ev & (uz <= 0.07)] = _EV_WHITE
    code[ev & (np.abs(uz + 0.15) < 0.06)] = _EV_STRIPE
    bar = ev & (uz > 0.46)
    red_side = (uy > 0) == ((t * 2.0) % 1.0 < 0.5)
    code[bar] = np.where(red_side[bar], _BAR_RED, _BAR_BLUE)
    if night:  # head- and tail-lights
        lamp = vehicle & (uz < -0.15) & (uz > -0.35) & (np.abs(uy) > 0.3)
        code[lamp & (ux > 0.49)] = _HEADLAMP
        code[lamp & (ux < -0.49)] = _TAILLIGHT

    color = _PALETTE[code]
    body = np.flatnonzero(code == _BODY)
    color[body] = _CAR_PAINT[key[body] % len(_CAR_PAINT)]
    shirt = np.flatnonzero(code == _SHIRT)
    color[shirt] = _SHIRTS[key[shirt] % len(_SHIRTS)]
    wall = np.flatnonzero(code == _WALL)
    color[wall] = np.array([120.0, 105.0, 95.0], np.float32) + (key[wall] % 5)[:, None] * np.array(
        [12.0, 9.0, 7.0], np.float32
    )
    return color, _EMISSIVE[code], np.where(ids_of >= 0, ids_of, STATIC)[owner]


def _lighting(normal: np.ndarray, dirs: np.ndarray, distance: np.ndarray, condition: str) -> np.ndarray:
    """Brightness of each hit: sun and sky by day; the ego's headlights and a little sky at night."""
    if condition == "day":
        return np.asarray(0.5 + 0.5 * np.clip(rotate(normal, _SUN[None, :].astype(np.float32))[:, 0], 0.0, 1.0))
    forward = np.clip(dirs[:, 0], 0.0, 1.0) ** 6
    facing = np.clip(-np.einsum("ij,ij->i", normal, dirs), 0.0, 1.0)
    near = np.exp(-np.where(np.isfinite(distance), distance, 1e3) / 25.0)
    return np.asarray(0.12 + 1.6 * forward * facing * near)
