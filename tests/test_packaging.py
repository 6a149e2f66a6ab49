"""The package works installed, not only from its source tree: the wheel carries the node types,
the shipped graphs, the rig and the weights; a separate package adds a node type that the
launcher finds through its entry point."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusion_stream.core import msgs
from fusion_stream.runtime import nodetypes
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber

from .conftest import ROOT, Procs

EXAMPLE = ROOT / "examples" / "range_filter"


def _pip(*args: str, cwd: Path, python: str = sys.executable) -> None:
    run = subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def _wheel(project: Path, out: Path) -> Path:
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(project), cwd=out)
    (whl,) = out.glob("*.whl")
    return whl


def test_the_shipped_node_types_are_registered_under_the_entry_point_group() -> None:
    shipped = sorted(p.stem for p in (ROOT / "fusion_stream" / "nodes").glob("*.py") if p.stem != "__init__")
    registered = nodetypes.available()
    assert sorted(registered) == shipped
    for name in shipped:
        assert registered[name] == f"fusion_stream.nodes.{name}"
        nodetypes.load(name)  # imports, and keeps the contract


# ----------------------------------------------------------------------------- the wheel, installed


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh virtual environment holding the built wheel, and a folder far from the repo.

    The wheel's dependencies (torch, open3d, ...: GBs) are not downloaded again: the new
    environment sees the project environment's site-packages through a ``.pth`` file, and
    ``pip check`` proves they satisfy the wheel's metadata. The repo's own editable install is not
    active there (its ``.pth`` hook is not processed), so what runs is the wheel's copy.
    """
    tmp = tmp_path_factory.mktemp("wheel")
    whl = _wheel(ROOT, tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _pip("install", "--no-deps", "--no-index", "--force-reinstall", str(whl), cwd=tmp, python=python)
    _pip("check", cwd=tmp, python=python)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["FUSION_STREAM_RUNTIME_DIR"] = str(tmp / "run")
    yield elsewhere, env


def _fusion_stream(installed: tuple[Path, dict[str, str]], *args: str, timeout: float = 240) -> str:
    cwd, env = installed
    run = subprocess.run(
        ["fusion-stream", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert run.returncode == 0, f"fusion-stream {' '.join(args)}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout


def test_the_wheel_runs_from_another_folder_without_the_source_tree(installed: tuple[Path, dict[str, str]]) -> None:
    cwd, env = installed
    where = subprocess.run(
        [
            "python",
            "-c",
            "import fusion_stream, fusion_stream.nodes.fusion as f; from fusion_stream.core import resources; "
            "print(fusion_stream.__file__); print(f.__file__); print(resources.shipped('calib', 'sim_rig.yaml'))",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(not p.startswith(str(ROOT)) and "site-packages" in p for p in where), where
    assert Path(where[2]).is_file()
    no_top_level = subprocess.run(["python", "-c", "import nodes"], cwd=cwd, env=env, capture_output=True, check=False)
    assert no_top_level.returncode != 0, "the wheel must not install a top-level package named 'nodes'"

    dry = _fusion_stream(installed, "launch", "sim", "--dry-run")
    assert "graph sim" in dry and "fusion" in dry
    out = _fusion_stream(installed, "eval-sim", "--seeds", "1", "--per-seed", "1", "--workers", "1")
    assert "mAP" in out and "frames 1" in out
    demo = _fusion_stream(installed, "demo", "--duration", "2", timeout=300)
    assert "/detections" in demo


# ----------------------------------------------------------------------------- a node type as a plugin


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package installed (as a wheel) into a folder of its own, put on PYTHONPATH."""
    tmp = tmp_path_factory.mktemp("plugin")
    whl = _wheel(EXAMPLE, tmp)
    target = tmp / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(whl), cwd=tmp)
    return target


def test_a_node_type_from_another_package_is_found_checked_and_launched(
    plugin: Path, procs: Procs, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(plugin))
    graph = plugin / "fusion_stream_range_filter" / "launch" / "near_objects.yaml"

    bad = procs.cli("launch", str(graph), "--dry-run", "range:=far")
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "max_range_m" in err, err

    launcher = procs.cli("launch", str(graph), "range:=30")
    truth: dict[int, msgs.Detections] = {}
    near: dict[int, msgs.Detections] = {}
    registry = Registry(runtime_dir, "near_objects")  # the launch file's graph name
    with Subscriber(["/ground_truth/objects", "/objects/near"], registry=registry, queue_size=100) as sub:
        sub.wait_for_publishers(60.0)
        deadline = time.monotonic() + 60
        while len(near.keys() & truth.keys()) < 5 and time.monotonic() < deadline:
            env = sub.recv_envelope(timeout=1.0)
            if env is not None:
                assert isinstance(env.message, msgs.Detections)
                (near if env.topic == "/objects/near" else truth)[env.message.stamp_ns] = env.message
    launcher.terminate()
    assert launcher.wait(timeout=30) == 0, launcher.communicate()[1][-2000:]
    both = sorted(near.keys() & truth.keys())
    assert len(both) >= 5, f"the plugin node published {len(near)} messages"
    for stamp in both:
        expected = tuple(b for b in truth[stamp].boxes if math.hypot(*b.center[:2]) <= 30)
        assert near[stamp].boxes == expected
    assert any(len(near[s].boxes) < len(truth[s].boxes) for s in both), "nothing beyond 30 m: filter not exercised"
    assert any(near[s].boxes for s in both), "nothing within 30 m: filter not exercised"
