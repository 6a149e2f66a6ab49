"""``fusion-stream calib check``: LiDAR points projected onto each camera, for a person to judge.

The simulated world is captured through the rig as written (every camera and LiDAR at their
extrinsics) and each LiDAR's points are drawn on each camera's image. A rig written with a wrong
axis convention shows at once: points float off the objects, or the camera looks at the sky.
The agreement figure is the share of projected points whose depth matches the rendered surface.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fusion_stream.core import render
from fusion_stream.core.calib import Rig
from fusion_stream.errors import CalibrationError
from fusion_stream.sim import lidar
from fusion_stream.sim.camera import CameraModel
from fusion_stream.sim.scene import ego_velocity
from fusion_stream.sim.world import Scenario, World, ground_truth

MAX_RENDER_PIXELS = 40_000_000
"""The simulated camera renders every pixel (colour, depth): an 8K camera fits, 16384² does not."""


def check(rig: Rig, rig_path: str, out_dir: Path | str, scenario: Scenario, t: float) -> Iterator[tuple[Path, str]]:
    """Yield (PNG written, agreement text) for every camera × LiDAR pair of the rig."""
    cameras, lidars = rig.of_type("camera"), rig.of_type("lidar")
    if not cameras or not lidars:
        raise CalibrationError(rig_path, "sensors", "needs at least one camera and one lidar to draw a projection")
    for cam in cameras:
        assert cam.intrinsics is not None
        if cam.intrinsics.width * cam.intrinsics.height > MAX_RENDER_PIXELS:
            raise CalibrationError(
                rig_path,
                f"sensors.{cam.name}.intrinsics",
                f"{cam.intrinsics.width}x{cam.intrinsics.height} is more than the {MAX_RENDER_PIXELS} pixels "
                "calib check renders",
            )
    world = World(scenario)
    stamp = round(t * 1e9)
    velocity = ego_velocity(world, t)
    boxes = ground_truth(world, t, stamp).boxes
    for lid in lidars:
        sweep = lidar.sweep(world, t, lid.extrinsics, lidar.LidarSpec(), stamp_ns=stamp)
        points = lidar.to_rig(sweep.data, lid.extrinsics, velocity)
        for cam in cameras:
            assert cam.intrinsics is not None
            frame = CameraModel(cam.intrinsics, cam.distortion).render(world, t, cam.extrinsics, stamp_ns=stamp)
            uv, inside = cam.project(points)
            depth = np.linalg.norm(cam.extrinsics.inverse().apply(points[inside]), axis=1)
            px = np.floor(uv[inside]).astype(np.int64)
            rendered = frame.depth[px[:, 1], px[:, 0]]
            agree = np.abs(rendered - depth) < np.maximum(0.3, 0.03 * depth)
            image = render.camera_overlay(frame.rgb, cam, points, boxes, radius=1)
            path = render.save_png(image, Path(out_dir) / f"{cam.name}__{lid.name}.png")
            share = float(agree.mean()) if len(agree) else 0.0
            yield path, f"{int(inside.sum())} points in view, {share:.1%} on the surface the camera sees there"
