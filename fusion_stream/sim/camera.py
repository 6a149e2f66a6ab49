"""A pinhole camera (with plumb_bob distortion) rendering the simulated world by rasterization.

The scene is the same triangle mesh the LiDAR and radar cast rays into (:mod:`.scene`); the camera
fills it with a depth test instead (:mod:`.raster`: a few ms per frame instead of ~108 ms for a ray
per pixel), then shades each pixel along its own ray, so the frame keeps an exact per-pixel label
and depth, which the physical checks and the fog use. Each class has its own look (car bodies with
dark windows, white trucks, pedestrians with head/shirt/legs, cyclists on black frames, an
emergency vehicle with a flashing light bar) so a network can tell them apart; the looks are those
of the ray-cast renderer the shipped weights were trained on (:mod:`.camera_raycast`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_stream.core.calib import Intrinsics, Transform
from fusion_stream.errors import ParamError
from fusion_stream.sim import raster
from fusion_stream.sim.raster import (
    _BAR_BLUE,
    _BAR_RED,
    _HEADLAMP,
    _LIT_WINDOW,
    _TAILLIGHT,
)
from fusion_stream.sim.scene import MATERIALS, STATIC, Solid, build_mesh, sensor_poses, solids
from fusion_stream.sim.world import Scenario, World

_SUN = np.array([-0.4, 0.3, 0.86]) / np.linalg.norm([-0.4, 0.3, 0.86])
_CAR_PAINT = np.array(
    [[40, 70, 160], [180, 30, 30], [200, 200, 205], [30, 30, 35], [90, 95, 100], [20, 90, 60], [210, 170, 40]],
    np.float32,
)
_SHIRTS = np.array([[200, 90, 60], [60, 120, 200], [230, 200, 60], [120, 60, 150], [240, 240, 240]], np.float32)
_KIND_CODE = {kind: code for code, kind in enumerate(MATERIALS)}
_GROUND_PALETTE = np.array(
    [[85, 110, 65], [150, 148, 140], [72, 72, 76], [235, 235, 230], [225, 190, 60]], np.float32
)  # verge, pavement, asphalt, paint, centre line
# weather → (visibility m, brightness factor)
_ATMOSPHERE = {"clear": (1e6, 1.0), "rain": (180.0, 0.75), "fog": (35.0, 0.9)}
# condition → sky colour at the horizon and straight up; the colour of fog
_SKY_COLORS = {"day": ((200.0, 215.0, 230.0), (90.0, 140.0, 215.0)), "night": ((30.0, 32.0, 45.0), (6.0, 8.0, 18.0))}
_FOG_COLOR = {"day": (185.0, 185.0, 190.0), "night": (28.0, 28.0, 34.0)}


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


def _canvas(k: Intrinsics, rays: np.ndarray, distorted: bool) -> tuple[int, int, float, float, np.ndarray]:
    """Where the rasterizer draws: (height, width, cx, cy) of an undistorted pinhole canvas with the
    camera's focal lengths that covers every pixel's ray, and the canvas pixel (flat index) each
    image pixel reads (empty when there is no distortion: the canvas is the image)."""
    if not distorted:
        return k.height, k.width, k.cx, k.cy, np.zeros(0, np.int64)
    u = k.fx * rays[:, 0] / rays[:, 2] + k.cx
    v = k.fy * rays[:, 1] / rays[:, 2] + k.cy
    # a lens that maps more than ~3 image widths of field: the outermost pixels read the canvas edge
    lo_u, hi_u = np.floor(np.clip([u.min(), u.max()], -k.width, 2 * k.width))
    lo_v, hi_v = np.floor(np.clip([v.min(), v.max()], -k.height, 2 * k.height))
    width, height = int(hi_u - lo_u) + 1, int(hi_v - lo_v) + 1
    col = np.clip(np.floor(u) - lo_u, 0, width - 1).astype(np.int64)
    row = np.clip(np.floor(v) - lo_v, 0, height - 1).astype(np.int64)
    return height, width, k.cx - float(lo_u), k.cy - float(lo_v), row * width + col


class CameraModel:
    """Renders frames for one camera; the per-pixel rays and the canvas are set up once."""

    def __init__(self, intrinsics: Intrinsics, distortion: tuple[float, ...] = ()) -> None:
        self.intrinsics = intrinsics
        self.distortion = tuple(distortion)
        self._rays = pixel_rays(intrinsics, self.distortion).astype(np.float64)
        ch, cw, self._cx, self._cy, self._sample = _canvas(intrinsics, self._rays, any(self.distortion))
        self._ids = np.empty((ch, cw), np.int32)
        self._invz = np.empty((ch, cw), np.float64)
        h, w = intrinsics.height, intrinsics.width
        self._noise_bank = np.random.default_rng(12345).standard_normal((2 * h, 2 * w, 3), dtype=np.float32)
        self._no_streaks = np.zeros((0, 0), np.float32)

    def render(
        self, world: World, t: float, mount: Transform, *, salt: int = 0, stamp_ns: int = 0,
        out: np.ndarray | None = None,
    ) -> Frame:  # fmt: skip
        """The image at scenario time ``t`` from a camera mounted at ``mount`` (optical → rig);
        ``out`` (H×W×3 uint8, C-contiguous: a publisher's loan, say) receives the RGB in place."""
        anchor_x = world.ego_pose(t)[0]
        origins, rotations = sensor_poses(world, np.array([t]), anchor_x, mount)
        items = solids(world, t, anchor_x, radius=150.0)
        return self.draw(
            items, origins[0], rotations[0], world.scenario, t, anchor_x, salt=salt, stamp_ns=stamp_ns, out=out
        )

    def draw(
        self, items: list[Solid], origin: np.ndarray, rotation: np.ndarray, s: Scenario, t: float,
        anchor_x: float = 0.0, *, salt: int = 0, stamp_ns: int = 0, out: np.ndarray | None = None,
    ) -> Frame:  # fmt: skip
        """The image of ``items`` (local frame, see :mod:`.scene`) and the ground from a camera at
        ``origin`` with ``rotation`` (optical → local), under ``s``'s light and weather, at time ``t``
        (the flashing light bars), for a local frame whose x = 0 is world x ``anchor_x``."""
        k = self.intrinsics
        mesh = build_mesh(items)
        vertices = mesh.vertices.astype(np.float64)
        # optical frame: R^T (v - o), without BLAS (see scene.rotate)
        raster.rasterize(
            np.einsum("ij,jk->ik", vertices - origin, rotation), mesh.triangles.astype(np.int64),
            k.fx, k.fy, self._cx, self._cy, self._ids, self._invz,
        )  # fmt: skip
        v0 = vertices[mesh.triangles[:, 0]]
        normals = np.cross(vertices[mesh.triangles[:, 1]] - v0, vertices[mesh.triangles[:, 2]] - v0)
        with np.errstate(invalid="ignore", divide="ignore"):
            normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        offsets = np.einsum("ij,ij->i", normals, v0 - origin)
        away = offsets > 0  # turn every normal towards the camera: then n·(v0 - o) < 0
        normals[away] *= -1
        offsets[away] *= -1
        # per solid: centre, 1/size (the kernel multiplies), cos and sin of the yaw
        solid_f = np.array(
            [(*x.center, *(1.0 / v for v in x.size), np.cos(x.yaw), np.sin(x.yaw)) for x in items], np.float64
        ).reshape(-1, 8)
        solid_i = np.array(
            [
                (_KIND_CODE[x.kind], x.actor_id, x.siren, x.actor_id)
                if x.actor_id >= 0
                else (_KIND_CODE[x.kind], n * 7 + 3, x.siren, STATIC)  # the colour key of static clutter
                for n, x in enumerate(items)
            ],
            np.int64,
        ).reshape(-1, 4)
        rng = np.random.default_rng([s.seed, 2, salt, stamp_ns])
        dy, dx = int(rng.integers(k.height)), int(rng.integers(k.width))  # the noise window
        streaks = self._no_streaks
        if s.weather == "rain":
            streaks = np.zeros((k.height, k.width), np.float32)  # contiguous: one compiled signature
            rain_streaks(streaks[:, :, None], rng)
        visibility, brightness = _ATMOSPHERE[s.weather]
        horizon, top = _SKY_COLORS[s.condition]
        rgb = np.empty((k.height, k.width, 3), np.uint8) if out is None else _image_buffer(out, k)
        label = np.empty((k.height, k.width), np.int32)
        depth = np.empty((k.height, k.width), np.float32)
        raster.shade(
            self._ids, self._sample, self._rays, rotation, origin, normals, offsets,
            mesh.owner.astype(np.int64), solid_f, solid_i,
            _PALETTE64, _EMISSIVE64, _CAR_PAINT64, _SHIRTS64, _GROUND_PALETTE64, _SUN,
            np.array(horizon, np.float64),
            np.array(top, np.float64), np.array(_FOG_COLOR[s.condition]),
            float(anchor_x), s.lanes, float(s.lane_width), float(t), s.condition == "night",
            s.weather != "clear", visibility, brightness,
            self._noise_bank, dy, dx, 2.0 if s.condition == "day" else 7.0, streaks,
            rgb, label, depth,
        )  # fmt: skip
        return Frame(rgb=rgb, label=label, depth=depth)


def _image_buffer(out: np.ndarray, k: Intrinsics) -> np.ndarray:
    """``out`` if the shading kernel can write a frame of ``k`` into it, as it is."""
    if out.shape != (k.height, k.width, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ParamError(
            "out", f"must be a C-contiguous {k.height}×{k.width}×3 uint8 array, got {out.dtype} {out.shape}"
        )
    if not out.flags.writeable:
        raise ParamError("out", "must be writable (a loan already published is read-only)")
    return out


def warm_up() -> None:
    """Compile the renderer's kernels into numba's on-disk cache (seconds of CPU once, instead of
    in a camera node's first frame): one small frame in each array layout the camera uses."""
    model = CameraModel(Intrinsics(width=32, height=24, fx=20.0, fy=20.0, cx=16.0, cy=12.0))
    box = Solid("car", (8.0, 0.0, 0.75), (4.0, 1.8, 1.5), 0.2, actor_id=1)
    for weather in ("clear", "rain"):
        model.draw([box], np.array([0.0, 0.0, 1.5]), _LOOK_ALONG_X, Scenario(seed=0, weather=weather), 0.0)


_LOOK_ALONG_X = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
"""Optical frame (z forward, x right, y down) → local frame, for a camera looking along +x."""


# What a pixel on a solid shows: one code per pixel (the codes are raster's), then one palette lookup.
_PALETTE = np.array(
    [[0, 0, 0], [45, 55, 65], [15, 15, 15], [215, 215, 205], [0, 0, 0], [40, 42, 70], [225, 185, 150],
     [20, 20, 20], [90, 90, 90], [0, 0, 0], [50, 65, 90], [50, 65, 90], [110, 112, 118], [235, 235, 235],
     [200, 20, 20], [255, 30, 30], [30, 60, 255], [250, 250, 240], [255, 20, 20]],
    np.float32,
)  # fmt: skip
_EMISSIVE = np.zeros(len(_PALETTE), np.float32)
_EMISSIVE[[_LIT_WINDOW, _BAR_RED, _BAR_BLUE, _HEADLAMP, _TAILLIGHT]] = (0.55, 0.6, 0.6, 1.0, 0.3)


_PALETTE64, _EMISSIVE64 = _PALETTE.astype(np.float64), _EMISSIVE.astype(np.float64)
_CAR_PAINT64, _SHIRTS64, _GROUND_PALETTE64 = (a.astype(np.float64) for a in (_CAR_PAINT, _SHIRTS, _GROUND_PALETTE))


def rain_streaks(image: np.ndarray, rng: np.random.Generator, count: int = 250) -> None:
    """Short bright slanted streaks, drawn in place."""
    h, w, _ = image.shape
    ys, xs = rng.integers(0, h - 12, count), rng.integers(2, w - 2, count)
    for dy in range(10):
        image[ys + dy, xs - dy // 5] += 18.0


if __name__ == "__main__":  # python -m fusion_stream.sim.camera: fill the compile cache (setup scripts)
    warm_up()
