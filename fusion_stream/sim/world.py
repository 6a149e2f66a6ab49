"""A deterministic driving world: ``World(scenario).state(t)`` is a pure function of time.

Every sensor process builds the same :class:`World` from the same scenario and seed and asks it
for the state at its own capture times, so the processes agree without talking to each other.

The road runs along +x with ``lanes`` lanes of ``lane_width`` each way (right-hand traffic:
positive y is left). The ego car drives in the rightmost forward lane at ``ego_speed``. Actors:
cars and trucks in lanes (both directions), cyclists near the kerb, pedestrians crossing, and
sometimes an emergency vehicle with its siren on; static clutter (buildings, poles, parked cars)
lines the road and occludes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from fusion_stream.core.msgs import Box3D, Detections
from fusion_stream.errors import ParamError

ActorClass = Literal["car", "truck", "pedestrian", "cyclist"]
CLASSES: tuple[ActorClass, ...] = ("car", "truck", "pedestrian", "cyclist")
Condition = Literal["day", "night"]
Weather = Literal["clear", "rain", "fog"]

_SIZES: dict[ActorClass, tuple[float, float, float]] = {  # length, width, height (m)
    "car": (4.5, 1.9, 1.6),
    "truck": (8.0, 2.5, 3.2),
    "pedestrian": (0.6, 0.6, 1.75),
    "cyclist": (1.8, 0.6, 1.7),
}
_SPEEDS: dict[ActorClass, tuple[float, float]] = {  # m/s range
    "car": (8.0, 16.0),
    "truck": (6.0, 12.0),
    "pedestrian": (0.8, 1.8),
    "cyclist": (3.0, 7.0),
}


@dataclass(frozen=True)
class Scenario:
    """What to simulate. ``seed`` fixes everything random; the same scenario is the same world."""

    seed: int = 0
    actors: int = 24
    lanes: int = 2
    lane_width: float = 3.5
    ego_speed: float = 10.0
    condition: Condition = "day"
    weather: Weather = "clear"
    siren_probability: float = 0.5
    """Chance that one of the vehicles is an emergency vehicle with its siren on."""
    clutter_spacing: float = 12.0

    def __post_init__(self) -> None:
        # ParamError with the field's name: the sensor nodes' parameters and the CLI options share it
        if not 1 <= self.actors <= 200:
            raise ParamError("actors", f"must be in 1..200, got {self.actors}")
        if self.lanes < 1:
            raise ParamError("lanes", f"must be >= 1, got {self.lanes}")
        if self.lane_width <= 0:
            raise ParamError("lane_width", f"must be > 0, got {self.lane_width}")
        if self.ego_speed < 0:
            raise ParamError("ego_speed", f"must be >= 0, got {self.ego_speed}")
        if self.condition not in get_args(Condition):
            raise ParamError("condition", f"must be one of {', '.join(get_args(Condition))}, got {self.condition!r}")
        if self.weather not in get_args(Weather):
            raise ParamError("weather", f"must be one of {', '.join(get_args(Weather))}, got {self.weather!r}")


@dataclass(frozen=True)
class Actor:
    """An actor's constant description; its motion follows from ``state(t)``."""

    id: int
    cls: ActorClass
    size: tuple[float, float, float]
    speed: float
    start_x: float
    """Position along the road at t = 0 (relative to the ego's start)."""
    lateral: float
    """Lane centre (y) for vehicles; kerb-side start for pedestrians."""
    direction: int
    """+1 with the ego, -1 oncoming; for pedestrians the crossing direction."""
    siren: bool = False
    crossing_period: float = 0.0
    """Pedestrians: seconds between the starts of two crossings."""


@dataclass(frozen=True)
class ActorState:
    """An actor at one instant, in the world frame."""

    actor: Actor
    center: tuple[float, float, float]
    yaw: float
    velocity: tuple[float, float]


@dataclass(frozen=True)
class Box:
    """A static obstacle (building, pole, parked car)."""

    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0


@dataclass(frozen=True)
class World:
    """The simulated world of a :class:`Scenario`: its actors, whose state is a pure function of time."""

    scenario: Scenario
    actors: tuple[Actor, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "actors", _make_actors(self.scenario))

    # ------------------------------------------------------------------ queries

    def ego_pose(self, t: float) -> tuple[float, float, float]:
        """Ego (x, y, yaw) in the world frame at ``t`` seconds."""
        s = self.scenario
        return (s.ego_speed * t, -s.lane_width / 2, 0.0)

    def state(self, t: float) -> list[ActorState]:
        """Every actor at time ``t`` (seconds since the scenario start), world frame."""
        return [_actor_state(a, t, self.scenario) for a in self.actors]

    def nearby(self, t: float, radius: float = 80.0) -> list[ActorState]:
        ex, ey, _ = self.ego_pose(t)
        return [s for s in self.state(t) if math.hypot(s.center[0] - ex, s.center[1] - ey) <= radius]

    def static_boxes(self, x_min: float, x_max: float) -> list[Box]:
        """Buildings, poles and parked cars along the road between ``x_min`` and ``x_max``.

        Placed on a fixed grid with seeded variation, so any process gets the same clutter."""
        s = self.scenario
        out: list[Box] = []
        for k in range(math.floor(x_min / s.clutter_spacing), math.ceil(x_max / s.clutter_spacing) + 1):
            out.extend(_clutter_cell(s, k))
        return out


@functools.lru_cache(maxsize=4096)
def _clutter_cell(s: Scenario, k: int) -> tuple[Box, ...]:
    """The clutter of one cell of the grid along the road (cached: seeding a generator per cell
    costs more than everything else in a LiDAR sector)."""
    half_road = s.lanes * s.lane_width
    out: list[Box] = []
    for side in (-1, 1):
        rng = np.random.default_rng([s.seed, k % (1 << 63), side + 2])
        x = k * s.clutter_spacing
        depth = float(rng.uniform(6, 14))
        out.append(
            Box(
                "building",
                (x, side * (half_road + 6 + depth / 2), 4.0),
                (float(rng.uniform(6, 11)), depth, float(rng.uniform(6, 14))),
            )
        )
        if rng.random() < 0.5:
            out.append(Box("pole", (x + 3, side * (half_road + 1.0), 3.0), (0.3, 0.3, 6.0)))
        if rng.random() < 0.3:
            out.append(Box("parked_car", (x + 6, side * (half_road + 1.2), 0.8), (4.4, 1.8, 1.5)))
    return tuple(out)


def _make_actors(s: Scenario) -> tuple[Actor, ...]:
    rng = np.random.default_rng(s.seed)
    weights = np.array([0.55, 0.12, 0.2, 0.13])
    actors: list[Actor] = []
    for i in range(s.actors):
        cls: ActorClass = CLASSES[int(rng.choice(4, p=weights))]
        lo, hi = _SPEEDS[cls]
        speed = float(rng.uniform(lo, hi))
        start_x = float(rng.uniform(-40, 120))
        sl, sw, sh = (float(v) for v in np.array(_SIZES[cls]) * rng.uniform(0.9, 1.1, 3))
        size = (sl, sw, sh)
        if cls == "pedestrian":
            side = int(rng.choice([-1, 1]))
            half = s.lanes * s.lane_width + 1.5
            actors.append(
                Actor(
                    i,
                    cls,
                    size,
                    speed,
                    start_x,
                    side * half,
                    -side,  # type: ignore[arg-type]
                    crossing_period=float(rng.uniform(8, 20)),
                )
            )
            continue
        direction = 1 if cls == "cyclist" or rng.random() < 0.6 else -1
        lane = int(rng.integers(0, s.lanes))
        kerb = -(s.lanes * s.lane_width - 0.6)
        lateral = kerb if cls == "cyclist" else -direction * (lane + 0.5) * s.lane_width
        actors.append(Actor(i, cls, size, speed, start_x, lateral, direction))  # type: ignore[arg-type]
    actors = _flow_in_lanes(actors, s, rng)
    vehicles = [a for a in actors if a.cls in ("car", "truck")]
    if vehicles and rng.random() < s.siren_probability:
        chosen = vehicles[int(rng.integers(0, len(vehicles)))]
        actors[chosen.id] = dataclasses.replace(chosen, siren=True)
    return tuple(actors)


def _flow_in_lanes(actors: list[Actor], s: Scenario, rng: np.random.Generator) -> list[Actor]:
    """Traffic flows: every vehicle in a lane drives at that lane's speed (the ego's lane at the
    ego's), spaced at least a car-length-plus-gap apart and clear of the ego, so no vehicle ever
    drives through another or through the ego."""
    lanes: dict[tuple[int, float], list[Actor]] = {}
    for a in actors:
        if a.cls != "pedestrian":
            lanes.setdefault((a.direction, a.lateral), []).append(a)
    ego_lateral = -s.lane_width / 2
    out = list(actors)
    for (direction, lateral), members in sorted(lanes.items()):
        ego_lane = direction > 0 and abs(lateral - ego_lateral) < 1e-9
        speed = (
            s.ego_speed
            if ego_lane
            else float(rng.uniform(*_SPEEDS["cyclist" if members[0].cls == "cyclist" else "car"]))
        )
        x = -35.0
        for a in sorted(members, key=lambda m: m.start_x):
            x = max(x, a.start_x)
            if ego_lane and -12.0 - a.size[0] / 2 < x < 12.0 + a.size[0] / 2:
                x = 12.0 + a.size[0] / 2
            out[a.id] = dataclasses.replace(a, speed=speed, start_x=x)
            x += a.size[0] + float(rng.uniform(6.0, 25.0))
    return out


def _actor_state(a: Actor, t: float, s: Scenario) -> ActorState:
    h = a.size[2] / 2
    if a.cls == "pedestrian":
        width = 2 * abs(a.lateral)
        cross_time = width / a.speed
        phase = (t + a.start_x) % a.crossing_period  # start_x doubles as a phase offset
        progress = min(phase, cross_time) * a.speed
        y = a.lateral + a.direction * progress
        walking = phase < cross_time
        vy = a.direction * a.speed if walking else 0.0
        yaw = math.copysign(math.pi / 2, a.direction)
        return ActorState(a, (_around_ego(a.start_x + 10.0, t, s), y, h), yaw, (0.0, vy))
    # vehicles: constant speed along their lane
    x = _around_ego(a.start_x + a.direction * a.speed * t, t, s)
    yaw = 0.0 if a.direction > 0 else math.pi
    return ActorState(a, (x, a.lateral, h), yaw, (a.direction * a.speed, 0.0))


def _around_ego(x: float, t: float, s: Scenario) -> float:
    """The road is a 400 m loop that travels with the ego (150 m behind to 250 m ahead): actors
    that fall far behind reappear ahead, out of sensor range, so any ``t`` has a full road."""
    ego_x = s.ego_speed * t
    return ego_x + ((x - ego_x + 150.0) % 400.0) - 150.0


def ground_truth(
    world: World, t: float, stamp_ns: int, radius: float = 80.0, frame_id: str = "base_link"
) -> Detections:
    """The actors near the ego at ``t`` as boxes in the rig frame (what ``/ground_truth/objects``
    carries): centre, size, yaw and velocity relative to the ego, class, and the siren attribute."""
    ex, ey, eyaw = world.ego_pose(t)
    c, s = math.cos(-eyaw), math.sin(-eyaw)
    ego_v = world.scenario.ego_speed
    boxes = []
    for st in world.nearby(t, radius):
        dx, dy = st.center[0] - ex, st.center[1] - ey
        vx, vy = st.velocity[0] - ego_v * math.cos(eyaw), st.velocity[1] - ego_v * math.sin(eyaw)
        boxes.append(
            Box3D(
                center=(c * dx - s * dy, s * dx + c * dy, st.center[2]),
                size=st.actor.size,
                yaw=math.remainder(st.yaw - eyaw, 2 * math.pi),
                velocity=(c * vx - s * vy, s * vx + c * vy),
                label=st.actor.cls,
                track_id=st.actor.id,
                attributes={"siren": st.actor.siren},
            )
        )
    return Detections(stamp_ns=stamp_ns, frame_id=frame_id, boxes=tuple(boxes))
