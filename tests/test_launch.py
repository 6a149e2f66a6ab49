"""Launch files: parsing, substitution and validation (nothing is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion_stream.errors import LaunchError
from fusion_stream.graph import launch

from .conftest import ROOT

GOOD = """
graph: t
args: {rate: 10, topic: /lidar/top/points}
nodes:
  - name: lidar
    type: pattern
    params: {kind: points, points: 100, rate_hz: "${rate}"}
    remap: {/lidar/pattern/points: "${topic}"}
    respawn: {max_retries: 2, backoff_s: 0.1, backoff_max_s: 1}
  - name: relay
    type: relay
    params: {input: "${topic}", output: /relayed}
    required: false
    respawn: false
"""


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "graph.yaml"
    f.write_text(text)
    return f


def test_load_substitutes_arguments_and_derives_topics(tmp_path: Path) -> None:
    lf = launch.load(write(tmp_path, GOOD), {"rate": 20})
    lidar, relay = lf.nodes
    assert lidar.params["rate_hz"] == 20 and isinstance(lidar.params["rate_hz"], int)
    assert lidar.topics.outputs == ("/lidar/top/points",)
    assert relay.topics.inputs == ("/lidar/top/points",) and relay.topics.outputs == ("/relayed",)
    assert lidar.respawn.delay(1) == 0.1 and lidar.respawn.delay(3) == 0.4 and lidar.respawn.delay(9) == 1.0
    assert not relay.respawn.enabled and not relay.required


def test_shipped_launch_files_are_valid(tmp_path: Path) -> None:
    for f in sorted((ROOT / "launch").glob("*.yaml")):
        assert launch.load(f, check_nodes=False).nodes, f
        if f.stem != "kitti":  # needs a KITTI folder and its rig: tests/test_kitti_graph.py
            assert launch.load(f).nodes, f


@pytest.mark.parametrize(
    ("change", "key", "text"),
    [
        (("type: relay", "type: teleport"), "nodes[1] (relay).type", "unknown node type 'teleport'"),
        (("name: relay", "name: lidar"), "nodes[1].name", "duplicate node name 'lidar'"),
        (("output: /relayed}", "output: /relayed, speed: 3}"), "nodes[1] (relay).params.speed", "unknown parameter"),
        (('rate_hz: "${rate}"', "rate_hz: fast"), "nodes[0] (lidar).params.rate_hz", "Expected `float`"),
        (('input: "${topic}"', "input: /nobody"), "nodes[1] (relay)", "subscribes to /nobody, which no node"),
        (('"${rate}"', '"${speed}"'), "nodes[0] (lidar).params.rate_hz", "unknown argument ${speed}"),
        (("respawn: false", "respawn: {max_retries: -1}"), "nodes[1] (relay).respawn", "max_retries"),
        (("required: false", "required: maybe"), "nodes[1] (relay).required", "true or false"),
        (("graph: t", "graph: t\nextra: 1"), "extra", "unknown key"),
    ],
)
def test_invalid_launch_files_name_the_key(tmp_path: Path, change: tuple[str, str], key: str, text: str) -> None:
    f = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(LaunchError) as info:
        launch.load(f)
    assert info.value.key == key, str(info.value)
    assert text in str(info.value)
    assert str(f) in str(info.value)


def test_unknown_command_line_argument(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="unknown argument 'sped'"):
        launch.load(write(tmp_path, GOOD), launch.parse_args(["sped:=3"]))


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="no such launch file"):
        launch.load(tmp_path / "nope.yaml")
    with pytest.raises(LaunchError, match="cannot read"):
        launch.load(write(tmp_path, "nodes: [unclosed"))
    with pytest.raises(LaunchError, match="non-empty list"):
        launch.load(write(tmp_path, "graph: x\nnodes: []\n"))
