"""Hostile YAML and files (issue 17, defects 5, 6 and 7's last item): alias bombs, giant and deep
files, devices and FIFOs as paths, numbers beyond any physical meaning, damaged model configs, and
parse errors that would echo a secret. Each must be refused quickly with the package's error
naming the file and key (exit 2 from the CLI), never hang, exhaust memory or print a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fusion_stream.bag.mapping import load_map
from fusion_stream.cli import main
from fusion_stream.core import calib, yamlio
from fusion_stream.errors import CalibrationError, FileKeyError, FormatError, InferenceError, LaunchError, ParamError
from fusion_stream.graph import launch
from fusion_stream.infer import backends
from fusion_stream.model.config import ModelConfig, WeightsError
from fusion_stream.model.net import FusionNet
from fusion_stream.model.train import load_weights, save_weights
from fusion_stream.runtime import params
from fusion_stream.sources import radar

from .conftest import ROOT

SIM_RIG = (ROOT / "calib" / "sim_rig.yaml").read_text()


def bomb(levels: int = 9, width: int = 10) -> str:
    """ "Billion laughs": ``width ** levels`` leaves in a few hundred bytes (10^9 by default)."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def flow_bomb(levels: int = 9, width: int = 10) -> str:
    """The same as one flow sequence (fits on a command line or in one key)."""
    items = ["&l0 [" + ", ".join(["lol"] * width) + "]"]
    items += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def indented(text: str, by: int) -> str:
    return "".join(" " * by + line + "\n" for line in text.splitlines())


@pytest.fixture(autouse=True)
def _fast(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every attack here is refused in well under a second (they hung for minutes before); the
    margin is for a loaded machine, and real processes pay for Python and torch start-up."""
    start = time.monotonic()
    yield
    assert time.monotonic() - start < (90.0 if "real_process" in request.node.name else 20.0)


def write(tmp_path: Path, name: str, text: str) -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


# --------------------------------------------------------------------------- alias bombs


def test_alias_bomb_in_a_launch_file_is_exit_2_from_launch_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "graph: g\nargs:\n  big: &big\n" + indented(bomb(), 4) + "nodes:\n"
    text += "  - {name: a, type: relay, params: {input: /x, output: /y, extra: [*big, *big]}}\n"
    f = write(tmp_path, "bomb.yaml", text)
    assert len(f.read_bytes()) < 1000
    assert main(["launch", str(f), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "aliases expand to more than" in err and "Traceback" not in err


def test_alias_bomb_in_external_topics_is_a_launch_error(tmp_path: Path) -> None:
    text = f"graph: g\nexternal_topics: {flow_bomb()}\nnodes:\n  - {{name: a, type: relay, params: {{input: /x}}}}\n"
    with pytest.raises(LaunchError, match="aliases expand") as info:
        launch.load(write(tmp_path, "ext.yaml", text))
    assert info.value.path.endswith("ext.yaml")


def test_external_topics_must_be_topic_names(tmp_path: Path) -> None:
    # a small alias (within bounds) made a list of lists: set() of it was a TypeError traceback
    node = "{name: a, type: relay, params: {input: /a, output: /b}}"
    text = f"graph: g\nexternal_topics: [&x [/a], *x]\nnodes:\n  - {node}\n"
    with pytest.raises(LaunchError) as info:
        launch.load(write(tmp_path, "ext.yaml", text))
    assert info.value.key == "external_topics[0]"


def test_substitution_cannot_multiply_an_argument(tmp_path: Path) -> None:
    long = "x" * 60_000
    refs = "${a}" * 20  # 1.2 MB from a 60 KB file (the limit is 64 KiB)
    node = f"{{name: r, type: relay, params: {{input: /x, output: '{refs}'}}}}"
    text = f"graph: g\nargs: {{a: {long}}}\nnodes:\n  - {node}\n"
    with pytest.raises(LaunchError, match="argument substitution expands") as info:
        launch.load(write(tmp_path, "mult.yaml", text))
    assert info.value.key.startswith("nodes[0] (r).params")


def test_alias_bomb_in_calibration_params_and_topic_map(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="aliases expand") as c:
        calib.load(write(tmp_path, "rig.yaml", bomb() + SIM_RIG))
    assert c.value.key == "<file>" and c.value.path.endswith("rig.yaml")
    with pytest.raises(ParamError, match="aliases expand") as p:
        params.read_yaml(write(tmp_path, "params.yaml", bomb()))
    assert p.value.path is not None and p.value.path.endswith("params.yaml")
    with pytest.raises(FileKeyError, match="aliases expand") as m:
        load_map(write(tmp_path, "map.yaml", bomb() + "topics: {/a: /b}\n"))
    assert m.value.path.endswith("map.yaml")
    with pytest.raises(FormatError, match=r"radar\.yaml: .*aliases expand"):
        radar.read_yaml(write(tmp_path, "radar.yaml", bomb() + "detections: []\n"))


def test_alias_bomb_as_a_command_line_value(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match="aliases expand") as info:
        params.parse_override(f"x:={flow_bomb()}")
    assert info.value.key == "x"


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match="refers to a node that contains it"):
        params.read_yaml(write(tmp_path, "p.yaml", "a: &a [1, *a]\n"))


def test_legitimate_anchors_still_work(tmp_path: Path) -> None:
    data = params.read_yaml(write(tmp_path, "p.yaml", "base: &b {x: 1, y: [1, 2]}\none: *b\ntwo: {<<: *b, x: 2}\n"))
    assert data["one"] == {"x": 1, "y": [1, 2]} and data["two"] == {"x": 2, "y": [1, 2]}


@pytest.mark.parametrize("libyaml", [True, False])
def test_both_parsers_keep_the_bounds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, libyaml: bool) -> None:
    """Without libyaml, PyYAML's own parser is used: the same bounds and the same quiet errors."""
    monkeypatch.setattr(yamlio, "BoundedLoader", yamlio._loader_class(libyaml=libyaml))
    for text, problem in (
        (bomb(), "aliases expand to more than"),
        ("x: " + "[" * 500 + "]" * 500, "nested more than 40 levels"),
        ("x: &a [1, *a]", "refers to a node that contains it"),
        ("x: " + "9" * 300, "int longer than 256"),
        (f"a: 1\nb: '{SECRET}\n", "not valid YAML at line"),
        (f"a: 1\n\tb: {SECRET}\n", "not valid YAML at line"),
    ):
        with pytest.raises(ParamError, match=problem) as info:
            params.read_yaml(write(tmp_path, "p.yaml", text))
        assert SECRET not in str(info.value)
    assert params.read_yaml(write(tmp_path, "p.yaml", "a: &a {x: 1}\nb: *a\n")) == {"a": {"x": 1}, "b": {"x": 1}}


# --------------------------------------------------------------------------- size and depth


def test_a_big_launch_file_is_refused_before_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = "  - {name: n, type: relay, params: {input: /x, output: /y}}\n"
    f = write(tmp_path, "big.yaml", "graph: g\nnodes:\n" + node * (yamlio.CONFIG.max_bytes // len(node) + 1))
    start = time.monotonic()
    assert main(["launch", str(f), "--dry-run"]) == 2
    assert time.monotonic() - start < 0.5
    assert "more than the 262144 allowed" in capsys.readouterr().err


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    for depth in (500, 100_000):  # libyaml itself stops flow nesting at 1000
        deep = "[" * depth + "]" * depth
        with pytest.raises(CalibrationError, match=r"nested more than 40 levels|maximum nesting depth"):
            calib.load(write(tmp_path, "deep.yaml", f"rig: x\nsensors: {deep}\n"))
    block = "".join(" " * i + "- \n" for i in range(300))  # block style has no libyaml limit
    with pytest.raises(ParamError, match="nested more than 40 levels"):
        params.read_yaml(write(tmp_path, "deep.yaml", "x:\n" + block))
    with pytest.raises(LaunchError, match="nested more than"):
        launch.load(write(tmp_path, "deep.yaml", "graph: g\nnodes: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n"))


def test_too_many_nodes_without_aliases() -> None:
    small = yamlio.Limits(max_nodes=1000)
    assert len(yamlio.load("x: [" + "0," * 997 + "]", ValueError, small)["x"]) == 997
    with pytest.raises(ValueError, match="more than 1000 nodes"):
        yamlio.load("x: [" + "0," * 998 + "]", ValueError, small)
    with pytest.raises(ValueError, match="more than 1000 nodes"):  # many documents count together
        list(yamlio.load_all("---\n[0, 0]\n" * 400, ValueError, small))


def test_huge_and_sexagesimal_integers_are_yaml_errors(tmp_path: Path) -> None:
    # int("9" * 5000) is a ValueError (Python's digit limit); 1:2:3:... costs quadratic time
    for value in ("9" * 5000, ":".join(["1"] * 5000)):
        with pytest.raises(ParamError, match="int longer than"):
            params.read_yaml(write(tmp_path, "p.yaml", f"x: {value}\n"))
    with pytest.raises(ParamError, match=r"timestamp out of range \(month must be in 1..12\)"):
        params.read_yaml(write(tmp_path, "p.yaml", "x: 2024-13-01\n"))


# --------------------------------------------------------------------------- devices, FIFOs


def test_dev_zero_and_a_fifo_as_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CalibrationError, match="character device, not a regular file") as info:
        calib.load("/dev/zero")
    assert info.value.path == "/dev/zero"
    fifo = tmp_path / "rig.yaml"
    os.mkfifo(fifo)  # opening it would block until a writer came
    with pytest.raises(CalibrationError, match="FIFO, not a regular file"):
        calib.load(fifo)
    with pytest.raises(LaunchError, match="FIFO"):
        launch.load(fifo)
    assert main(["calib", "check", "/dev/zero", "-o", str(tmp_path / "out")]) == 2
    assert "/dev/zero" in capsys.readouterr().err


def test_dev_zero_and_a_fifo_as_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(WeightsError, match=r"/dev/zero: .*character device") as info:
        load_weights("/dev/zero")
    assert info.value.key == "<file>"
    with pytest.raises(InferenceError, match="character device"):
        backends.load("/dev/zero", backend="onnxruntime", device="cpu")  # hashed the file before
    fifo = tmp_path / "w.pt"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match="FIFO"):
        load_weights(fifo)
    assert main(["export-onnx", "--weights", "/dev/zero", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "/dev/zero" in capsys.readouterr().err


def test_directory_as_radar_yaml_and_topic_map(tmp_path: Path) -> None:
    with pytest.raises(FileKeyError, match="directory, not a regular file"):
        load_map(tmp_path)
    with pytest.raises(FormatError, match="no such radar file"):
        radar.read_yaml(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- calibration values


def broken(tmp_path: Path, old: str, new: str) -> Path:
    assert old in SIM_RIG
    return write(tmp_path, "rig.yaml", SIM_RIG.replace(old, new, 1))


# (YAML 1.1, as PyYAML reads it: a float needs a dot and a signed exponent; 1e15 is a string)
@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("time_offset_ms: 0", "time_offset_ms: 1.0e+15", "sensors.lidar_top.time_offset_ms"),  # beyond int64 ns
        ("time_offset_ms: 0", "time_offset_ms: 1.0e+303", "sensors.lidar_top.time_offset_ms"),  # was OverflowError
        ("time_offset_ms: 0", "time_offset_ms: .inf", "sensors.lidar_top.time_offset_ms"),
        ("time_offset_ms: 0", "time_offset_ms: .nan", "sensors.lidar_top.time_offset_ms"),
        ("time_offset_ms: 0", "time_offset_ms: " + "9" * 200, "sensors.lidar_top.time_offset_ms"),
        ("width: 640", "width: 1000000000", "sensors.camera_front.intrinsics.width"),
        ("height: 384", "height: 1.0e+9", "sensors.camera_front.intrinsics.height"),
        ("width: 640, height: 384", "width: 16000, height: 16000", "sensors.camera_front.intrinsics"),
        ("fx: 400.0", "fx: 1.0e+9", "sensors.camera_front.intrinsics.fx"),
        ("cx: 320.0", "cx: 1.0e+300", "sensors.camera_front.intrinsics.cx"),
        ("fy: 400.0", "fy: .nan", "sensors.camera_front.intrinsics.fy"),
        ("[1.2, 0.0, 1.9]", "[1.2, 1.0e+303, 1.9]", "sensors.lidar_top.extrinsics.translation[1]"),
        ("[1.2, 0.0, 1.9]", "[1.2, 0.0, " + "9" * 200 + "]", "sensors.lidar_top.extrinsics.translation[2]"),
        (
            "rotation_rpy_deg: [0, 0, 0]",
            "rotation_rpy_deg: [0, 1.0e+300, 0]",
            "sensors.lidar_top.extrinsics.rotation_rpy_deg[1]",
        ),
        (
            "rotation_rpy_deg: [0, 0, 0]",
            "rotation_quaternion: [1.0e+308, 1.0e+308, 0, 1]",
            "sensors.lidar_top.extrinsics.rotation_quaternion[0]",
        ),
        ("distortion: [0.0, 0.0", "distortion: [1.0e+200, 0.0", "sensors.camera_front.distortion[0]"),
        ("[0.05, 0.05, 0.0], [-0.05", "[0.05, 1.0e+9, 0.0], [-0.05", "sensors.mic_array.microphones[0][1]"),
    ],
)
def test_calibration_numbers_are_range_checked(tmp_path: Path, old: str, new: str, key: str) -> None:
    f = broken(tmp_path, old, new)
    with pytest.raises(CalibrationError) as info:
        calib.load(f)
    assert info.value.key == key, str(info.value)
    assert str(f) in str(info.value)


def test_a_bad_calibration_is_exit_2_from_calib_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = broken(tmp_path, "time_offset_ms: 0", "time_offset_ms: 1.0e+303")
    assert main(["calib", "check", str(f), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "sensors.lidar_top.time_offset_ms" in err and "Traceback" not in err


def test_calib_check_refuses_a_camera_too_large_to_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = broken(tmp_path, "width: 640, height: 384", "width: 8000, height: 6000")  # 48 MP: a valid camera
    assert calib.load(f)["camera_front"].intrinsics is not None
    assert main(["calib", "check", str(f), "-o", str(tmp_path / "out")]) == 2
    assert "sensors.camera_front.intrinsics" in capsys.readouterr().err


def test_the_shipped_rig_still_loads() -> None:
    rig = calib.load(ROOT / "calib" / "sim_rig.yaml")
    assert rig["camera_front"].intrinsics is not None and rig["camera_front"].intrinsics.width == 640


# --------------------------------------------------------------------------- weights and model config


@pytest.fixture(scope="module")
def weights_blob(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A weights file made the way the project saves them (``save_weights``), read back raw."""
    cfg = ModelConfig()
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_weights(path, FusionNet(cfg), cfg, {"note": "test"})
    blob: dict[str, object] = torch.load(path, weights_only=True)
    return blob


def with_config(tmp_path: Path, blob: dict[str, object], **changes: object) -> Path:
    config = dict(blob["config"])  # type: ignore[call-overload]
    config.update(changes)
    path = tmp_path / "bad.pt"
    torch.save({**blob, "config": config}, path)
    return path


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"cell": 0}, "cell"),  # was ZeroDivisionError
        ({"cell": float("nan")}, "cell"),
        ({"x_range": (-1000.0, 1000.0), "y_range": (-1000.0, 1000.0), "cell": 0.02}, "cell"),  # 10^10 cells
        ({"x_range": (32.0, -32.0)}, "x_range"),
        ({"head_stride": True}, "head_stride"),
        ({"lidar_pillars": 10**12}, "lidar_pillars"),
        ({"width": 0}, "width"),
        ({"image_size": (1 << 20, 1 << 20)}, "image_size"),
        ({"top_k": 10**9}, "top_k"),
        ({"classes": ()}, "classes"),
        ({"lift_heights": (float("inf"),)}, "lift_heights"),
    ],
)
def test_model_config_in_a_weights_file_is_checked(
    tmp_path: Path, weights_blob: dict[str, object], changes: dict[str, object], key: str
) -> None:
    path = with_config(tmp_path, weights_blob, **changes)
    with pytest.raises(WeightsError) as info:
        load_weights(path)
    assert info.value.key == key and str(path) in str(info.value), str(info.value)
    assert isinstance(info.value, FormatError) and isinstance(info.value, ValueError)


def test_cell_zero_is_exit_2_from_the_cli(
    tmp_path: Path, weights_blob: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    path = with_config(tmp_path, weights_blob, cell=0)
    assert main(["export-onnx", "--weights", str(path), "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: cell 0:" in err and "Traceback" not in err
    with pytest.raises(WeightsError, match="cell 0"):
        backends.load(path, backend="torch", device="cpu")


@pytest.mark.usefixtures("registry")
def test_real_process_fusion_node_given_dev_zero_exits_2_naming_the_file() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fusion_stream.nodes.fusion", "--name", "fusion", "-p", "weights:=/dev/zero"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert "/dev/zero" in proc.stderr and "character device" in proc.stderr and "Traceback" not in proc.stderr


def test_a_weights_file_without_config_or_state_is_named(tmp_path: Path, weights_blob: dict[str, object]) -> None:
    path = tmp_path / "noconf.pt"
    torch.save({k: v for k, v in weights_blob.items() if k != "config"}, path)
    with pytest.raises(WeightsError, match="config must be a mapping") as info:
        load_weights(path)
    assert info.value.key == "config"
    torch.save({**weights_blob, "state": [1, 2]}, path)
    with pytest.raises(WeightsError, match="state and record must be mappings"):
        load_weights(path)


def test_a_good_tiny_weights_file_loads(tmp_path: Path, weights_blob: dict[str, object]) -> None:
    path = with_config(tmp_path, weights_blob)
    net, record = load_weights(path)
    assert net.cfg == ModelConfig() and record == {"note": "test"}


# --------------------------------------------------------------------------- parse errors and secrets


SECRET = "hunter2-s3cr3t-t0k3n"


@pytest.mark.parametrize(
    "text",
    [
        f'rig: x\npassword: "{SECRET}\n',  # unclosed quote
        f"rig: x\ntoken: {SECRET}: more\n",  # mapping value in a plain scalar
        f"rig: x\nkey: !{SECRET} value\n",  # unknown tag: PyYAML's message quotes it
        f"rig: x\nkey: [{SECRET}, \n",
        f"rig: x\n\tkey: {SECRET}\n",
    ],
)
def test_a_parse_error_gives_line_and_column_but_not_the_line(tmp_path: Path, text: str) -> None:
    with pytest.raises(CalibrationError) as info:
        calib.load(write(tmp_path, "rig.yaml", text))
    message = str(info.value)
    assert SECRET not in message and "s3cr3t" not in message, message
    assert "rig.yaml" in message and "line " in message and "column " in message


def test_a_parse_error_in_a_launch_file_on_the_cli_does_not_echo_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(tmp_path, "g.yaml", f"graph: g\nargs: {{api_key: '{SECRET}}}\nnodes: []\n")
    assert main(["launch", str(f), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.err + captured.out
    assert "g.yaml" in captured.err and "line " in captured.err
