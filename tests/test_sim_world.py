"""The simulated world: deterministic, plausible, and the same in every process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fusion_stream.sim import Scenario, World, ground_truth

from .conftest import ROOT, Procs


def test_same_scenario_same_world_in_another_process() -> None:
    here = [(s.actor.id, s.center) for s in World(Scenario(seed=7)).state(12.5)]
    code = (
        "from fusion_stream.sim import World, Scenario\n"
        "print([(s.actor.id, s.center) for s in World(Scenario(seed=7)).state(12.5)])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(here)
    assert World(Scenario(seed=8)).state(12.5) != World(Scenario(seed=7)).state(12.5)


def test_population_is_plausible() -> None:
    sirens = 0
    for seed in range(20):
        world = World(Scenario(seed=seed, actors=30))
        classes = {a.cls for a in world.actors}
        assert len(world.actors) == 30 and {"car", "pedestrian"} <= classes
        sirens += any(a.siren for a in world.actors)
        half_road = world.scenario.lanes * world.scenario.lane_width
        for t in (0.0, 3.3, 17.0):
            for s in world.state(t):
                if s.actor.cls == "pedestrian":
                    assert abs(s.center[1]) <= half_road + 1.5 + 1e-9  # on the crossing
                else:
                    assert abs(s.center[1]) < half_road  # in a lane
    assert 3 <= sirens <= 17  # "sometimes"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reported_velocity_matches_the_motion(seed: int) -> None:
    world = World(Scenario(seed=seed))
    dt = 1e-3
    for a, b in zip(world.state(5.0), world.state(5.0 + dt), strict=True):
        moved = ((b.center[0] - a.center[0]) / dt, (b.center[1] - a.center[1]) / dt)
        if abs(moved[0]) > 100:  # wrapped around the 400 m loop in this millisecond
            continue
        assert moved == pytest.approx(a.velocity, abs=1e-3) or a.actor.cls == "pedestrian"


def test_ground_truth_is_in_the_rig_frame() -> None:
    world = World(Scenario(seed=4, ego_speed=10.0))
    gt = ground_truth(world, 2.0, stamp_ns=123)
    assert gt.stamp_ns == 123 and gt.frame_id == "base_link" and len(gt) > 0
    ex, ey, _ = world.ego_pose(2.0)
    by_id = {s.actor.id: s for s in world.state(2.0)}
    for box in gt:
        s = by_id[box.track_id]
        assert box.center[0] == pytest.approx(s.center[0] - ex) and box.center[1] == pytest.approx(s.center[1] - ey)
        assert box.label == s.actor.cls and box.attributes["siren"] == s.actor.siren
        if s.actor.cls != "pedestrian" and s.actor.direction > 0:
            assert box.velocity[0] == pytest.approx(s.actor.speed - 10.0)  # relative to the ego
        assert (box.center[0] ** 2 + box.center[1] ** 2) ** 0.5 <= 80.0


def test_static_clutter_is_deterministic_and_beside_the_road() -> None:
    world = World(Scenario(seed=5))
    boxes = world.static_boxes(0, 200)
    assert boxes == World(Scenario(seed=5)).static_boxes(0, 200)
    half_road = world.scenario.lanes * world.scenario.lane_width
    assert all(abs(b.center[1]) - b.size[1] / 2 >= half_road for b in boxes)
    assert {b.kind for b in boxes} >= {"building"}


def test_bad_scenarios() -> None:
    with pytest.raises(ValueError, match="actors"):
        Scenario(actors=0)
    with pytest.raises(ValueError, match="weather"):
        Scenario(weather="snow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="condition"):
        Scenario(condition="dusk")  # type: ignore[arg-type]


def test_ground_truth_node_refuses_bad_parameters(procs: Procs) -> None:
    for bad, key in (("actors:=0", "actors"), ("rate_hz:=0", "rate_hz"), ("seed:=many", "seed")):
        p = procs.python("-m", "fusion_stream.nodes.ground_truth", "-p", bad)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 2, err
        assert key in err
