"""One error model: bad user input raises the package's errors, carrying the key it concerns.

A table of representative bad inputs, each checked for the error's class and its ``key`` (or
``name``); a static check over the source that library code raises no bare ValueError, TypeError
or KeyError (outside a short allow-list of internal invariants) and never matches an error's text
to find out what it concerns; and a node run end to end with a bad parameter: exit 2, one line
naming the parameter, no traceback."""

from __future__ import annotations

import ast
import dataclasses
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pytest

import fusion_stream
from fusion_stream.core import calib, formats, msgs, resources, wire
from fusion_stream.errors import (
    BackendUnavailableError,
    FileKeyError,
    FusionStreamError,
    MessageTypeError,
    ParamError,
    UnknownNameError,
    is_input_error,
)
from fusion_stream.eval.kitti import kitti_metrics
from fusion_stream.graph import launch
from fusion_stream.infer.backends import load
from fusion_stream.nodes import fusion
from fusion_stream.runtime import params as params_mod
from fusion_stream.runtime import runner
from fusion_stream.runtime.introspect import RateMeter
from fusion_stream.runtime.registry import Registry, entry_from_json
from fusion_stream.runtime.runner import EXIT_CONFIG, run_node
from fusion_stream.runtime.transport import Publisher
from fusion_stream.sim.lidar import LidarSpec
from fusion_stream.sim.radar import RadarSpec
from fusion_stream.sim.sensors import SimParams, open_world
from fusion_stream.sim.world import Scenario
from fusion_stream.sources.audio import chunk_samples
from fusion_stream.sources.testpattern import point_cloud
from fusion_stream.sync import settings
from fusion_stream.sync.reference import InputConfig, ReferenceWindowPolicy
from fusion_stream.sync.stage import SyncConfig, SyncInput, SyncStage

RIG = resources.resolve("calib/sim_rig.yaml")
WEIGHTS = resources.resolve("weights/fusion_sim.pt")


def sync_inputs(second: dict[str, object]) -> list[dict[str, object]]:
    return [{"name": "lidar", "topic": "/lidar", "mode": "reference"}, {"name": "radar", "topic": "/radar", **second}]


def sync_params(**top: object) -> Callable[[], object]:
    """Converting the sync node's parameters, as the node and the launch checker do."""
    values = {"inputs": sync_inputs({}), **top}
    return lambda: settings.config_from(params_mod.convert(settings.Params, values))


def fusion_sync(**sync: object) -> Callable[[], object]:
    """The fusion node's ``sync:`` block, converted as the node's parameters are."""
    return lambda: params_mod.convert(fusion.Params, {"sync": {"inputs": sync_inputs({}), **sync}})


def stage() -> SyncStage:
    return SyncStage(SyncConfig((SyncInput("a", "reference", topic="/a"), SyncInput("b", topic="/b"))))


KEYED: list[tuple[str, Callable[[], object], type[FusionStreamError], str]] = [
    # (case, call, error class, key)
    ("world actors", lambda: Scenario(actors=0), ParamError, "actors"),
    ("world condition", lambda: Scenario(condition="dusk"), ParamError, "condition"),  # type: ignore[arg-type]
    ("world weather", lambda: Scenario(weather="snow"), ParamError, "weather"),  # type: ignore[arg-type]
    ("world lane width", lambda: Scenario(lane_width=0), ParamError, "lane_width"),
    ("sim node actors", lambda: open_world(SimParams(actors=500)), ParamError, "actors"),
    ("lidar beams", lambda: LidarSpec.preset(7), ParamError, "beams"),
    ("lidar rate", lambda: LidarSpec.preset(32, rate_hz=0), ParamError, "rate_hz"),
    ("lidar columns", lambda: LidarSpec(columns=4), ParamError, "columns"),
    ("radar rate", lambda: RadarSpec(rate_hz=-1), ParamError, "rate_hz"),
    ("radar fov", lambda: RadarSpec(azimuth_fov_deg=400), ParamError, "azimuth_fov_deg"),
    ("radar range", lambda: RadarSpec(max_range_m=0), ParamError, "max_range_m"),
    (
        "sync input mode",
        lambda: params_mod.convert(settings.Params, {"inputs": sync_inputs({"mode": "closest"})}),
        ParamError,
        "inputs[1].mode",
    ),
    (
        "sync input slop",
        lambda: params_mod.convert(settings.Params, {"inputs": sync_inputs({"slop_ms": -5})}),
        ParamError,
        "inputs[1].slop_ms",
    ),
    (
        "sync input topic",
        lambda: params_mod.convert(settings.Params, {"inputs": sync_inputs({"topic": "no slash"})}),
        ParamError,
        "inputs[1].topic",
    ),
    ("sync policy", sync_params(policy="sometimes"), ParamError, "policy"),
    ("sync deadline", sync_params(deadline_ms=-1), ParamError, "deadline_ms"),
    ("sync queue", sync_params(queue_size=0), ParamError, "queue_size"),
    ("sync approximate penalty", sync_params(policy="approximate", age_penalty=-1), ParamError, "age_penalty"),
    ("fusion sync block input", fusion_sync(inputs=sync_inputs({"mode": "x"})), ParamError, "sync.inputs[1].mode"),
    ("fusion sync block names", fusion_sync(inputs=sync_inputs({"name": "lidar"})), ParamError, "sync.inputs[1].name"),
    ("fusion sync block reset", fusion_sync(reset_jump_s=0), ParamError, "sync.reset_jump_s"),
    ("stage input slop", lambda: InputConfig("x", slop_ns=-1), ParamError, "slop_ns"),
    (
        "stage duplicate topic",
        lambda: SyncConfig((SyncInput("a", topic="/a"), SyncInput("b", topic="/a"))),
        ParamError,
        "inputs[1].topic",
    ),
    ("policy two references", lambda: ReferenceWindowPolicy([InputConfig("a", "reference")] * 2), ParamError, "inputs"),
    ("stage unknown topic", lambda: stage().offer("/elsewhere", point_cloud(1), 1), UnknownNameError, "topic"),
    (
        "fusion weights missing",
        lambda: fusion.open_backend(fusion.Params(weights="/nonexistent/w.pt")),
        ParamError,
        "weights",
    ),
    ("fusion unknown backend", lambda: fusion.open_backend(fusion.Params(backend="tpu")), ParamError, "backend"),
    ("rig sensor", lambda: calib.load(RIG)["nope"], UnknownNameError, "sensor"),
    ("message field", lambda: point_cloud(1).field("nope"), UnknownNameError, "field"),
    ("not a camera", lambda: calib.load(RIG)["lidar_top"].project(np.zeros((1, 3))), ParamError, "sensor"),
    ("audio chunk", lambda: chunk_samples(48_000, 0.001), ParamError, "chunk_ms"),
    ("rate window", lambda: RateMeter(1), ParamError, "window"),
    ("eval kind", lambda: kitti_metrics([], ["car"], kind="2d"), ParamError, "kind"),  # type: ignore[arg-type]
    ("eval threshold", lambda: kitti_metrics([], ["tram"], iou_thresholds={}), ParamError, "iou_thresholds"),
    ("pcd shape", lambda: formats.write_pcd("/nonexistent/x.pcd", np.zeros((2, 3)), ("x", "y")), ParamError, "data"),
    ("registry entry", lambda: entry_from_json(_entry(endpoint="udp://x"), "e.json"), FileKeyError, "endpoint"),
]


def _entry(**change: object) -> dict[str, object]:
    good = {"topic": "/t", "endpoint": "ipc:///tmp/x", "type": "PointCloud", "node": "n", "pid": 1, "host": "h"}
    good.update({"src": 1, "server_key": ""})
    return {**good, **change}


@pytest.mark.parametrize(("case", "call", "cls", "key"), KEYED, ids=[k[0] for k in KEYED])
def test_bad_input_raises_the_packages_error_with_its_key(
    case: str, call: Callable[[], object], cls: type[FusionStreamError], key: str
) -> None:
    with pytest.raises(FusionStreamError) as info:
        call()
    err = info.value
    assert isinstance(err, cls), f"{case}: {type(err).__name__}: {err}"
    assert isinstance(err, ParamError | UnknownNameError | FileKeyError), case
    assert err.key == key, f"{case}: key {err.key!r}: {err}"
    assert is_input_error(err), case  # a command or a node answers it with exit code 2
    assert "Traceback" not in str(err) and "\n" not in str(err), case  # one line


def test_the_new_errors_are_the_builtins_callers_already_catch(registry: Registry) -> None:
    with pytest.raises(KeyError, match="has no sensor 'nope'") as info:
        calib.load(RIG)["nope"]
    assert isinstance(info.value, UnknownNameError) and info.value.name == "nope"
    assert str(info.value).startswith("rig ")  # the message, not KeyError's quoted repr
    with pytest.raises(TypeError, match="not a fusion_stream message") as err:
        wire.encode("/t", object(), seq=0, src=0, pub_ns=0)  # type: ignore[arg-type]
    assert isinstance(err.value, MessageTypeError) and err.value.got == "object" and err.value.topic is None
    with Publisher("/t", registry=registry, msg_type=msgs.PointCloud) as pub, pytest.raises(TypeError) as wrong:
        pub.publish(msgs.Detections(stamp_ns=1, frame_id="f", boxes=()))
    assert isinstance(wrong.value, MessageTypeError) and (wrong.value.topic, wrong.value.got) == ("/t", "Detections")
    assert not is_input_error(wrong.value)  # a node publishing the wrong type is the node's bug: exit 1
    with pytest.raises(ValueError):  # ParamError is one
        Scenario(actors=0)


def test_the_fusion_node_tells_a_bad_backend_from_bad_weights_by_type_not_text(tmp_path: Path) -> None:
    # a weights path that contains "weights" and a backend error: the key follows the error's type
    bad = fusion.Params(weights=str(WEIGHTS), backend="weights-backend")
    with pytest.raises(ParamError) as info:
        fusion.open_backend(bad)
    assert info.value.key == "backend" and isinstance(info.value.__cause__, BackendUnavailableError)
    empty = tmp_path / "backend.pt"
    empty.mkdir()  # not a regular file: the weights are at fault, whatever the path says
    with pytest.raises(ParamError) as info:
        fusion.open_backend(fusion.Params(weights=str(empty)))
    assert info.value.key == "weights"
    with pytest.raises(BackendUnavailableError):
        load(WEIGHTS, backend="tpu")


def test_launch_lookups_and_files_name_the_key(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text("graph: t\nnodes:\n  - {name: p, type: pattern, params: {kind: points, topic: /p}}\n")
    spec = launch.load(graph)
    with pytest.raises(UnknownNameError) as info:
        spec.node("nope")
    assert info.value.key == "node" and info.value.name == "nope" and "g.yaml" in str(info.value)
    graph.write_text(
        "graph: t\nnodes:\n  - name: s\n    type: sync\n    params:\n      inputs:\n"
        "        - {name: a, topic: /a, mode: reference}\n        - {name: b, topic: /b, slop_ms: -1}\n"
    )
    with pytest.raises(launch.LaunchError) as bad:
        launch.load(graph)
    assert bad.value.key == "nodes[0] (s).params.inputs[1].slop_ms", bad.value.key


@dataclasses.dataclass(frozen=True)
class _NoParams:
    pass


def test_a_node_whose_setup_meets_an_unknown_name_exits_2(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    def setup(_node: object, _p: _NoParams) -> None:
        calib.load(RIG)["nope"]

    monkeypatch.setattr(runner, "setup_logging", lambda *_a: None)  # pytest keeps its log handlers
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert run_node("probe", _NoParams, setup, ["--name", "probe"]) == EXIT_CONFIG
        assert run_node("probe", _NoParams, setup, ["--name", "pro/be"]) == EXIT_CONFIG  # a bad name too
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_a_node_with_a_bad_parameter_exits_2_with_one_line_naming_it(registry: Registry) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fusion_stream.nodes.lidar", "--name", "l", "-p", "beams:=7", "--duration", "1"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if "bad configuration" in ln]
    assert "parameter 'beams': must be 16, 32 or 64, got 7" in line, line


# --------------------------------------------------------------------------- static checks

BUILTINS = frozenset({"ValueError", "TypeError", "KeyError"})

ALLOWED_BUILTIN_RAISES: dict[tuple[str, str], str] = {
    ("fusion_stream/runtime/clock.py", "ReplayClock.set"): (
        "an internal invariant: every caller in the package passes reset=True (or the max of now) "
        "when time may go back, so reaching it is a caller's bug, not user input"
    ),
}
"""(file, function) → why a bare builtin is right there."""

ALLOWED_TEXT_MATCHES: dict[tuple[str, str], str] = {
    ("fusion_stream/runtime/jit.py", "njit"): (
        "numba raises a bare RuntimeError with no attribute for 'no cache locator'; the text is "
        "its only sign, and nothing guesses a parameter from it"
    ),
}


def _sources() -> list[tuple[str, Path]]:
    """(name from the package's parent, path) of every library module, the node types included."""
    root = Path(fusion_stream.__file__).resolve().parent
    return sorted((p.relative_to(root.parent).as_posix(), p) for p in root.rglob("*.py"))


class _Finder(ast.NodeVisitor):
    """Bare builtin raises and ``... in str(err)`` tests, with the function they are in."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.raises: list[tuple[str, int, str]] = []
        self.text_matches: list[tuple[str, int]] = []

    def _scoped(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _scoped

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name) and exc.id in BUILTINS:
            self.raises.append((".".join(self.scope), node.lineno, exc.id))
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn) and _is_str_of_name(right):
                self.text_matches.append((".".join(self.scope), node.lineno))
        self.generic_visit(node)


def _is_str_of_name(node: ast.expr) -> bool:
    """``str(err)``, ``str(err).lower()`` ...: the text of a variable (an error, in practice)."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        node = node.func.value
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "str"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Name)
    )


def _scan() -> tuple[dict[tuple[str, str], list[str]], dict[tuple[str, str], list[str]]]:
    raises: dict[tuple[str, str], list[str]] = {}
    matches: dict[tuple[str, str], list[str]] = {}
    for name, path in _sources():
        finder = _Finder()
        finder.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for scope, line, exc in finder.raises:
            raises.setdefault((name, scope), []).append(f"{name}:{line} raise {exc}")
        for scope, line in finder.text_matches:
            matches.setdefault((name, scope), []).append(f"{name}:{line} in str(...)")
    return raises, matches


def test_the_static_check_sees_what_it_looks_for() -> None:
    finder = _Finder()
    finder.visit(ast.parse("def f(e):\n    if 'x' not in str(e).lower():\n        raise KeyError('k')\n"))
    assert finder.raises == [("f", 3, "KeyError")] and finder.text_matches == [("f", 2)]
    names = [n for n, _ in _sources()]
    assert "fusion_stream/errors.py" in names and any(n.endswith("nodes/fusion.py") for n in names)


def test_library_code_raises_no_bare_builtin_and_matches_no_error_text() -> None:
    raises, matches = _scan()
    assert not [s for key, sites in raises.items() if key not in ALLOWED_BUILTIN_RAISES for s in sites], (
        "user input errors must be FusionStreamError subclasses carrying their key (fusion_stream.errors)"
    )
    assert not [s for key, sites in matches.items() if key not in ALLOWED_TEXT_MATCHES for s in sites], (
        "decide by an error's type or attributes, not by its text"
    )
    # an allow-list entry whose site is gone must go too
    assert set(ALLOWED_BUILTIN_RAISES) <= set(raises), set(ALLOWED_BUILTIN_RAISES) - set(raises)
    assert set(ALLOWED_TEXT_MATCHES) <= set(matches), set(ALLOWED_TEXT_MATCHES) - set(matches)


def test_msgspec_still_reports_a_settings_check_as_its_cause() -> None:
    """params.convert builds ``inputs[1].mode`` from msgspec's place and the ParamError it wraps."""
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert({"name": "x", "topic": "/x", "mode": "bad"}, settings.InputParams)
    assert isinstance(info.value.__cause__, ParamError) and info.value.__cause__.key == "mode"
