"""The camera's renderer: a z-buffer rasterizer of the scene mesh and one shading pass, compiled
with numba.

Why not a ray per pixel: open3d's cast alone cost ~47 ms of the ~108 ms per 640×384 frame, and the
numpy shading the rest, so the simulated camera could not hold 15 Hz on a 2-core machine. Why not
OpenCV's ``fillConvexPoly``: it has no depth test, and painter's order by box distance is wrong
for a pole in front of a long building; its per-pixel shading would still be numpy passes. Why not
OpenGL (llvmpipe through EGL): it works headless, but needs Mesa on the machine and the looks
ported to GLSL, and measured ~11 ms of CPU for a trivial shader before any shading or read-back.

Here each triangle is clipped at a near plane, projected with the pinhole model and filled with
a depth test at pixel centres (what the ray caster sampled), keeping the triangle id per pixel.
The shading pass then intersects each pixel's own (distorted) ray with its triangle's plane, so
depth, the hit point and therefore every pattern on a surface are exact, and applies the same
looks as the ray-cast reference (:mod:`fusion_stream.sim.camera_raycast`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from fusion_stream.runtime import jit
from fusion_stream.sim.scene import GROUND_LABEL, SKY

F = TypeVar("F", bound=Callable[..., Any])

NEAR = 0.01
"""Near clipping distance (m) along the optical axis."""


def _jit(fn: F) -> F:
    """Compiled with numba (see :mod:`fusion_stream.runtime.jit`), typed as ``fn`` so mypy keeps the signature."""
    return jit.njit(fn, error_model="numpy")


@_jit
def _fill_triangle(
    x0: float, y0: float, w0: float, x1: float, y1: float, w1: float, x2: float, y2: float, w2: float,
    tri: int, ids: np.ndarray, invz: np.ndarray,
) -> None:  # fmt: skip
    """Fill one projected triangle (pixel coordinates, ``w`` = 1/z) at pixel centres, nearer wins.

    Row by row: the three edge functions give each row's span of covered centres directly, and
    1/z (affine in screen space) steps along it, so no pixel outside the triangle is visited."""
    height, width = ids.shape
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    if area == 0.0 or not math.isfinite(area):
        return
    sign = 1.0 if area > 0.0 else -1.0
    # edge k (opposite vertex k): e_k = a_k x + b_k y + c_k, >= 0 inside once signed
    a = (sign * (y1 - y2), sign * (y2 - y0), sign * (y0 - y1))
    b = (sign * (x2 - x1), sign * (x0 - x2), sign * (x1 - x0))
    c = (sign * (x1 * y2 - x2 * y1), sign * (x2 * y0 - x0 * y2), sign * (x0 * y1 - x1 * y0))
    inv = 1.0 / (sign * area)
    wa = (a[0] * w0 + a[1] * w1 + a[2] * w2) * inv
    wb = (b[0] * w0 + b[1] * w1 + b[2] * w2) * inv
    wc = (c[0] * w0 + c[1] * w1 + c[2] * w2) * inv
    lo_y = max(0, math.ceil(min(y0, y1, y2) - 0.5))
    hi_y = min(height - 1, math.floor(max(y0, y1, y2) - 0.5))
    for i in range(lo_y, hi_y + 1):
        py = i + 0.5
        left, right = 0.5, width - 0.5  # pixel centres allowed in this row
        for k in range(3):
            rest = b[k] * py + c[k]
            if a[k] > 0.0:
                left = max(left, -rest / a[k])
            elif a[k] < 0.0:
                right = min(right, -rest / a[k])
            elif rest < 0.0:
                right = -1.0
        lo_x = math.ceil(left - 0.5)
        hi_x = math.floor(right - 0.5)
        if lo_x > hi_x:
            continue
        w = wa * (lo_x + 0.5) + wb * py + wc
        for j in range(lo_x, hi_x + 1):
            if w > invz[i, j]:
                invz[i, j] = w
                ids[i, j] = tri
            w += wa


@_jit
def rasterize(
    cam_vertices: np.ndarray, triangles: np.ndarray, fx: float, fy: float, cx: float, cy: float,
    ids: np.ndarray, invz: np.ndarray,
) -> None:  # fmt: skip
    """Per pixel of ``ids`` (H×W int32), the index of the nearest triangle whose projection covers
    the pixel centre (-1: none). ``cam_vertices`` are in the optical frame (z forward); triangles
    wound counter-clockwise seen from outside (as ``scene.build_mesh`` makes them). Back faces are
    skipped; triangles crossing the near plane are clipped to it."""
    ids[:] = -1
    invz[:] = 0.0
    poly = np.empty((4, 3))
    xs = np.empty(4)
    ys = np.empty(4)
    ws = np.empty(4)
    for t in range(triangles.shape[0]):
        v0, v1, v2 = cam_vertices[triangles[t, 0]], cam_vertices[triangles[t, 1]], cam_vertices[triangles[t, 2]]
        e1, e2 = v1 - v0, v2 - v0
        # outward normal · (v0 - camera): >= 0 means the camera sees its back (or its edge)
        if (
            (e1[1] * e2[2] - e1[2] * e2[1]) * v0[0]
            + (e1[2] * e2[0] - e1[0] * e2[2]) * v0[1]
            + (e1[0] * e2[1] - e1[1] * e2[0]) * v0[2]
        ) >= 0.0:
            continue
        n = 0
        for a in range(3):
            p = cam_vertices[triangles[t, a]]
            q = cam_vertices[triangles[t, (a + 1) % 3]]
            p_in, q_in = p[2] >= NEAR, q[2] >= NEAR
            if p_in:
                poly[n] = p
                n += 1
            if p_in != q_in:
                s = (NEAR - p[2]) / (q[2] - p[2])
                poly[n] = p + s * (q - p)
                n += 1
        if n < 3:
            continue
        for k in range(n):
            ws[k] = 1.0 / poly[k, 2]
            xs[k] = fx * poly[k, 0] * ws[k] + cx
            ys[k] = fy * poly[k, 1] * ws[k] + cy
        for k in range(1, n - 1):
            _fill_triangle(xs[0], ys[0], ws[0], xs[k], ys[k], ws[k], xs[k + 1], ys[k + 1], ws[k + 1], t, ids, invz)


# the looks: codes of what a pixel on a solid shows (the palette is in camera.py, shared with the
# ray-cast reference)
(_BODY, _GLASS, _WHEEL, _CARGO, _SHIRT, _TROUSERS, _HEAD, _FRAME, _SPOKES, _WALL, _WINDOW, _LIT_WINDOW,
 _POLE, _EV_WHITE, _EV_STRIPE, _BAR_RED, _BAR_BLUE, _HEADLAMP, _TAILLIGHT) = range(19)  # fmt: skip
# kind codes: the order of scene.MATERIALS
_CAR, _TRUCK, _PEDESTRIAN, _CYCLIST, _BUILDING, _POLE_KIND, _PARKED_CAR = range(7)


@_jit
def _object_code(
    kind: int, key: int, siren: bool, ux: float, uy: float, uz: float, px: float, py: float, pz: float,
    t: float, night: bool,
) -> int:  # fmt: skip
    """What a point on a solid shows (one of the codes above), from where on the box it is: the
    same rules, in the same order, as the ray-cast reference's ``_objects``."""
    code = _POLE
    car = kind in (_CAR, _PARKED_CAR)
    truck = kind == _TRUCK
    vehicle = car or truck
    wheel_zone = abs(abs(ux) - 0.3)
    if vehicle:
        code = _BODY
        cargo = truck and ux <= 0.26
        if cargo:
            code = _CARGO
        if uz > (0.05 if truck else 0.07) and not cargo:
            code = _GLASS
        if car and uz < -0.32 and wheel_zone < 0.09:
            code = _WHEEL
        if truck and uz < -0.4 and abs(ux) > 0.3:
            code = _WHEEL
    rider = kind == _CYCLIST
    if kind == _PEDESTRIAN or rider:
        code = _HEAD if uz > 0.37 else (_TROUSERS if uz < -0.05 else _SHIRT)
        if rider and uz < -0.1:
            code = _SPOKES if wheel_zone < 0.12 else _FRAME
    if kind == _BUILDING:
        code = _WALL
        along = px + py
        if _mod(along, 3.0) > 1.0 and _mod(pz, 3.2) > 1.2 and pz > 1.0:
            code = _WINDOW
            if night and (math.floor(along / 3.0) * 7 + key) % 3 == 0:
                code = _LIT_WINDOW
    if siren and vehicle:
        if uz <= 0.07:
            code = _EV_WHITE
        if abs(uz + 0.15) < 0.06:
            code = _EV_STRIPE
        if uz > 0.46:
            red_side = (uy > 0) == ((t * 2.0) % 1.0 < 0.5)
            code = _BAR_RED if red_side else _BAR_BLUE
    if night and vehicle and -0.35 < uz < -0.15 and abs(uy) > 0.3:
        if ux > 0.49:
            code = _HEADLAMP
        if ux < -0.49:
            code = _TAILLIGHT
    return code


@_jit
def _mod(x: float, m: float) -> float:
    """``x % m`` for m > 0 (numpy's sign convention) without libm's slow ``fmod``."""
    return x - m * math.floor(x / m)


@_jit
def _ground_surface(x: float, y: float, lanes: int, lane_width: float) -> int:
    """Index into the ground palette: 0 verge, 1 pavement, 2 asphalt, 3 paint, 4 centre line (the
    rules of ``scene.road_marking`` and the reference's ``_ground``)."""
    half_road = lanes * lane_width
    ay = abs(y)
    surface = (1 if ay < half_road + 3.0 else 0) + (1 if ay < half_road else 0)
    paint = False
    # only the lines within a line's half width of y can paint it
    for k in range(
        max(-lanes, math.floor((y - 0.08) / lane_width)), min(lanes, math.ceil((y + 0.08) / lane_width)) + 1
    ):
        if abs(y - k * lane_width) < 0.08 and (k in (-lanes, 0, lanes) or _mod(x, 9.0) < 3.0):
            paint = True
    if paint:
        surface = 4 if ay < 0.2 else 3
    return surface


@_jit
def shade(
    ids: np.ndarray, sample: np.ndarray, rays: np.ndarray, rotation: np.ndarray, origin: np.ndarray,
    normals: np.ndarray, offsets: np.ndarray, owner: np.ndarray,
    solid_f: np.ndarray, solid_i: np.ndarray,
    palette: np.ndarray, emissive: np.ndarray, car_paint: np.ndarray, shirts: np.ndarray, ground_palette: np.ndarray,
    sun: np.ndarray, sky_horizon: np.ndarray, sky_top: np.ndarray, fog_color: np.ndarray,
    anchor_x: float, lanes: int, lane_width: float, t: float, night: bool, fogged: bool, visibility: float,
    brightness: float,
    noise: np.ndarray, noise_dy: int, noise_dx: int, sigma: float, streaks: np.ndarray,
    rgb: np.ndarray, label: np.ndarray, depth: np.ndarray,
) -> None:  # fmt: skip
    """Colour, label and depth of every pixel, in place into ``rgb`` (H×W×3 uint8), ``label``
    (H×W int32) and ``depth`` (H×W float32).

    ``ids`` is the rasterized triangle per canvas pixel; ``sample[p]`` the canvas pixel that output
    pixel ``p`` reads (empty: the canvas is the image); ``rays`` each output pixel's unit ray in
    the optical frame. Per triangle: ``normals`` (local frame, towards the camera), ``offsets``
    (n·(v0 - origin)) and ``owner`` (solid index, -1 ground). Per solid: ``solid_f`` rows of
    (cx, cy, cz, 1/l, 1/w, 1/h, cos yaw, sin yaw) and ``solid_i`` rows of (kind, key, siren, label)."""
    height, width = label.shape
    flat_ids = ids.ravel()
    has_streaks = streaks.shape[0] > 0
    has_sample = sample.shape[0] > 0
    r00, r01, r02 = rotation[0, 0], rotation[0, 1], rotation[0, 2]
    r10, r11, r12 = rotation[1, 0], rotation[1, 1], rotation[1, 2]
    r20, r21, r22 = rotation[2, 0], rotation[2, 1], rotation[2, 2]
    for i in range(height):
        for j in range(width):
            p = i * width + j
            ra, rb, rc = rays[p, 0], rays[p, 1], rays[p, 2]
            dx = r00 * ra + r01 * rb + r02 * rc
            dy = r10 * ra + r11 * rb + r12 * rc
            dz = r20 * ra + r21 * rb + r22 * rc
            tri = flat_ids[sample[p]] if has_sample else flat_ids[p]
            dist = np.inf
            nx = ny = nz = facing = 0.0
            if tri >= 0:
                nx, ny, nz = normals[tri, 0], normals[tri, 1], normals[tri, 2]
                facing = nx * dx + ny * dy + nz * dz
                if facing < 0.0:
                    dist = offsets[tri] / facing
            if not (dist > 0.0 and dist < np.inf):
                a = math.sqrt(min(max(dz, 0.0), 1.0))
                cr = sky_horizon[0] * (1.0 - a) + sky_top[0] * a
                cg = sky_horizon[1] * (1.0 - a) + sky_top[1] * a
                cb = sky_horizon[2] * (1.0 - a) + sky_top[2] * a
                label[i, j] = SKY
                depth[i, j] = np.inf
                dist = np.inf
            else:
                qx, qy, qz = origin[0] + dx * dist, origin[1] + dy * dist, origin[2] + dz * dist
                glow = 0.0
                s = owner[tri]
                if s < 0:
                    g = _ground_surface(qx + anchor_x, qy, lanes, lane_width)
                    cr, cg, cb = ground_palette[g, 0], ground_palette[g, 1], ground_palette[g, 2]
                    label[i, j] = GROUND_LABEL
                else:
                    ox, oy = qx - solid_f[s, 0], qy - solid_f[s, 1]
                    cs, sn = solid_f[s, 6], solid_f[s, 7]
                    ux = (cs * ox + sn * oy) * solid_f[s, 3]
                    uy = (cs * oy - sn * ox) * solid_f[s, 4]
                    uz = (qz - solid_f[s, 2]) * solid_f[s, 5]
                    key = solid_i[s, 1]
                    code = _object_code(solid_i[s, 0], key, solid_i[s, 2] != 0, ux, uy, uz, qx, qy, qz, t, night)
                    if code == _BODY:
                        m = key % car_paint.shape[0]
                        cr, cg, cb = car_paint[m, 0], car_paint[m, 1], car_paint[m, 2]
                    elif code == _SHIRT:
                        m = key % shirts.shape[0]
                        cr, cg, cb = shirts[m, 0], shirts[m, 1], shirts[m, 2]
                    elif code == _WALL:
                        tint = key % 5
                        cr, cg, cb = 120.0 + 12.0 * tint, 105.0 + 9.0 * tint, 95.0 + 7.0 * tint
                    else:
                        cr, cg, cb = palette[code, 0], palette[code, 1], palette[code, 2]
                    glow = emissive[code]
                    label[i, j] = solid_i[s, 3]
                if night:
                    forward = min(max(dx, 0.0), 1.0)
                    forward *= forward * forward
                    forward *= forward
                    light = 0.12 + 1.6 * forward * min(max(-facing, 0.0), 1.0) * math.exp(-dist / 25.0)
                else:
                    light = 0.5 + 0.5 * min(max(nx * sun[0] + ny * sun[1] + nz * sun[2], 0.0), 1.0)
                cr = cr * light + glow * 255.0
                cg = cg * light + glow * 240.0
                cb = cb * light + glow * 200.0
                depth[i, j] = dist
            if fogged:
                through = math.exp(-(visibility * 3.0 if dist == np.inf else dist) / visibility)
                cr = (cr * through + fog_color[0] * (1.0 - through)) * brightness
                cg = (cg * through + fog_color[1] * (1.0 - through)) * brightness
                cb = (cb * through + fog_color[2] * (1.0 - through)) * brightness
            extra = streaks[i, j] if has_streaks else 0.0
            rgb[i, j, 0] = _byte(cr + noise[noise_dy + i, noise_dx + j, 0] * sigma + extra)
            rgb[i, j, 1] = _byte(cg + noise[noise_dy + i, noise_dx + j, 1] * sigma + extra)
            rgb[i, j, 2] = _byte(cb + noise[noise_dy + i, noise_dx + j, 2] * sigma + extra)


@_jit
def _byte(v: float) -> int:
    """Clip to 0..255 and truncate, like ``np.clip`` then ``astype(np.uint8)``."""
    return 0 if v < 0.0 else (255 if v >= 255.0 else int(v))
