"""Everything a launch file's nodes can be checked for is checked before any process starts (in
``--dry-run`` and in a real launch alike): missing files, files that do not parse, values outside
their set; and a node that refuses its configuration at start-up (exit 2) is not restarted."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fusion_stream.errors import NodeTypeError
from fusion_stream.runtime import nodetypes

from .conftest import ROOT

SIM = str(ROOT / "launch" / "sim.yaml")


def cli(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusion_stream.cli", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "launch"])
@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("calib:=calib/nope.yaml", ["nodes[0] (lidar).params.calib", "calib/nope.yaml", "no such"]),
        ("weather:=snow", ["nodes[0] (lidar).params.weather", "clear, rain, fog", "'snow'"]),
        ("condition:=dusk", ["nodes[0] (lidar).params.condition", "day, night"]),
        ("backend:=tpu", ["nodes[5] (fusion).params.backend", "auto, tensorrt, onnxruntime, torch"]),
    ],
)
def test_the_sim_graph_with_a_bad_argument_is_refused_before_any_node_starts(
    runtime_dir: Path, dry_run: bool, arg: str, expected: list[str]
) -> None:
    r = cli("launch", SIM, arg, *(["--dry-run"] if dry_run else ["--duration", "20"]))
    assert r.returncode == 2, r.stderr[-2000:]
    err = " ".join(r.stderr.split())  # rich may wrap
    assert "launch/sim.yaml" in err
    for text in expected:
        assert text in err, err
    assert "started" not in r.stdout + r.stderr  # no node process was started
    assert not list(runtime_dir.rglob("*.yaml"))  # nor its params file written


GRAPH = """
graph: checked
external_topics: [/sync/frames]
nodes:
  - name: camera
    type: camera
    params: {source: sim, calib: rig/my_rig.yaml, rate_hz: 5}
  - name: radar
    type: radar
    params: {source: file, path: scans}
  - name: fusion
    type: fusion
    params: {calib: rig/my_rig.yaml, weights: WEIGHTS}
"""


def make_graph(folder: Path, weights: str = "weights.pt") -> Path:
    """A launch file whose relative paths point into its own folder (not the working directory)."""
    (folder / "rig").mkdir()
    shutil.copy(ROOT / "calib" / "sim_rig.yaml", folder / "rig" / "my_rig.yaml")
    (folder / "scans").mkdir()
    (folder / "scans" / "000.yaml").write_text("detections: []\n")
    (folder / "weights.pt").write_bytes(b"not loaded by the check")
    f = folder / "graph.yaml"
    f.write_text(GRAPH.replace("WEIGHTS", weights))
    return f


def test_relative_paths_are_checked_where_the_nodes_will_look(runtime_dir: Path, tmp_path: Path) -> None:
    f = make_graph(tmp_path)
    r = cli("launch", str(f), "--dry-run", cwd=runtime_dir)  # cwd elsewhere: found next to the launch file
    assert r.returncode == 0, r.stderr[-2000:]
    assert "camera" in r.stdout and "fusion" in r.stdout


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: (f.parent / "scans").rename(f.parent / "gone"), ["nodes[1] (radar).params.path", "scans: no such"]),
        (lambda f: (f.parent / "weights.pt").unlink(), ["nodes[2] (fusion).params.weights", "no such weights file"]),
        (lambda f: (f.parent / "weights.pt").unlink() or (f.parent / "weights.pt").mkdir(), ["params.weights"]),
        (
            lambda f: (f.parent / "rig" / "my_rig.yaml").write_text("sensors: [1, 2\n"),
            ["nodes[0] (camera).params.calib", "my_rig.yaml"],
        ),
        (
            lambda f: f.write_text(f.read_text().replace("source: file", "source: can")),
            ["nodes[1] (radar).params.source", "sim, file", "'can'"],
        ),
    ],
    ids=["missing-recording", "missing-weights", "weights-a-folder", "calib-unparsable", "unknown-source"],
)
def test_a_bad_file_or_value_is_named_with_its_key_in_dry_run_and_launch(
    runtime_dir: Path, tmp_path: Path, change: object, expected: list[str]
) -> None:
    f = make_graph(tmp_path)
    change(f)  # type: ignore[operator]
    for mode in (["--dry-run"], ["--duration", "20"]):
        r = cli("launch", str(f), *mode, cwd=runtime_dir)
        assert r.returncode == 2, (mode, r.stdout[-1000:], r.stderr[-2000:])
        err = " ".join(r.stderr.split())
        assert f"{f}: " in err
        for text in expected:
            assert text in err, err
        assert "started" not in r.stdout + r.stderr


BAD_KEYS = """
graph: badcfg
nodes:
  - name: steady
    type: pattern
    params: {kind: radar, rate_hz: 5}
  - name: badkeys
    type: pattern
    params: {kind: radar, topic: /bad, rate_hz: 5}
    respawn: {max_retries: 5, backoff_s: 0.2}
    env: {FUSION_STREAM_CURVE_KEYS: /nonexistent/keys, FUSION_STREAM_HOST_NAME: nowhere}
"""


def test_a_node_that_refuses_its_configuration_is_not_restarted_and_the_launch_exits_2(
    runtime_dir: Path, tmp_path: Path
) -> None:
    """Its keys (set in its env) are missing: the check cannot see that, the node exits 2 at start-up."""
    f = tmp_path / "graph.yaml"
    f.write_text(BAD_KEYS)
    t0 = time.monotonic()
    r = cli("launch", str(f), "--duration", "60", timeout=60)
    took = time.monotonic() - t0
    out = r.stdout
    assert r.returncode == 2, out[-3000:]
    assert out.count("started badkeys") == 1, out[-3000:]  # never respawned
    assert "restarting" not in out
    assert "badkeys (pattern) refused its configuration" in out
    assert "no CurveZMQ key pair for host 'nowhere'" in out.split("refused its configuration")[1]
    assert took < 50  # stopped at once, not after --duration


def test_check_is_an_optional_part_of_the_node_contract() -> None:
    base = {"topics": print, "setup": print}
    params = dataclasses.make_dataclass("P", [])
    plain = SimpleNamespace(**{**base, "Params": params})
    nodetypes.check_params(nodetypes.check("plain", plain, "test"), params())  # no check: nothing to run
    with pytest.raises(NodeTypeError, match="`check` must be a function"):
        nodetypes.check("odd", SimpleNamespace(**{**base, "Params": params, "check": 3}), "test")
    calls: list[object] = []
    checked = SimpleNamespace(**{**base, "Params": params, "check": calls.append})
    nodetypes.check_params(nodetypes.check("checked", checked, "test"), params())
    assert len(calls) == 1


TWO_HOSTS = """
graph: two
hosts:
  a: {address: 127.0.0.1, port_base: 21100}
  b: {address: 127.0.0.1, port_base: 21200}
nodes:
  - {name: src, type: pattern, host: a, params: {kind: radar, rate_hz: 5, topic: /a/radar}}
  - {name: scans, type: radar, host: b, params: {source: file, path: /only/on/host/b}}
"""


def test_a_multi_host_graph_checks_the_nodes_of_its_own_host(runtime_dir: Path, tmp_path: Path) -> None:
    """Host b's recordings are on host b: the launcher of host a does not look for them."""
    f = tmp_path / "two.yaml"
    f.write_text(TWO_HOSTS)
    r = cli("launch", str(f), "--host", "a", "--dry-run")
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli("launch", str(f), "--host", "b", "--dry-run")
    assert r.returncode == 2
    assert "nodes[1] (scans).params.path: /only/on/host/b: no such file" in " ".join(r.stderr.split())
