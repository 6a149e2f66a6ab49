"""Pictures of sensor data, as pure functions returning RGB arrays (H×W×3 uint8).

Used by ``calib check``, ``sim snapshot`` and, later, the viewer and evaluation reports. No
plotting library: points and lines are drawn with numpy, so this runs anywhere and fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fusion_stream.core.calib import Sensor
from fusion_stream.core.geometry import box_corners
from fusion_stream.core.msgs import Box3D

CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "car": (0, 160, 255),
    "truck": (255, 160, 0),
    "pedestrian": (255, 40, 90),
    "cyclist": (80, 230, 80),
}
_GROUND_TRUTH_COLOR = (150, 150, 150)
_DEFAULT_COLOR = (230, 230, 230)


def depth_colors(depth: np.ndarray, near: float = 2.0, far: float = 60.0) -> np.ndarray:
    """N×3 uint8 colours from near (red) through yellow and green to far (blue)."""
    x = np.clip((np.asarray(depth, np.float64) - near) / (far - near), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4 * x - 0.5), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 1.8), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 3.2), 0, 1)
    return (np.stack([r, g, b], axis=1) * 255).astype(np.uint8)


def draw_points(image: np.ndarray, uv: np.ndarray, colors: np.ndarray, radius: int = 1) -> np.ndarray:
    """Return a copy of ``image`` with a square dot at each pixel position ``uv`` (N×2)."""
    out = image.copy()
    h, w = out.shape[:2]
    px = np.floor(uv).astype(np.int64)
    for dy in range(-radius + 1, radius):
        for dx in range(-radius + 1, radius):
            x, y = px[:, 0] + dx, px[:, 1] + dy
            ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            out[y[ok], x[ok]] = colors[ok]
    if radius <= 1:
        ok = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        out[px[ok, 1], px[ok, 0]] = colors[ok]
    return out


def draw_line(image: np.ndarray, a: tuple[float, float], b: tuple[float, float], color: tuple[int, int, int]) -> None:
    """Draw a 1-pixel line from ``a`` to ``b`` (x, y) in place, clipped to the image."""
    h, w = image.shape[:2]
    n = int(max(abs(b[0] - a[0]), abs(b[1] - a[1]))) + 1
    if n > 20_000:  # a wildly off-screen segment: not worth sampling
        return
    xs = np.round(np.linspace(a[0], b[0], n)).astype(np.int64)
    ys = np.round(np.linspace(a[1], b[1], n)).astype(np.int64)
    ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    image[ys[ok], xs[ok]] = color


def bird_eye_view(
    points: np.ndarray | None = None,
    boxes: Iterable[Box3D] = (),
    radar: np.ndarray | None = None,
    radar_velocity: np.ndarray | None = None,
    *,
    ground_truth: Iterable[Box3D] = (),
    extent_m: float = 60.0,
    pixels_per_m: float = 8.0,
) -> np.ndarray:
    """Top view around the rig origin (x up the image, y to the left): LiDAR points by height,
    radar returns as white squares with radial-velocity ticks, boxes outlined in class colours
    with a heading line; ``ground_truth`` boxes (to compare detections with) in grey beneath."""
    size = int(2 * extent_m * pixels_per_m)
    image = np.full((size, size, 3), 18, np.uint8)

    def to_px(xy: np.ndarray) -> np.ndarray:
        return np.stack([size / 2 - xy[:, 1] * pixels_per_m, size / 2 - xy[:, 0] * pixels_per_m], axis=1)

    for r in range(10, int(extent_m) + 1, 10):  # range rings every 10 m
        angle = np.linspace(0, 2 * np.pi, 720)
        ring = to_px(np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1))
        image = draw_points(image, ring, np.full((len(ring), 3), 45, np.uint8))
    if points is not None and len(points):
        z = points[:, 2]
        shade = np.clip((z + 2.0) / 4.0, 0.0, 1.0)
        colors = np.stack([90 + 165 * shade, 90 + 165 * shade, 120 + 135 * (1 - shade)], axis=1).astype(np.uint8)
        image = draw_points(image, to_px(points[:, :2]), colors)
    if radar is not None and len(radar):
        px = to_px(radar[:, :2])
        image = draw_points(image, px, np.full((len(px), 3), 255, np.uint8), radius=3)
        if radar_velocity is not None:
            unit = radar[:, :2] / np.maximum(np.linalg.norm(radar[:, :2], axis=1, keepdims=True), 1e-6)
            tips = to_px(radar[:, :2] + unit * radar_velocity[:, None] * 0.2)  # where it is in 0.2 s
            for a, b in zip(px, tips, strict=True):
                draw_line(image, (a[0], a[1]), (b[0], b[1]), (255, 255, 0))
    drawn = [(box, _GROUND_TRUTH_COLOR) for box in ground_truth]
    drawn += [(box, CLASS_COLORS.get(box.label, _DEFAULT_COLOR)) for box in boxes]
    for box, color in drawn:
        corners = to_px(box_corners(box)[:4, :2])
        for i in range(4):
            a, b = corners[i], corners[(i + 1) % 4]
            draw_line(image, (a[0], a[1]), (b[0], b[1]), color)
        front = (corners[0] + corners[3]) / 2
        center = to_px(np.array([box.center[:2]]))[0]
        draw_line(image, (center[0], center[1]), (front[0], front[1]), color)
    ego = to_px(np.array([[0.0, 0.0], [4.5, 0.0]]))
    draw_line(image, (ego[0, 0], ego[0, 1]), (ego[1, 0], ego[1, 1]), (255, 255, 255))
    return image


def save_png(image: np.ndarray, path: Path | str) -> Path:
    """Write an RGB array as PNG (creating the folder)."""
    from PIL import Image as PILImage

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.ascontiguousarray(image)).save(path)
    return path


_BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))


def camera_overlay(
    image: np.ndarray,
    camera: Sensor,
    points_rig: np.ndarray | None = None,
    boxes: Iterable[Box3D] = (),
    *,
    radius: int = 2,
    show_labels: bool = True,
) -> np.ndarray:
    """The camera image with rig-frame points coloured by depth and 3D boxes drawn as wireframes
    (with class and score above, and a siren marker on emergency vehicles).

    Points landing on the objects they belong to is what a correct calibration looks like."""
    out = image.copy()
    to_camera = camera.extrinsics.inverse()
    if points_rig is not None and len(points_rig):
        uv, inside = camera.project(points_rig)
        depth = to_camera.apply(points_rig)[:, 2]
        order = np.argsort(-depth[inside])  # far first, so near points stay on top
        out = draw_points(out, uv[inside][order], depth_colors(depth[inside][order]), radius=radius)
    labels: list[tuple[float, float, str, tuple[int, int, int], bool]] = []
    for box in boxes:
        corners = box_corners(box)
        if (to_camera.apply(corners)[:, 2] < 0.5).any():  # partly behind the camera
            continue
        uv, _ = camera.project(corners)
        color = CLASS_COLORS.get(box.label, _DEFAULT_COLOR)
        for i, j in _BOX_EDGES:
            draw_line(out, (uv[i, 0], uv[i, 1]), (uv[j, 0], uv[j, 1]), color)
        if show_labels:
            siren = bool(box.attributes.get("siren", False))
            labels.append((float(uv[:, 0].min()), float(uv[:, 1].min()), f"{box.label} {box.score:.2f}", color, siren))
    return _draw_labels(out, labels) if labels else out


def _draw_labels(image: np.ndarray, labels: list[tuple[float, float, str, tuple[int, int, int], bool]]) -> np.ndarray:
    """Class and score above each box; a red-and-blue flashing-light marker for a siren."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    pil = PILImage.fromarray(image)
    draw = ImageDraw.Draw(pil)
    for x_box, y, text, color, siren in labels:
        top = max(0.0, y - 12)
        width = 6 * len(text) + 4
        x = min(max(0.0, x_box), image.shape[1] - width - (26 if siren else 0))  # keep it on screen
        draw.rectangle((x, top, x + width, top + 11), fill=(0, 0, 0))
        draw.text((x + 2, top), text, fill=color)
        if siren:
            draw.ellipse((x + width + 2, top, x + width + 12, top + 10), fill=(255, 0, 0))
            draw.ellipse((x + width + 14, top, x + width + 24, top + 10), fill=(0, 80, 255))
    return np.asarray(pil).copy()


def audio_polar(power: np.ndarray, *, siren_probability: float | None = None, size: int = 240) -> np.ndarray:
    """Direction-of-arrival power over azimuth bins as a polar plot, rig frame seen from above
    (x forward = up, y left = left): the loudest direction drawn as a line from the centre."""
    image = np.full((size, size, 3), 18, np.uint8)
    c = size / 2
    r_max = size / 2 - 12
    bins = len(power)
    if bins == 0:
        return image
    p = np.asarray(power, np.float64)
    span = p.max() - p.min()
    norm = (p - p.min()) / span if span > 0 else np.zeros_like(p)
    az = np.arange(bins) * 2 * math.pi / bins  # bin 0 = straight ahead, counter-clockwise (to the left)

    def px(r: float, a: float) -> tuple[float, float]:
        return c - r * math.sin(a), c - r * math.cos(a)

    for frac in (0.33, 0.66, 1.0):
        ring = np.array([px(r_max * frac, a) for a in np.linspace(0, 2 * math.pi, 360)])
        image = draw_points(image, ring, np.full((len(ring), 3), 50, np.uint8))
    outline = [px(r_max * (0.15 + 0.85 * n), a) for n, a in zip(norm, az, strict=True)]
    for i in range(bins):
        a, b = outline[i], outline[(i + 1) % bins]
        draw_line(image, a, b, (90, 200, 255))
    best = int(np.argmax(p))
    loud = (255, 60, 60) if siren_probability is not None and siren_probability >= 0.5 else (255, 220, 0)
    draw_line(image, (c, c), px(r_max, float(az[best])), loud)
    ego = np.array([px(6.0, a) for a in np.linspace(0, 2 * math.pi, 40)])
    return draw_points(image, ego, np.full((len(ego), 3), 255, np.uint8))
