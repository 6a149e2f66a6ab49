"""`fusion-stream sim snapshot`, `sim bag --seeds` and `calib check`: files other tools open, and
clear errors."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusion_stream.cli import main
from fusion_stream.core import formats, geometry, render
from fusion_stream.core.calib import load
from fusion_stream.core.msgs import Box3D
from fusion_stream.sim import lidar
from fusion_stream.sim.recording import record_sim
from fusion_stream.sim.world import Scenario

from .conftest import ROOT


def test_snapshot_writes_files_that_other_tools_open(tmp_path: Path) -> None:
    out = tmp_path / "snap"
    assert main(["sim", "snapshot", "--seed", "4", "--time", "12", "--weather", "rain", "-o", str(out)]) == 0
    image = np.asarray(Image.open(out / "camera_front.png"))
    assert image.shape == (384, 640, 3)
    assert Image.open(out / "bev.png").size[0] > 500
    import open3d as o3d

    cloud = o3d.t.io.read_point_cloud(str(out / "lidar_top.pcd"))
    data, fields = formats.read_pcd(out / "lidar_top.pcd")
    assert fields == lidar.FIELDS and len(data) > 10_000
    assert len(cloud.point.positions) == len(data)  # Open3D reads our PCD
    np.testing.assert_allclose(cloud.point.positions.numpy(), data[:, :3])
    with wave.open(str(out / "mic_array.wav")) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (4, 48_000, 2)
        assert w.getnframes() == 24_000
    header = (out / "radar_front.csv").read_text().splitlines()[0]
    assert header.split(",")[:5] == ["x", "y", "z", "radial_velocity", "rcs"]
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["scenario"]["weather"] == "rain" and truth["boxes"]
    assert {"label", "center", "size", "yaw", "velocity", "siren"} <= set(truth["boxes"][0])


def test_calib_check_prints_the_rig_and_draws_points_on_objects(tmp_path: Path, capsys: object) -> None:
    assert main(["calib", "check", str(ROOT / "calib" / "sim_rig.yaml"), "-o", str(tmp_path)]) == 0
    text = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "camera_front" in text and "640x384" in text and "4 microphones" in text
    png = tmp_path / "camera_front__lidar_top.png"
    assert png.exists()
    share = float(text.split("points in view, ")[1].split("%")[0])
    assert share > 90.0


def test_calib_check_of_a_broken_file_names_the_file_and_key(tmp_path: Path, capsys: object) -> None:
    broken = tmp_path / "rig.yaml"
    broken.write_text(
        (ROOT / "calib" / "sim_rig.yaml")
        .read_text()
        .replace("rotation_rpy_deg: [-90, 0, -90]", "rotation_rpy_deg: [-90, 0]")
    )
    assert main(["calib", "check", str(broken), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert str(broken) in err and "camera_front" in err and "rotation_rpy_deg" in err


def test_pcd_round_trip_and_damage_is_reported(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    path = formats.write_pcd(tmp_path / "a.pcd", data, ("x", "y", "z", "intensity"))
    back, fields = formats.read_pcd(path)
    assert fields == ("x", "y", "z", "intensity")
    np.testing.assert_array_equal(back, data)
    path.write_bytes(path.read_bytes()[:-10])
    try:
        formats.read_pcd(path)
    except formats.FormatError as err:
        assert "truncated" in str(err) and str(path) in str(err)
    else:
        raise AssertionError("a truncated PCD must be refused")


def test_a_projected_box_outlines_the_right_pixels() -> None:
    camera = load(ROOT / "calib" / "sim_rig.yaml")["camera_front"]
    image = np.zeros((384, 640, 3), np.uint8)
    box = Box3D(center=(20.0, 0.0, 1.0), size=(4.0, 2.0, 2.0), label="car")
    out = render.camera_overlay(image, camera, None, [box], show_labels=False)  # the wireframe alone
    drawn = np.argwhere(out.any(axis=2))
    corners, _ = camera.project(geometry.box_corners(box))
    assert len(drawn) > 100
    # every drawn pixel lies within the projected corners' bounding rectangle, and it is filled out
    assert (
        drawn[:, 1].min() >= np.floor(corners[:, 0].min()) - 1 and drawn[:, 1].max() <= np.ceil(corners[:, 0].max()) + 1
    )
    assert (
        drawn[:, 0].min() >= np.floor(corners[:, 1].min()) - 1 and drawn[:, 0].max() <= np.ceil(corners[:, 1].max()) + 1
    )
    assert tuple(out[drawn[0][0], drawn[0][1]]) == render.CLASS_COLORS["car"]


def test_snapshot_refuses_an_impossible_scenario_and_writes_nothing(tmp_path: Path, capsys: object) -> None:
    out = tmp_path / "snap"
    assert main(["sim", "snapshot", "--actors", "0", "-o", str(out)]) == 2
    assert "actors must be in 1..200, got 0" in capsys.readouterr().err  # type: ignore[attr-defined]
    assert not out.exists()


def test_calib_check_needs_a_camera_and_a_lidar(tmp_path: Path, capsys: object) -> None:
    text = (ROOT / "calib" / "sim_rig.yaml").read_text()
    rig = tmp_path / "no_lidar.yaml"
    rig.write_text(text.replace("  lidar_top:\n    type: lidar\n", "  lidar_top:\n    type: radar\n"))
    assert main(["calib", "check", str(rig), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert str(rig) in err and "needs at least one camera and one lidar" in err


def test_pcd_headers_that_are_not_supported_are_named(tmp_path: Path) -> None:
    path = tmp_path / "b.pcd"
    cases = {
        b"VERSION 0.7\nFIELDS x\nSIZE 4\nTYPE F\nCOUNT 1\nPOINTS 1\n": "no DATA line",
        b"FIELDS x\nSIZE 8\nTYPE F\nCOUNT 1\nPOINTS 1\nDATA binary\n": "only float32 fields",
        b"FIELDS x\nSIZE 4\nTYPE F\nCOUNT 1\nPOINTS 1\nDATA binary_compressed\n": "binary_compressed is not supported",
        b"SIZE 4\nTYPE F\nPOINTS 1\nDATA ascii\n1\n": "missing or has a bad",
    }
    for raw, message in cases.items():
        path.write_bytes(raw)
        try:
            formats.read_pcd(path)
        except formats.FormatError as err:
            assert message in str(err) and str(path) in str(err), str(err)
        else:
            raise AssertionError(f"accepted {raw!r}")


def test_sim_bag_renders_a_bag_per_seed_condition_and_weather_and_refuses_existing_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bags"
    many = ["sim", "bag", "--seeds", "7,3", "--conditions", "night", "--weathers", "fog,clear", "--duration", "0.2"]
    assert main([*many, "-o", str(out)]) == 0  # one worker: in this process, no Ray
    names = sorted(p.name for p in out.glob("*.mcap"))
    assert names == [f"sim_seed000{s}_night_{w}.mcap" for s in (3, 7) for w in ("clear", "fog")]
    # the name says which world: the bag is the one-bag command's for that scenario, byte for byte
    record_sim(tmp_path / "one.mcap", Scenario(seed=3, condition="night", weather="fog"), start_s=100.0, duration_s=0.2)
    assert (out / "sim_seed0003_night_fog.mcap").read_bytes() == (tmp_path / "one.mcap").read_bytes()
    assert len((out / "logs" / "sim_bag.log").read_text().splitlines()) == 1 + 4
    assert not (out / ".partial").exists()
    assert "rendered 4 of 4 bags" in capsys.readouterr().out
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.mcap")}
    assert main([*many, "--seeds", "3-4", "-o", str(out)]) == 2  # refused before anything starts
    assert "sim_seed0003_night_clear.mcap" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.mcap")} == before
    for bad in (
        ["--seeds", "9-2"],
        ["--seeds", "x"],
        ["--conditions", "dusk"],
        ["--workers", "0"],
        ["--ray-address", "h:1"],
    ):
        assert main(["sim", "bag", *bad, "-o", str(tmp_path / "none")]) == 2, bad
        assert bad[0] in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
