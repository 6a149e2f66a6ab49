"""What every simulated sensor node shares: scenario parameters, the rig, and the capture grid.

Each sensor process builds the world from the same parameters and captures on a fixed grid of the
scenario clock (by default Unix time, so processes on any host, started in any order or respawned,
agree without talking to each other).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy.typing as npt

from fusion_stream.core import calib, msgs, resources
from fusion_stream.errors import CalibrationError, ParamError
from fusion_stream.runtime.node import Node
from fusion_stream.sim.world import Scenario, World

DEFAULT_RIG = "calib/sim_rig.yaml"


@dataclass(frozen=True)
class SimParams:
    """Parameters every simulated sensor node accepts (on top of its own)."""

    source: str = "sim"
    seed: int = 0
    actors: int = 24
    condition: str = "day"
    weather: str = "clear"
    calib: str = DEFAULT_RIG
    """Rig calibration file; a relative path is looked up in the working directory, then in the
    project directory."""
    epoch_ns: int = 0
    """Wall-clock time of scenario t = 0 (0: the Unix epoch, which every process agrees on)."""


def scenario(p: SimParams) -> Scenario:
    """The scenario the parameters describe; a bad value is a :class:`ParamError` naming it."""
    # Scenario's ParamError names the field, which is also this parameter's name
    return Scenario(seed=p.seed, actors=p.actors, condition=p.condition, weather=p.weather)  # type: ignore[arg-type]


def open_world(p: SimParams) -> World:
    """The world the parameters describe; a bad value is a :class:`ParamError` naming it."""
    if p.source != "sim":
        raise ParamError("source", f"only 'sim' is available for this node so far, got {p.source!r}")
    return World(scenario(p))


def check_sim(p: SimParams, name: str, kind: calib.SensorType) -> calib.Sensor:
    """What a simulated sensor node can check before it starts: the scenario's values, the rig
    file (found and parsed) and sensor ``name`` in it; the sensor."""
    scenario(p)
    return open_sensor(p, name, kind)


def open_sensor(p: SimParams, name: str, kind: calib.SensorType) -> calib.Sensor:
    """Sensor ``name`` from the rig file, checked to be a ``kind``."""
    try:
        rig = calib.load(resources.resolve(p.calib))
    except CalibrationError as err:
        raise ParamError("calib", str(err)) from err
    if name not in rig.sensors:
        raise ParamError("sensor", f"no sensor {name!r} in {p.calib}; it has {sorted(rig.sensors)}")
    sensor = rig[name]
    if sensor.type != kind:
        raise ParamError("sensor", f"{name!r} in {p.calib} is a {sensor.type}, not a {kind}")
    return sensor


@dataclass
class FrameGrid:
    """Capture times on a fixed grid: frame k is captured at ``epoch_ns + k·period_ns``.

    :meth:`due` says which frame to produce now, and counts frames skipped because the process
    fell behind (a real sensor drops them too; the count goes into ``/diagnostics``)."""

    period_ns: int
    epoch_ns: int = 0
    last: int | None = None
    skipped: int = 0

    def capture_ns(self, k: int) -> int:
        return self.epoch_ns + k * self.period_ns

    def due(self, now_ns: int, ready_after_ns: int = 0) -> int | None:
        """The newest frame whose data is complete by ``now_ns`` (captured at least
        ``ready_after_ns`` earlier), or None if it was already produced."""
        k = (now_ns - ready_after_ns - self.epoch_ns) // self.period_ns
        if self.last is not None:
            if k <= self.last:
                return None
            self.skipped += k - self.last - 1
        self.last = k
        return k


def publish_on_grid(
    node: Node,
    topic: str,
    rate_hz: float,
    epoch_ns: int,
    capture: Callable[..., msgs.Message],
    *,
    ready_after_ns: int = 0,
    msg_type: type[msgs.Message] | None = None,
    lend: tuple[tuple[int, ...], npt.DTypeLike] | None = None,
) -> FrameGrid:
    """Publish ``capture(capture_ns)`` for each frame of the grid once it is due (its data is
    complete ``ready_after_ns`` after capture); frames skipped go into ``/diagnostics``.

    ``capture`` must be a pure function of the stamp: it is called once before the grid starts,
    so the first frame's one-time costs (imports, scene building) skip no frame. With ``lend``
    (shape, dtype) it is called as ``capture(capture_ns, out=array)``, ``array`` a loan of the
    publisher's shared-memory pool (its first loan sizes the slots) to write the frame into."""
    if rate_hz <= 0:
        raise ParamError("rate_hz", f"must be > 0, got {rate_hz}")
    grid = FrameGrid(round(1e9 / rate_hz), epoch_ns)
    pub = node.publisher(topic, msg_type, nominal_hz=rate_hz, skipped=lambda: grid.skipped)

    def frame(at_ns: int) -> msgs.Message:
        return capture(at_ns) if lend is None else capture(at_ns, out=pub.loan(*lend))

    # One frame now, thrown away: the first one imports the ray caster and builds the scene (~3 s),
    # which in the first tick would skip dozens of frames. Captures are pure functions of the stamp.
    t0 = time.perf_counter()
    day = 86_400 * 10**9  # later than any calibrated clock offset, so the stamp stays positive
    k = (max(node.clock.now_ns(), epoch_ns + day) - epoch_ns) // grid.period_ns
    frame(grid.capture_ns(k))
    node.log.info("first frame computed in %.2f s, before the capture grid starts", time.perf_counter() - t0)
    node.add_diagnostics(lambda: {"frames_skipped": grid.skipped})

    def tick() -> None:
        k = grid.due(node.clock.now_ns(), ready_after_ns=ready_after_ns)
        if k is not None:
            pub.publish(frame(grid.capture_ns(k)))

    node.timer(grid.period_ns / 1e9, tick, phase_ns=epoch_ns)
    return grid
