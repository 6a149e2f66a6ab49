"""KITTI object frames (real data in ../shared/data/kitti) read into the rig frame."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fusion_stream.core.kitti import KittiFolder, read_calib, rig_from_calib
from fusion_stream.errors import FormatError
from fusion_stream.model import preprocess
from fusion_stream.model.config import ModelConfig

KITTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti"
pytestmark = pytest.mark.skipif(not KITTI.exists(), reason="../shared/data/kitti not present")
# 2D label boxes (x1, y1, x2, y2) from label_2.txt, per frame, in label order of detected classes
BOXES_2D = {
    "000000": [(712.40, 143.00, 810.73, 307.92)],
    "000001": [(599.41, 156.40, 629.75, 189.25), (387.63, 181.54, 423.81, 203.12), (676.60, 163.95, 688.98, 193.93)],
    "000002": [(657.39, 190.13, 700.07, 223.39)],
}


def points_in_box(points: np.ndarray, box) -> np.ndarray:  # type: ignore[no-untyped-def]
    d = points - np.array(box.center)
    c, s = np.cos(-box.yaw), np.sin(-box.yaw)
    lx, ly = c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]
    length, width, height = box.size
    return (np.abs(lx) < length / 2) & (np.abs(ly) < width / 2) & (np.abs(d[:, 2]) < height / 2)


def test_lidar_points_in_each_3d_box_project_inside_its_2d_box() -> None:
    folder = KittiFolder(KITTI)
    assert folder.ids == ["000000", "000001", "000002"]
    for i, fid in enumerate(folder.ids):
        frame = folder.load(i)
        cloud = frame.members["lidar"][0].data
        assert len(cloud) in (115384, 120268, 126891)
        pts = frame.rig["velodyne"].extrinsics.apply(cloud[:, :3])
        uv, visible = frame.rig["camera_left"].project(pts)
        assert 18_000 < visible.sum() < 21_000
        labels = {"000000": ["pedestrian"], "000001": ["truck", "car", "cyclist"], "000002": ["car"]}
        assert [b.label for b in frame.boxes] == labels[fid]  # Misc and DontCare are left out
        for box, (x1, y1, x2, y2) in zip(frame.boxes, BOXES_2D[fid], strict=True):
            inside = points_in_box(pts, box)
            assert inside.sum() >= 5, (fid, box.label)
            u, v = uv[inside].T
            # a point of the object projects into the object's image box (2 px for rounding)
            assert (u > x1 - 2).all() and (u < x2 + 2).all() and (v > y1 - 2).all() and (v < y2 + 2).all()
            # the rig frame is on the ground: box bottoms near z = 0 (the road rises a little far out)
            assert abs(box.center[2] - box.size[2] / 2) < (0.4 if box.center[0] < 40 else 1.0)


def test_kitti_frames_become_network_inputs_with_their_own_calibration() -> None:
    frame = KittiFolder(KITTI).load(0)
    cfg = ModelConfig()
    inputs = preprocess.prepare(frame.members, preprocess.RigGeometry.from_rig(frame.rig), cfg)
    assert inputs["present"].tolist() == [1.0, 1.0, 0.0, 0.0]
    # the pedestrian 8.7 m ahead: its cell is occupied and it projects where its 2D box is
    ped = frame.boxes[0]
    uvw = inputs["cam_proj"] @ np.array([*ped.center, 1.0])
    u, v = uvw[:2] / uvw[2]
    sx, sy = cfg.image_size[1] / 1224, cfg.image_size[0] / 370
    assert 712 * sx < u < 811 * sx and 143 * sy < v < 308 * sy


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    copy = tmp_path / "kitti"
    shutil.copytree(KITTI, copy)
    (copy / "000001" / "label_2.txt").unlink()
    folder = KittiFolder(copy)
    with pytest.raises(FormatError, match=r"000001/label_2\.txt: missing"):
        folder.load(1)
    (copy / "000002" / "calib.txt").write_text("P0: 1 2 3\n")
    with pytest.raises(FormatError, match=r"calib\.txt: no P2"):
        read_calib(copy / "000002" / "calib.txt")
    with (copy / "000000" / "velodyne.bin").open("ab") as f:
        f.write(b"\x00\x01")
    with pytest.raises(FormatError, match="16-byte"):
        folder.load(0)
    with pytest.raises(FormatError, match="no KITTI frames"):
        KittiFolder(tmp_path)
    rig = rig_from_calib(read_calib(KITTI / "000001" / "calib.txt"), (1242, 375))
    assert set(rig.sensors) == {"velodyne", "camera_left"}


def test_calib_from_kitti_writes_a_rig_that_projects_like_the_kitti_matrices(tmp_path: Path) -> None:
    """`fusion-stream calib from-kitti`: the rig file, read back, maps Velodyne points to the
    same pixels as KITTI's own P2 · R0_rect · Tr_velo_to_cam, and survives a second round trip."""
    from fusion_stream.cli import main
    from fusion_stream.core import calib

    for fid in ("000000", "000001"):
        out = tmp_path / f"rig_{fid}.yaml"
        assert main(["calib", "from-kitti", str(KITTI / fid / "calib.txt"), "-o", str(out)]) == 0
        rig = calib.load(out)
        kc = read_calib(KITTI / fid / "calib.txt")
        velo = KittiFolder(KITTI).load(int(fid)).members["lidar"][0].data[:, :3].astype(np.float64)
        ahead = velo[velo[:, 0] > 5.0]
        pix = (kc.p2 @ kc.velo_to_rect() @ np.c_[ahead, np.ones(len(ahead))].T).T
        expected = pix[:, :2] / pix[:, 2:3]
        uv, _ = rig["camera_left"].project(rig["velodyne"].extrinsics.apply(ahead))
        # KITTI's rotation is orthonormal to ~1e-4 only; the rig keeps the nearest rigid one
        assert np.percentile(np.abs(uv - expected), 99) < 0.5
        again = tmp_path / f"again_{fid}.yaml"
        calib.save(rig, again)
        rig2 = calib.load(again)
        for name in rig.sensors:
            np.testing.assert_allclose(rig2[name].extrinsics.matrix, rig[name].extrinsics.matrix, atol=1e-12)
            assert rig2[name].intrinsics == rig[name].intrinsics
    assert main(["calib", "from-kitti", str(KITTI / "SOURCE.md"), "-o", str(tmp_path / "x.yaml")]) == 2
    lone = tmp_path / "lone_calib.txt"
    shutil.copy(KITTI / "000000" / "calib.txt", lone)
    assert main(["calib", "from-kitti", str(lone), "-o", str(tmp_path / "y.yaml")]) == 2  # no image: size unknown
    assert main(["calib", "from-kitti", str(lone), "-o", str(tmp_path / "y.yaml"), "--image-size", "1242x375"]) == 0
