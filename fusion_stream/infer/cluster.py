"""The model-free LiDAR baseline: ground removal, Euclidean clustering, L-shape boxes, class by size.

What Autoware keeps as its non-learned fallback, for a rig no trained model fits: it needs no
training data and runs on any LiDAR the calibration places in the rig frame. Each step is a pure
function over arrays (:func:`ground_height`, :func:`cluster_labels`, :func:`fit_rectangle`,
:func:`classify`, :func:`detect`); :class:`ClusterDetector` wraps them in the
:class:`~fusion_stream.infer.detector.Detector` contract.

Choices: ground by the third-lowest point of a 1 m grid, min-filtered over a few metres (it
follows a road that slopes or bends, where one RANSAC plane cannot); clusters as connected
components of a 0.2 m BEV occupancy grid, and boxes by the L-shape closeness criterion (Zhang et
al., 2017), which, unlike the minimum-area rectangle, is not ambiguous for the two faces a LiDAR
sees of a car: each one pass of a numba kernel. bench/cluster.py measures the whole; open3d's
plane segmentation and DBSCAN were not measured against it.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from fusion_stream.core import calib, msgs
from fusion_stream.errors import ParamError
from fusion_stream.infer.detector import StageTimes
from fusion_stream.runtime import jit

Size = tuple[float, float, float]


@dataclass(frozen=True)
class ClassRule:
    """The visible footprint and height a class may have (m), and its typical size, to which a
    box seen from one side only is completed (away from the sensor)."""

    max_length: float
    max_width: float
    min_height: float
    max_height: float
    typical: Size


DEFAULT_RULES: Mapping[str, ClassRule] = {
    # tried in this order; the first that fits wins
    "pedestrian": ClassRule(1.1, 1.1, 1.0, 2.1, (0.7, 0.7, 1.75)),
    "cyclist": ClassRule(2.2, 1.1, 1.65, 2.1, (1.8, 0.7, 1.75)),
    "car": ClassRule(6.0, 2.6, 0.9, 2.3, (4.3, 1.8, 1.55)),
    "truck": ClassRule(15.0, 3.3, 2.5, 4.5, (6.5, 2.4, 3.2)),
}


@dataclass(frozen=True)
class ClusterParams:
    """Tuning of the baseline, with defaults for a roof LiDAR on a car (rig frame on the road,
    x forward). Distances in metres."""

    max_range: float = 70.0
    """Points farther than this from the sensor (in BEV) are ignored."""
    min_range: float = 2.5
    """Nearer than this: the ego vehicle's own body."""
    ground_cell: float = 1.0
    ground_window: float = 2.0
    """The ground under a cell is the lowest point within this distance (cells): wider than half a
    car's width, so a car's roof is never taken for the ground under it."""
    ground_tolerance: float = 0.25
    """Points up to this height above the local ground are ground."""
    max_height: float = 4.5
    """Points higher than this above the ground (bridges, branches) are not objects."""
    cluster_cell: float = 0.2
    cluster_distance: float = 0.6
    """Cells of the BEV grid closer than this join one cluster."""
    min_points: int = 5
    max_points: int = 20000
    max_extent: float = 16.0
    """A cluster wider than this (its BEV bounding box) is a building or a wall."""
    angle_steps: int = 90
    """Headings tried by the L-shape fit over a quarter turn (1° each by default)."""
    fit_points: int = 400
    """At most this many of a cluster's points (evenly taken) go into the L-shape fit."""
    score_points: float = 40.0
    """The point count at which the score's point term reaches 1 − 1/e."""
    rules: Mapping[str, ClassRule] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def __post_init__(self) -> None:
        for key in ("max_range", "ground_cell", "cluster_cell", "cluster_distance", "max_height", "score_points"):
            if not getattr(self, key) > 0:
                raise ParamError(key, f"must be > 0, got {getattr(self, key)}")
        if not 0 <= self.min_range < self.max_range:
            raise ParamError("min_range", f"must be in [0, max_range={self.max_range}), got {self.min_range}")
        if self.min_points < 1 or self.max_points < self.min_points:
            raise ParamError(
                "min_points", f"need 1 <= min_points <= max_points, got {self.min_points}, {self.max_points}"
            )
        if self.angle_steps < 2:
            raise ParamError("angle_steps", f"must be >= 2, got {self.angle_steps}")


# --------------------------------------------------------------------------- compiled kernels


def _ground_kernel(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, x0: float, y0: float, cell: float, n: int, reach: int, out: np.ndarray
) -> None:
    """``out[i]``: the ground's height under point i, +inf off the n×n grid. A cell's ground is
    its third-lowest point (a point or two of multipath below the road must not sink it);
    ``out`` is the lowest of those within ``reach`` cells (a separable min filter), or of the
    cells' lowest points where no cell around has three."""
    inf = np.inf
    low = np.full((3, n, n), inf)
    m = x.shape[0]
    ix = np.empty(m, np.int64)
    iy = np.empty(m, np.int64)
    for i in range(m):
        fx = (x[i] - x0) / cell
        fy = (y[i] - y0) / cell
        if not (0.0 <= fx < n and 0.0 <= fy < n):
            ix[i] = -1
            continue
        a, b = int(fx), int(fy)
        ix[i], iy[i] = a, b
        v = z[i]
        for k in range(3):  # insert into the cell's three lowest, kept sorted
            if v < low[k, a, b]:
                v, low[k, a, b] = low[k, a, b], v
    for level in (0, 2):
        grid = low[level]
        rows = np.full((n, n), inf)
        for a in range(n):
            for b in range(n):
                v = inf
                for k in range(max(0, a - reach), min(n, a + reach + 1)):
                    v = min(v, grid[k, b])
                rows[a, b] = v
        for a in range(n):
            for b in range(n):
                v = inf
                for k in range(max(0, b - reach), min(n, b + reach + 1)):
                    v = min(v, rows[a, k])
                grid[a, b] = v
    for i in range(m):
        if ix[i] < 0:
            out[i] = inf
        else:
            third = low[2, ix[i], iy[i]]
            out[i] = third if third < inf else low[0, ix[i], iy[i]]


def _cluster_kernel(
    x: np.ndarray, y: np.ndarray, x0: float, y0: float, cell: float, n: int, reach: int, labels: np.ndarray
) -> int:
    """Connected components of the occupied cells of an n×n BEV grid, cells within ``reach``
    cells (a disc) joined: ``labels[i]`` is point i's component (0, 1, ... in order of first
    point), -1 off the grid. The number of components."""
    grid = np.full((n, n), -1, np.int64)
    m = x.shape[0]
    cx = np.empty(m, np.int64)
    cy = np.empty(m, np.int64)
    cell_of = np.full(m, -1, np.int64)
    cells = 0
    for i in range(m):
        fx = (x[i] - x0) / cell
        fy = (y[i] - y0) / cell
        if not (0.0 <= fx < n and 0.0 <= fy < n):
            continue
        a, b = int(fx), int(fy)
        if grid[a, b] < 0:
            grid[a, b] = cells
            cx[cells], cy[cells] = a, b
            cells += 1
        cell_of[i] = grid[a, b]
    parent = np.arange(cells)
    r2 = reach * reach
    for c in range(cells):
        a, b = cx[c], cy[c]
        for da in range(0, reach + 1):
            for db in range(-reach, reach + 1):
                if (da == 0 and db <= 0) or da * da + db * db > r2:
                    continue
                p, q = a + da, b + db
                if p >= n or q < 0 or q >= n:
                    continue
                other = grid[p, q]
                if other >= 0:
                    ra = c
                    while parent[ra] != ra:  # find, halving the path
                        parent[ra] = parent[parent[ra]]
                        ra = parent[ra]
                    rb = other
                    while parent[rb] != rb:
                        parent[rb] = parent[parent[rb]]
                        rb = parent[rb]
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
    component = np.full(cells, -1, np.int64)
    count = 0
    for i in range(m):
        c = cell_of[i]
        if c < 0:
            labels[i] = -1
            continue
        root = c
        while parent[root] != root:
            root = parent[root]
        if component[root] < 0:
            component[root] = count
            count += 1
        labels[i] = component[root]
    return count


def _lshape_kernel(x: np.ndarray, y: np.ndarray, steps: int, d0: float, out: np.ndarray) -> None:
    """The heading θ in [0, π/2) whose rectangle the points hug closest (the closeness criterion:
    Σ 1/max(distance to the nearer edge, d0)), and that rectangle's extents along (cos θ, sin θ)
    and (−sin θ, cos θ): ``out`` = θ, min1, max1, min2, max2."""
    m = x.shape[0]
    best = -1.0
    for k in range(steps):
        t = 0.5 * np.pi * k / steps
        c, s = np.cos(t), np.sin(t)
        lo1, hi1, lo2, hi2 = np.inf, -np.inf, np.inf, -np.inf
        for i in range(m):
            u = c * x[i] + s * y[i]
            v = -s * x[i] + c * y[i]
            lo1, hi1 = min(lo1, u), max(hi1, u)
            lo2, hi2 = min(lo2, v), max(hi2, v)
        score = 0.0
        for i in range(m):
            u = c * x[i] + s * y[i]
            v = -s * x[i] + c * y[i]
            d = min(u - lo1, hi1 - u, v - lo2, hi2 - v)
            score += 1.0 / max(d, d0)
        if score > best:
            best = score
            out[0], out[1], out[2], out[3], out[4] = t, lo1, hi1, lo2, hi2


@dataclass(frozen=True)
class _Kernels:
    ground: Callable[..., None]
    cluster: Callable[..., int]
    lshape: Callable[..., None]


_ARR = "float64[::1]"


@functools.cache
def _kernels() -> _Kernels:
    """Compiled on first use (or loaded from numba's cache), not at import."""
    return _Kernels(
        ground=jit.njit(
            _ground_kernel, [f"void({_ARR}, {_ARR}, {_ARR}, float64, float64, float64, int64, int64, {_ARR})"]
        ),
        cluster=jit.njit(
            _cluster_kernel, [f"int64({_ARR}, {_ARR}, float64, float64, float64, int64, int64, int64[::1])"]
        ),
        lshape=jit.njit(_lshape_kernel, [f"void({_ARR}, {_ARR}, int64, float64, {_ARR})"]),
    )


def compile_kernels() -> float:
    """Compile (or load) the kernels now; the milliseconds it took."""
    t0 = time.perf_counter()
    _kernels()
    return (time.perf_counter() - t0) * 1e3


# --------------------------------------------------------------------------- steps


def ground_height(xyz: np.ndarray, centre: tuple[float, float], params: ClusterParams) -> np.ndarray:
    """The ground's height under each point (N), from the lowest points around it; +inf for a
    point more than ``max_range`` from ``centre`` along x or y."""
    n = math.ceil(2 * params.max_range / params.ground_cell)
    out = np.empty(len(xyz))
    _kernels().ground(
        np.ascontiguousarray(xyz[:, 0], np.float64),
        np.ascontiguousarray(xyz[:, 1], np.float64),
        np.ascontiguousarray(xyz[:, 2], np.float64),
        centre[0] - params.max_range,
        centre[1] - params.max_range,
        params.ground_cell,
        n,
        max(0, round(params.ground_window / params.ground_cell)),
        out,
    )
    return out


def cluster_labels(xy: np.ndarray, centre: tuple[float, float], params: ClusterParams) -> tuple[np.ndarray, int]:
    """Each point's cluster (N, -1 off the grid) and the number of clusters: points whose BEV
    cells lie within ``cluster_distance`` of each other, transitively."""
    n = math.ceil(2 * params.max_range / params.cluster_cell)
    labels = np.empty(len(xy), np.int64)
    count = _kernels().cluster(
        np.ascontiguousarray(xy[:, 0], np.float64),
        np.ascontiguousarray(xy[:, 1], np.float64),
        centre[0] - params.max_range,
        centre[1] - params.max_range,
        params.cluster_cell,
        n,
        max(1, math.floor(params.cluster_distance / params.cluster_cell)),
        labels,
    )
    return labels, int(count)


@dataclass(frozen=True)
class Rectangle:
    """A fitted BEV rectangle: centre, length along ``yaw``, width across, and how well the
    points hug its edges (the share within ``edge`` of one)."""

    center: tuple[float, float]
    length: float
    width: float
    yaw: float
    edge_share: float


def fit_rectangle(xy: np.ndarray, params: ClusterParams, edge: float = 0.2) -> Rectangle:
    """The L-shape fit of a cluster's footprint (N×2, N ≥ 1); the longer side is the length, the
    yaw in (−π/2, π/2]."""
    step = max(1, len(xy) // params.fit_points)
    sub = np.ascontiguousarray(xy[::step], np.float64)
    out = np.empty(5)
    _kernels().lshape(np.ascontiguousarray(sub[:, 0]), np.ascontiguousarray(sub[:, 1]), params.angle_steps, 0.01, out)
    theta, lo1, hi1, lo2, hi2 = (float(v) for v in out)
    c, s = math.cos(theta), math.sin(theta)
    u, v = (lo1 + hi1) / 2, (lo2 + hi2) / 2
    centre = (c * u - s * v, s * u + c * v)
    length, width, yaw = hi1 - lo1, hi2 - lo2, theta
    if width > length:
        length, width, yaw = width, length, theta + math.pi / 2
    yaw = math.remainder(yaw, math.pi)
    if yaw <= -math.pi / 2:
        yaw += math.pi
    pu = xy[:, 0] * c + xy[:, 1] * s
    pv = -xy[:, 0] * s + xy[:, 1] * c
    d = np.minimum(np.minimum(pu - lo1, hi1 - pu), np.minimum(pv - lo2, hi2 - pv))
    return Rectangle(centre, length, width, yaw, float(np.mean(d <= edge)))


def classify(length: float, width: float, height: float, rules: Mapping[str, ClassRule]) -> str | None:
    """The first class whose rule the visible size fits, or None (a wall, a pole, a kerb, a
    building, a hedge too long for a truck)."""
    if length > 6.5 and width < 0.5 and height < 2.5:
        return None  # long and thin but low: a fence or a wall seen edge-on, not a truck's side
    for label, rule in rules.items():
        if length <= rule.max_length and width <= rule.max_width and rule.min_height <= height <= rule.max_height:
            if label == "truck" and length < 4.0:
                continue  # a tall short blob: a tree, a kiosk, a pillar, not the back of a truck
            return label
    return None


def _complete(
    rect: Rectangle, typical: Size, sensor: tuple[float, float]
) -> tuple[tuple[float, float], float, float, float]:
    """The rectangle grown to the class's typical footprint where it is shorter, its face nearer
    the sensor kept (the sensor sees the near faces only). A car seen from behind (wider than
    long) turns: what was seen is its width."""
    length, width, yaw = rect.length, rect.width, rect.yaw
    if length < 0.6 * typical[0] and length <= typical[1] * 1.3 and width < 0.6 * typical[1]:
        length, width, yaw = width, length, yaw + math.pi / 2
    c, s = math.cos(yaw), math.sin(yaw)
    cx, cy = rect.center
    # the sensor in the box's axes, relative to its centre
    su = c * (sensor[0] - cx) + s * (sensor[1] - cy)
    sv = -s * (sensor[0] - cx) + c * (sensor[1] - cy)
    du = dv = 0.0
    if length < typical[0]:
        du = (typical[0] - length) / 2 * (-1.0 if su > 0 else 1.0)
        length = typical[0]
    if width < typical[1]:
        dv = (typical[1] - width) / 2 * (-1.0 if sv > 0 else 1.0)
        width = typical[1]
    yaw = math.remainder(yaw, math.pi)
    if yaw <= -math.pi / 2:
        yaw += math.pi
    return (cx + c * du - s * dv, cy + s * du + c * dv), length, width, yaw


def detect(points: np.ndarray, sensor: tuple[float, float], params: ClusterParams) -> tuple[msgs.Box3D, ...]:
    """The objects in one sweep (N×3, rig frame, z up; ``sensor`` the LiDAR's BEV position),
    best score first."""
    obstacles, ground = obstacle_points(points, sensor, params)
    labels, count = cluster_labels(obstacles, sensor, params)
    return boxes_of(obstacles, ground, labels, count, sensor, params)


def obstacle_points(
    points: np.ndarray, sensor: tuple[float, float], params: ClusterParams
) -> tuple[np.ndarray, np.ndarray]:
    """The points in range that stand above the ground (M×3), and the ground's height under each."""
    xyz = np.asarray(points, np.float64)
    r = np.hypot(xyz[:, 0] - sensor[0], xyz[:, 1] - sensor[1])
    keep = np.isfinite(xyz).all(axis=1) & (r < params.max_range) & (r >= params.min_range)
    xyz = xyz[keep]
    ground = ground_height(xyz, sensor, params)
    above = xyz[:, 2] - ground
    up = (above > params.ground_tolerance) & (above < params.max_height)
    return xyz[up], ground[up]


def boxes_of(
    xyz: np.ndarray,
    ground: np.ndarray,
    labels: np.ndarray,
    count: int,
    sensor: tuple[float, float],
    params: ClusterParams,
) -> tuple[msgs.Box3D, ...]:
    """One box per cluster that fits a class, scored by its points and how well they fit."""
    sizes = np.bincount(labels[labels >= 0], minlength=count)
    order = np.argsort(labels, kind="stable")
    order = order[labels[order] >= 0]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    if not len(order):
        return ()
    pts_sorted, ground_sorted = xyz[order], ground[order]
    # every cluster's BEV extent and height at once: only plausible ones are fitted
    nonempty = sizes > 0
    first = starts[nonempty]
    lo = np.minimum.reduceat(pts_sorted, first)
    hi = np.maximum.reduceat(pts_sorted, first)
    bottom_all = np.add.reduceat(ground_sorted, first) / sizes[nonempty]
    extent = np.max(hi[:, :2] - lo[:, :2], axis=1)
    height_all = hi[:, 2] - bottom_all
    min_h = min(r.min_height for r in params.rules.values())
    max_h = max(r.max_height for r in params.rules.values())
    ok = (extent <= params.max_extent) & (height_all >= min_h) & (height_all <= max_h)
    ok &= (sizes[nonempty] >= params.min_points) & (sizes[nonempty] <= params.max_points)
    boxes: list[msgs.Box3D] = []
    for j in np.flatnonzero(ok):
        k = np.flatnonzero(nonempty)[j]
        pts = pts_sorted[starts[k] : starts[k] + sizes[k]]
        bottom, height = float(bottom_all[j]), float(height_all[j])
        rect = fit_rectangle(pts[:, :2], params)
        label = classify(rect.length, rect.width, height, params.rules)
        if label is None:
            continue
        typical = params.rules[label].typical
        centre, length, width, yaw = _complete(rect, typical, sensor)
        seen = math.sqrt(min(1.0, rect.length / typical[0]) * min(1.0, max(rect.width, 0.1) / typical[1]))
        score = (1 - math.exp(-len(pts) / params.score_points)) * (0.5 + 0.5 * rect.edge_share) * (0.6 + 0.4 * seen)
        boxes.append(
            msgs.Box3D(
                center=(centre[0], centre[1], bottom + height / 2),
                size=(length, width, height),
                yaw=yaw,
                label=label,
                score=min(1.0, max(0.0, score)),
            )
        )
    boxes.sort(key=lambda b: -b.score)
    return tuple(boxes)


# --------------------------------------------------------------------------- the detector


class ClusterDetector:
    """The baseline as a :class:`~fusion_stream.infer.detector.Detector`: the latest point cloud
    of the ``lidar`` input, moved into the rig frame with the calibration of the sensor it names
    (its ``frame_id``), then :func:`detect`."""

    def __init__(
        self,
        rig: calib.Rig,
        *,
        frame_id: str = "base_link",
        inputs: Mapping[str, str] | None = None,
        params: ClusterParams | None = None,
    ) -> None:
        self.rig = rig
        self.frame_id = frame_id
        self.input = (inputs or {}).get("lidar", "lidar")
        self.params = params or ClusterParams()
        self.name = "cluster"

    def warm_up(self) -> float:
        t0 = time.perf_counter()
        compile_kernels()
        detect(np.zeros((1, 3)), (0.0, 0.0), self.params)
        return (time.perf_counter() - t0) * 1e3

    def present(self, frame: msgs.SyncedFrame) -> list[str]:
        return ["lidar"] if self._cloud(frame) is not None else []

    def _cloud(self, frame: msgs.SyncedFrame) -> msgs.PointCloud | None:
        clouds = [m for m in frame.members.get(self.input, ()) if isinstance(m, msgs.PointCloud)]
        return clouds[-1] if clouds and len(clouds[-1].data) else None

    def _to_rig(self, cloud: msgs.PointCloud) -> tuple[np.ndarray, tuple[float, float]]:
        """The cloud's points in the rig frame and the sensor's BEV position there."""
        xyz = np.asarray(cloud.data[:, [cloud.fields.index(c) for c in ("x", "y", "z")]], np.float64)
        if cloud.frame_id == self.rig.frame_id:
            return xyz, (0.0, 0.0)
        mount = self.rig[cloud.frame_id].extrinsics  # an unknown sensor: UnknownNameError naming it
        t = mount.translation
        return mount.apply(xyz), (float(t[0]), float(t[1]))

    def process(self, frame: msgs.SyncedFrame) -> tuple[msgs.Detections, StageTimes]:
        t0 = time.perf_counter()
        cloud = self._cloud(frame)
        if cloud is None:
            det = msgs.Detections(stamp_ns=frame.stamp_ns, frame_id=self.frame_id)
            return det, StageTimes((time.perf_counter() - t0) * 1e3, 0.0, 0.0)
        points, sensor = self._to_rig(cloud)
        obstacles, ground = obstacle_points(points, sensor, self.params)
        t1 = time.perf_counter()
        labels, count = cluster_labels(obstacles, sensor, self.params)
        t2 = time.perf_counter()
        boxes = boxes_of(obstacles, ground, labels, count, sensor, self.params)
        det = msgs.Detections(stamp_ns=frame.stamp_ns, frame_id=self.frame_id, boxes=boxes)
        t3 = time.perf_counter()
        return det, StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
