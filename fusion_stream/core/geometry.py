"""Shared geometry of boxes and headings, written once: box corners and yaw ↔ quaternion."""

from __future__ import annotations

import math

import numpy as np

from fusion_stream.core.msgs import Box3D

Point2 = tuple[float, float]


def footprint(box: Box3D) -> list[Point2]:
    """The box's 4 ground corners (x, y), counter-clockwise from front-left."""
    x, y, _ = box.center
    length, width, _ = box.size
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    ux, uy = 0.5 * length * c, 0.5 * length * s  # half length along the heading
    vx, vy = -0.5 * width * s, 0.5 * width * c  # half width to the left
    return [
        (x + ux + vx, y + uy + vy),
        (x - ux + vx, y - uy + vy),
        (x - ux - vx, y - uy - vy),
        (x + ux - vx, y + uy - vy),
    ]


def box_corners(box: Box3D) -> np.ndarray:
    """The 8 corners (8×3) of a box: bottom face first, counter-clockwise from front-left."""
    ring = np.array(footprint(box), dtype=np.float64)
    height = box.size[2]
    z0, z1 = box.center[2] - height / 2, box.center[2] + height / 2
    return np.concatenate([np.c_[ring, np.full(4, z0)], np.c_[ring, np.full(4, z1)]])


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """The unit quaternion (x, y, z, w) of a rotation by ``yaw`` about z."""
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """The heading (rotation about z) of a unit quaternion."""
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
