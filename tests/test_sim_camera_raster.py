"""The rasterized camera against the geometry (known boxes, known pixels) and against the ray-cast
reference its looks come from (the shipped weights were trained on the reference's images)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from fusion_stream.core import calib
from fusion_stream.sim import Scenario, World
from fusion_stream.sim.camera import CameraModel, pixel_rays
from fusion_stream.sim.camera_raycast import RayCastCamera
from fusion_stream.sim.scene import GROUND_LABEL, SKY, Solid

from .conftest import ROOT

RIG = calib.load(ROOT / "calib" / "sim_rig.yaml")
CAMERA = RIG["camera_front"]
assert CAMERA.intrinsics is not None
K = CAMERA.intrinsics
BARREL = (-0.25, 0.06, 0.001, -0.0015, 0.0)
"""A lens that bends straight lines visibly (a few pixels at the image edges)."""

# a pedestrian-kind box (one part: what is drawn is exactly the solid) of known pose, in a local
# frame where the ego stands at the origin facing +x, so local = rig coordinates
BOX = Solid("pedestrian", (9.0, 1.2, 1.1), (1.6, 2.4, 2.2), yaw=0.35, actor_id=7)


def _corners(box: Solid) -> np.ndarray:
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    half = np.array(box.size) / 2
    signs = np.array([[a, b, z] for a in (-1, 1) for b in (-1, 1) for z in (-1, 1)], float)
    local = signs * half
    return np.stack(
        [c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1], local[:, 2]], axis=1
    ) + np.array(box.center)


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise in pixel coordinates) of 2-D points, monotone chain."""
    pts = sorted(map(tuple, points))

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _signed_distance_inside(hull: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Per point, the distance (px) to the nearest hull edge: > 0 inside, < 0 outside."""
    dist = np.full(len(uv), np.inf)
    for a, b in zip(hull, np.roll(hull, -1, axis=0), strict=True):
        edge = b - a
        normal = np.array([-edge[1], edge[0]]) / np.linalg.norm(edge)  # inward for this winding
        dist = np.minimum(dist, (uv - a) @ normal)
    return dist


def _draw(model: CameraModel, items: list[Solid], scenario: Scenario | None = None) -> tuple[np.ndarray, ...]:
    frame = model.draw(
        items, CAMERA.extrinsics.translation, CAMERA.extrinsics.rotation, scenario or Scenario(seed=0), t=0.0
    )
    return frame.rgb, frame.label, frame.depth


def _ray_box_distance(rays_local: np.ndarray, origin: np.ndarray, box: Solid) -> np.ndarray:
    """Distance along each unit ray to ``box`` (slab method in the box's frame); inf for a miss."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    to_box = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    o = to_box @ (origin - np.array(box.center))
    d = rays_local @ to_box.T
    half = np.array(box.size) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - o) / d, (half - o) / d
    near = np.nanmax(np.minimum(t1, t2), axis=1)
    far = np.nanmin(np.maximum(t1, t2), axis=1)
    return np.where((near <= far) & (near > 0), near, np.inf)


def test_a_box_covers_the_pixels_its_projected_corners_say_with_its_label_and_depth() -> None:
    model = CameraModel(K, CAMERA.distortion)
    _, label, depth = _draw(model, [BOX])
    uv, inside = CAMERA.project(_corners(BOX))
    assert inside.all()
    v, u = np.mgrid[0 : K.height, 0 : K.width]
    centres = np.stack([u.ravel() + 0.5, v.ravel() + 0.5], axis=1)
    margin = _signed_distance_inside(_hull(uv), centres).reshape(K.height, K.width)
    assert (label[margin > 1.0] == 7).all()  # every pixel well inside the silhouette shows the box
    assert not (label[margin < -1.0] == 7).any()  # and none well outside
    assert (margin > 1.0).sum() > 5000
    # depth: the distance along each pixel's ray to the box, by ray-box intersection
    rays_local = pixel_rays(K, CAMERA.distortion) @ CAMERA.extrinsics.rotation.T
    expected = _ray_box_distance(rays_local, CAMERA.extrinsics.translation, BOX).reshape(K.height, K.width)
    on_box = label == 7
    np.testing.assert_allclose(depth[on_box], expected[on_box], atol=0.02)
    # around it: the ground (depth to z = 0) below the horizon, sky above
    below = (label == GROUND_LABEL) & (v > K.cy + 5)
    ground_t = -CAMERA.extrinsics.translation[2] / rays_local[:, 2].reshape(K.height, K.width)
    np.testing.assert_allclose(depth[below], ground_t[below], rtol=1e-4)
    assert (label[: int(K.cy) - 5][margin[: int(K.cy) - 5] < -1.0] == SKY).all()


def test_distortion_bends_a_straight_edge_where_the_calibration_projects_it() -> None:
    """The box's nearest vertical edge, off-centre: at each image row the label switches from
    sky/ground to the box within a pixel of where ``Sensor.project`` puts that edge."""
    sensor = dataclasses.replace(CAMERA, distortion=BARREL)
    model = CameraModel(K, BARREL)
    box = Solid("pedestrian", (7.0, 3.2, 1.5), (1.0, 1.0, 3.0), yaw=0.0, actor_id=3)  # left of centre
    _, label, _ = _draw(model, [box])
    # the box's right-hand edge in the image: its far corner on the side facing the camera
    x0, y0 = box.center[0] + box.size[0] / 2, box.center[1] - box.size[1] / 2
    edge = np.array([[x0, y0, z] for z in np.linspace(0.2, 2.8, 40)])
    uv, inside = sensor.project(edge)
    assert inside.all()
    straight, _ = CAMERA.project(edge)
    bend = np.abs(uv[:, 0] - straight[:, 0]).max()
    assert bend > 3.0, "the test lens should move that edge by pixels"
    checked = 0
    for u_edge, v_edge in uv:
        row = int(v_edge)
        on_box = np.flatnonzero(label[row] == 3)
        if len(on_box) == 0:
            continue
        assert on_box.max() + 1 == pytest.approx(u_edge, abs=1.0)  # right edge of the box's run
        checked += 1
    assert checked > 30


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """Share of depths that agree within 0.1 %."""
    return float((np.abs(a - b) <= 1e-3 * b).mean())


@pytest.mark.parametrize(
    ("seed", "condition", "weather", "t"),
    [(0, "day", "clear", 16.0), (4, "night", "clear", 30.0), (5, "day", "rain", 12.3), (6, "night", "fog", 40.0)],
)
def test_frames_match_the_ray_cast_reference(seed: int, condition: str, weather: str, t: float) -> None:
    """Same world, light, weather and noise: nearly the same pixels, labels and depths as one ray
    per pixel (what the shipped weights were trained on)."""
    world = World(Scenario(seed=seed, actors=35, condition=condition, weather=weather))  # type: ignore[arg-type]
    new = CameraModel(K, CAMERA.distortion).render(world, t, CAMERA.extrinsics, stamp_ns=11)
    ref = RayCastCamera(K, CAMERA.distortion, adaptive=False).render(world, t, CAMERA.extrinsics, stamp_ns=11)
    assert np.abs(new.rgb.astype(np.int64) - ref.rgb).mean() < 0.5
    assert (new.label == ref.label).mean() > 0.999
    both = np.isfinite(new.depth) & np.isfinite(ref.depth)
    assert both.mean() > 0.5
    # equal to float32 rounding, except where a pixel centre lies on an edge between two faces
    assert _close(new.depth[both], ref.depth[both]) > 0.9999


def test_with_distortion_the_frame_matches_the_ray_cast_reference() -> None:
    world = World(Scenario(seed=2, actors=35))
    new = CameraModel(K, BARREL).render(world, 20.0, CAMERA.extrinsics)
    ref = RayCastCamera(K, BARREL, adaptive=False).render(world, 20.0, CAMERA.extrinsics)
    assert (new.label == ref.label).mean() > 0.99  # nearest canvas pixel: edges move by < 1 px
    assert np.abs(new.rgb.astype(np.int64) - ref.rgb).mean() < 2.0
    both = (new.label == ref.label) & np.isfinite(new.depth)
    assert _close(new.depth[both], ref.depth[both]) > 0.995  # the same edges: a face of the same solid


def test_fog_fades_and_night_darkens_the_same_box() -> None:
    model = CameraModel(K, CAMERA.distortion)
    far = Solid("building", (60.0, 0.0, 4.0), (8.0, 10.0, 8.0), yaw=0.0)
    clear_rgb, clear_label, _ = _draw(model, [far], Scenario(seed=0))
    fog_rgb, _, _ = _draw(model, [far], Scenario(seed=0, weather="fog"))
    night_rgb, _, _ = _draw(model, [far], Scenario(seed=0, condition="night"))
    wall = clear_label == -2  # STATIC
    assert wall.sum() > 1000
    fog_grey = np.array([185.0, 185.0, 190.0]) * 0.9
    # 60 m in 35 m visibility: the wall is mostly fog colour
    assert np.abs(fog_rgb[wall].mean(axis=0) - fog_grey).max() < 25
    assert np.abs(clear_rgb[wall].mean(axis=0) - fog_grey).max() > 40
    assert night_rgb.mean() < 0.4 * clear_rgb.mean()


def test_scene_rendering_is_deterministic_and_noise_depends_on_the_stamp() -> None:
    model = CameraModel(K, CAMERA.distortion)
    world = World(Scenario(seed=5, weather="rain"))
    a = model.render(world, 12.3, CAMERA.extrinsics, stamp_ns=7).rgb
    b = CameraModel(K, CAMERA.distortion).render(world, 12.3, CAMERA.extrinsics, stamp_ns=7).rgb
    c = model.render(world, 12.3, CAMERA.extrinsics, stamp_ns=8).rgb
    assert np.array_equal(a, b) and not np.array_equal(a, c)
