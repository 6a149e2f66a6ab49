"""Rig calibration: loading, validation with the key named, transforms and projection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fusion_stream.core import calib
from fusion_stream.core.calib import CalibrationError, Transform

from .conftest import ROOT

SIM = ROOT / "calib" / "sim_rig.yaml"


def test_sim_rig_loads_and_projects_a_point_ahead_to_the_image_centre() -> None:
    rig = calib.load(SIM)
    assert rig.frame_id == "base_link" and {s.type for s in rig.sensors.values()} == {
        "camera",
        "lidar",
        "radar",
        "microphones",
    }
    cam = rig["camera_front"]
    # a point 20 m straight ahead of the camera, at its height, lands on the principal point
    ahead = cam.extrinsics.translation + np.array([20.0, 0.0, 0.0])
    uv, inside = cam.project(ahead[None])
    assert inside[0]
    np.testing.assert_allclose(uv[0], [320.0, 192.0], atol=1e-6)
    # to the left of the car → left half of the image; above → upper half; behind → not visible
    uv, inside = cam.project(np.array([[21.6, 3.0, 1.5], [21.6, 0.0, 4.0], [-10.0, 0.0, 1.5]]))
    assert inside.tolist() == [True, True, False]
    assert uv[0, 0] < 320 and uv[1, 1] < 192
    mics = rig["mic_array"].microphones
    assert mics is not None and mics.shape == (4, 3)


def test_transforms_compose_and_invert() -> None:
    a = Transform.from_rpy((1.0, 2.0, 3.0), (0.1, -0.2, 0.3))
    pts = np.random.default_rng(0).normal(size=(10, 3))
    np.testing.assert_allclose(a.inverse().apply(a.apply(pts)), pts, atol=1e-12)
    np.testing.assert_allclose((a @ a.inverse()).matrix, np.eye(4), atol=1e-12)
    yaw90 = Transform.from_rpy((0, 0, 0), (0, 0, math.pi / 2))
    q = Transform.from_quaternion((0, 0, 0), (0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)))
    np.testing.assert_allclose(yaw90.matrix, q.matrix, atol=1e-12)
    np.testing.assert_allclose(yaw90.apply(np.array([[1.0, 0, 0]])), [[0, 1, 0]], atol=1e-12)


def broken(tmp_path: Path, old: str, new: str) -> Path:
    f = tmp_path / "rig.yaml"
    text = SIM.read_text()
    assert old in text
    f.write_text(text.replace(old, new))
    return f


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("fx: 400.0", "fx: -4", "sensors.camera_front.intrinsics.fx"),
        ("fy: 400.0, ", "", "sensors.camera_front.intrinsics.fy"),
        ("type: radar", "type: sonar", "sensors.radar_front.type"),
        ("translation: [3.6, 0.0, 0.6]", "translation: [3.6, 0.0]", "sensors.radar_front.extrinsics.translation"),
        (
            "rotation_rpy_deg: [-90, 0, -90]",
            "rotation_quaternion: [0, 0, 0, 2]",
            "sensors.camera_front.extrinsics.rotation_quaternion",
        ),
        ("distortion: [0.0, 0.0, 0.0, 0.0, 0.0]", "distortion: [0.0, nan]", "sensors.camera_front.distortion"),
        ("microphones: [[0.05, 0.05, 0.0], ", "microphones: [[0.05, 0.05], ", "sensors.mic_array.microphones[0]"),
        (
            "    time_offset_ms: 0\n  radar_front",
            "    time_offset_ms: soon\n  radar_front",
            "sensors.camera_front.time_offset_ms",
        ),
        (
            "    extrinsics: {translation: [1.2, 0.0, 1.9], rotation_rpy_deg: [0, 0, 0]}\n",
            "",
            "sensors.lidar_top.extrinsics",
        ),
    ],
)
def test_broken_calibration_names_the_file_and_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    f = broken(tmp_path, old, new)
    with pytest.raises(CalibrationError) as info:
        calib.load(f)
    assert info.value.key == key, str(info.value)
    assert str(f) in str(info.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="no such calibration file"):
        calib.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("sensors: [unclosed")
    with pytest.raises(CalibrationError, match="cannot read"):
        calib.load(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("rig: x\n")
    with pytest.raises(CalibrationError, match="sensors"):
        calib.load(tmp_path / "empty.yaml")


def test_projection_refuses_non_cameras() -> None:
    rig = calib.load(SIM)
    with pytest.raises(ValueError, match="not a camera"):
        rig["lidar_top"].project(np.zeros((1, 3)))
    with pytest.raises(KeyError, match="no sensor 'sonar'"):
        rig["sonar"]
