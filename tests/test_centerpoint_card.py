"""``centerpoint`` model cards: CenterPoint's heads decoded by a pure function (checked on
hand-made head tensors with known answers), and CenterPoint-style ONNX exports, one file and
Autoware's two (voxel encoder, then backbone/neck/head on the scattered BEV image), run through
``open_detector`` on a real KITTI sweep.

The exported networks have heads set by hand: one peak (and a weaker duplicate beside it that
NMS must drop) at a cell chosen from the sweep, constant offsets, sizes, rotation and velocity,
and a height that is the sum of the mean z of the pillars under the peak, computed through the
voxelization, the encoder features and the scatter; a plain numpy loop gives the expected box."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from fusion_stream.core import calib, kitti, msgs
from fusion_stream.errors import InferenceError
from fusion_stream.infer.boxes_model import decode_boxes
from fusion_stream.infer.cards import VoxelGrid, load_card
from fusion_stream.infer.centerpoint_card import CenterPointCard, Decoding, Nms
from fusion_stream.infer.centerpoint_decode import LAYOUT, bev_iou, decode_heads
from fusion_stream.infer.open import open_detector
from fusion_stream.infer.pillar_features import encoder_features, scatter
from fusion_stream.infer.voxelize import Voxels

from .conftest import ROOT, run_cli
from .test_model_cards import refused_at_load, refused_at_open, write_card

KITTI = ROOT.parent / "shared" / "data" / "kitti"

# ----------------------------------------------------------------------------- the pure decoder

SMALL = VoxelGrid((0.0, -8.0, -3.0, 16.0, 8.0, 1.0), (0.5, 0.5, 4.0), 32, 1000)  # 32×32 cells, heads 16×16


def hand_heads(rows: int = 16, cols: int = 16) -> dict[str, np.ndarray]:
    """A class-1 peak at (row 5, col 7), a weaker duplicate at (5, 8), a class-0 one at (5, 8)."""
    heat = np.full((1, 2, rows, cols), -10.0, np.float32)
    heat[0, 1, 5, 7], heat[0, 1, 5, 8], heat[0, 0, 5, 8] = 3.0, 2.0, 1.0
    ones = np.ones((1, 1, rows, cols), np.float32)
    reg = np.concatenate([ones * 0.3, ones * 0.6], 1)
    reg[0, :, 5, 8] = 0.0
    return {
        "heatmap": heat,
        "reg": reg,
        "height": ones * 0.8,
        "dim": np.concatenate([ones * math.log(4.0), ones * math.log(2.0), ones * math.log(1.5)], 1),
        "rot": np.concatenate([ones * math.sin(0.5), ones * math.cos(0.5)], 1),
        "vel": np.concatenate([ones * 1.5, ones * -0.5], 1),
    }


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_a_peak_decodes_to_a_box_at_its_cell_with_its_size_yaw_and_velocity() -> None:
    d = Decoding(SMALL, 2, nms=Nms("circle", radius=1.0))
    boxes, scores, labels = decode_heads(hand_heads(), d, 2)
    # the class-1 duplicate 0.92 m away is dropped; the class-0 one there is another class
    assert labels.tolist() == [1, 0]
    np.testing.assert_allclose(scores, [sig(3.0), sig(1.0)], rtol=1e-6)
    # (col 7 + 0.3) · stride 2 · 0.5 m + 0, (row 5 + 0.6) · 2 · 0.5 − 8
    np.testing.assert_allclose(boxes[0], [7.3, -2.4, 0.8, 4.0, 2.0, 1.5, 0.5, 1.5, -0.5], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(boxes[1, :2], [8.0, -3.0], atol=1e-6)
    # class-agnostic NMS drops the class-0 box as well; no NMS keeps all three; a small radius too
    agnostic = dataclasses.replace(d, nms=Nms("circle", radius=1.0, per_class=False))
    assert decode_heads(hand_heads(), agnostic, 2)[2].tolist() == [1]
    assert decode_heads(hand_heads(), dataclasses.replace(d, nms=Nms("none")), 2)[2].tolist() == [1, 1, 0]
    assert len(decode_heads(hand_heads(), dataclasses.replace(d, nms=Nms("circle", radius=0.5)), 2)[2]) == 3
    # rotated-IoU NMS: the duplicate overlaps the peak's 4 × 2 m box well above 0.2
    iou = dataclasses.replace(d, nms=Nms("iou", iou_threshold=0.2))
    assert decode_heads(hand_heads(), iou, 2)[2].tolist() == [1, 0]
    # top-k, the score threshold and post_max_size
    assert len(decode_heads(hand_heads(), dataclasses.replace(d, top_k=1), 2)[0]) == 1
    assert decode_heads(hand_heads(), dataclasses.replace(d, score_threshold=0.8), 2)[2].tolist() == [1]
    capped = dataclasses.replace(d, nms=Nms("none", post_max_size=2))
    assert len(decode_heads(hand_heads(), capped, 2)[0]) == 2


def test_head_encodings_sigmoid_log_size_orders_and_no_velocity() -> None:
    heads = hand_heads()
    heads["heatmap"] = 1.0 / (1.0 + np.exp(-heads["heatmap"]))  # already probabilities
    heads["dim"] = np.exp(heads["dim"])[:, [1, 0, 2]]  # plain metres, w, l, h
    heads["rot"] = heads["rot"][:, ::-1].copy()  # OpenPCDet's cos, sin
    del heads["vel"]
    d = Decoding(
        SMALL, 2, sigmoid=False, dim_log=False, dim_order=("w", "l", "h"), rot_order=("cos", "sin"), nms=Nms("none")
    )
    boxes, scores, _ = decode_heads(heads, d, 2)
    assert scores[0] == pytest.approx(sig(3.0))
    np.testing.assert_allclose(boxes[0], [7.3, -2.4, 0.8, 4.0, 2.0, 1.5, 0.5, 0.0, 0.0], rtol=1e-6, atol=1e-6)
    with pytest.raises(InferenceError, match="reg head"):
        decode_heads({**heads, "reg": heads["reg"][:, :, :8]}, d, 2)


def test_classes_map_through_the_card_and_boxes_turn_into_the_rig_frame() -> None:
    boxes, scores, labels = decode_heads(hand_heads(), Decoding(SMALL, 2, nms=Nms("circle", radius=1.0)), 2)
    to_rig = calib.Transform.from_rpy((1.0, 0.0, 0.0), (0.0, 0.0, math.pi / 2))
    out = decode_boxes(boxes, scores, labels, LAYOUT, ("CAR", "PEDESTRIAN"), {"CAR": "car"}, to_rig, 0.1)
    assert [b.label for b in out] == ["PEDESTRIAN", "car"]  # unmapped names pass through
    np.testing.assert_allclose(out[0].center, (1.0 + 2.4, 7.3, 0.8), atol=1e-6)
    np.testing.assert_allclose(out[0].velocity, (0.5, 1.5), atol=1e-6)
    assert out[0].yaw == pytest.approx(0.5 + math.pi / 2)


def test_rotated_bev_iou() -> None:
    a = np.array([0, 0, 0, 4, 2, 1, 0, 0, 0], float)
    assert bev_iou(a, a) == pytest.approx(1.0)
    shifted = a.copy()
    shifted[0] = 2.0  # half of it overlaps: 4 / (8 + 8 − 4)
    assert bev_iou(a, shifted) == pytest.approx(1 / 3)
    turned = a.copy()
    turned[6] = math.pi / 2  # a 2 × 2 m cross: 4 / (8 + 8 − 4)
    assert bev_iou(a, turned) == pytest.approx(1 / 3)
    far = a.copy()
    far[1] = 5.0
    assert bev_iou(a, far) == 0.0


def test_pillar_features_and_the_scatter() -> None:
    grid = VoxelGrid((0.0, 0.0, -2.0, 4.0, 4.0, 2.0), (1.0, 1.0, 4.0), 3, 4)
    voxels = np.zeros((4, 3, 4), np.float32)
    voxels[0, :2] = [[0.2, 3.1, 0.0, 7.0], [0.6, 3.5, 1.0, 9.0]]  # cell x 0, y 3
    voxels[1, :1] = [[2.5, 1.5, -1.0, 1.0]]  # cell x 2, y 1
    coords = np.array([[0, 0, 3, 0], [0, 0, 1, 2], [0, 0, 0, 0], [0, 0, 0, 0]], np.int32)  # z, y, x
    v = Voxels(voxels, coords, np.array([2, 1, 0, 0], np.int32), 2)
    names = ["x", "intensity", "cluster_x", "cluster_z", "center_x", "center_y", "center_z"]
    f = encoder_features(v, grid, ["x", "y", "z", "intensity"], names, ["z", "y", "x"])
    np.testing.assert_allclose(f[0, 0], [0.2, 7.0, -0.2, -0.5, -0.3, -0.4, 0.0], atol=1e-6)
    np.testing.assert_allclose(f[0, 1], [0.6, 9.0, 0.2, 0.5, 0.1, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(f[1, 0], [2.5, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0], atol=1e-6)
    assert not f[0, 2].any() and not f[2:].any()  # empty slots stay zero
    canvas = scatter(np.array([[[1.0, 2.0]], [[3.0, 4.0]], [[9.0, 9.0]], [[9.0, 9.0]]], np.float32), v, grid, "zyx")
    assert canvas.shape == (1, 2, 4, 4)
    assert canvas[0, :, 3, 0].tolist() == [1.0, 2.0] and canvas[0, :, 1, 2].tolist() == [3.0, 4.0]
    assert canvas.sum() == 10.0  # the padding rows are not placed


# ----------------------------------------------------------------------------- ONNX exports end to end

GRID = VoxelGrid((0.0, -40.0, -3.0, 70.4, 40.0, 1.0), (0.2, 0.2, 4.0), 32, 40000)  # 352 × 400 pillars
FACTOR = 2
ROWS, COLS = 200, 176
REG, DIMS, YAW, VEL = (0.3, 0.6), (4.2, 1.8, 1.6), 0.4, (2.0, -1.0)
FEATURES = ["x", "y", "z", "intensity", "cluster_x", "cluster_y", "cluster_z", "center_x", "center_y"]


def head_module(peak: tuple[int, int]) -> object:
    """Backbone/neck/head with hand-set heads (the module doc): 1×1×400×352 → heads 200×176."""
    import torch

    heat = torch.full((1, 2, ROWS, COLS), -10.0)
    heat[0, 1, peak[0], peak[1]] = 3.0
    heat[0, 1, peak[0], peak[1] + 1] = 2.0  # a duplicate 0.4 m away: circle NMS drops it

    class Head(torch.nn.Module):
        heat: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("heat", heat)

        def forward(self, bev: torch.Tensor) -> tuple[torch.Tensor, ...]:
            pooled = torch.nn.functional.avg_pool2d(bev, FACTOR)
            ones = pooled * 0.0 + 1.0

            def const(*values: float) -> torch.Tensor:
                return torch.cat([ones * v for v in values], 1)

            return (
                self.heat + 0.0 * pooled,
                const(*REG),
                pooled * FACTOR * FACTOR,  # the sum of the mean z of the 2 × 2 pillars
                const(*(math.log(v) for v in DIMS)),
                const(math.sin(YAW), math.cos(YAW)),
                const(*VEL),
            )

    return Head()


HEAD_NAMES = ["heatmap", "reg", "height", "dim", "rot", "vel"]


def export_two_files(folder: Path, peak: tuple[int, int]) -> None:
    """Autoware's pair: the encoder averages ``z − cluster_z`` over a pillar's real points (its
    mean z, right only if the cluster feature is); the head is :func:`head_module`."""
    import torch

    class Encoder(torch.nn.Module):
        def forward(self, features: torch.Tensor) -> torch.Tensor:
            real = (features.abs().sum(2) > 0).to(torch.float32)
            count = real.sum(1).clamp(min=1.0)
            mean_z = ((features[:, :, 2] - features[:, :, 6]) * real).sum(1) / count
            return mean_z.reshape(-1, 1, 1)

    torch.onnx.export(
        Encoder(),
        (torch.zeros(GRID.max_voxels, GRID.max_points_per_voxel, len(FEATURES)),),
        str(folder / "pts_voxel_encoder.onnx"),
        input_names=["input_features"],
        output_names=["pillar_features"],
        opset_version=17,
        dynamo=False,
    )
    torch.onnx.export(
        head_module(peak),  # type: ignore[arg-type]
        (torch.zeros(1, 1, 400, 352),),
        str(folder / "pts_backbone_neck_head.onnx"),
        input_names=["spatial_features"],
        output_names=HEAD_NAMES,
        opset_version=17,
        dynamo=False,
    )


def export_one_file(folder: Path, peak: tuple[int, int]) -> None:
    """One file fed voxels: the pillar mean z scattered to the BEV image in the graph, then
    :func:`head_module`."""
    import torch

    head = head_module(peak)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = head

        def forward(self, voxels: torch.Tensor, coords: torch.Tensor, num: torch.Tensor) -> tuple[torch.Tensor, ...]:
            real = (torch.arange(voxels.shape[1]).unsqueeze(0) < num.unsqueeze(1)).to(torch.float32)
            mean_z = (voxels[:, :, 2] * real).sum(1) / num.to(torch.float32).clamp(min=1.0)
            cell = coords[:, 2].to(torch.int64) * 352 + coords[:, 3].to(torch.int64)
            canvas = torch.zeros(400 * 352).index_add(0, cell, mean_z)
            return self.head(canvas.reshape(1, 1, 400, 352))  # type: ignore[operator,no-any-return]

    torch.onnx.export(
        Net(),
        (
            torch.zeros(GRID.max_voxels, GRID.max_points_per_voxel, 4),
            torch.zeros(GRID.max_voxels, 4, dtype=torch.int32),
            torch.zeros(GRID.max_voxels, dtype=torch.int32),
        ),
        str(folder / "centerpoint.onnx"),
        input_names=["voxels", "voxel_coords", "voxel_num_points"],
        output_names=HEAD_NAMES,
        opset_version=17,
        dynamo=False,
    )


def cp_card(two_files: bool, **over: object) -> dict[str, object]:
    card: dict[str, object] = {
        "kind": "centerpoint",
        "onnx": (
            {"encoder": "pts_voxel_encoder.onnx", "head": "pts_backbone_neck_head.onnx"}
            if two_files
            else "centerpoint.onnx"
        ),
        "classes": ["CAR", "PEDESTRIAN"],
        "class_map": {"CAR": "car", "PEDESTRIAN": "pedestrian"},
        "point_cloud_range": list(GRID.point_cloud_range),
        "voxel_size": list(GRID.voxel_size),
        "max_points_per_voxel": GRID.max_points_per_voxel,
        "max_voxels": GRID.max_voxels,
        "fields": ["x", "y", "z", "intensity"],
        "out_size_factor": FACTOR,
        "inputs": (
            {r: {"name": r} for r in ("input_features", "pillar_features", "spatial_features")}
            if two_files
            else {r: {"name": r} for r in ("voxels", "voxel_coords", "voxel_num_points")}
        ),
        "outputs": {h: {"name": h} for h in HEAD_NAMES},
        "frame": "velodyne",
        "score_threshold": 0.3,
        "nms": {"type": "circle", "radius": 1.0},
    }
    if two_files:
        card["encoder_features"] = FEATURES
    card.update(over)
    return card


@pytest.fixture(scope="module")
def sweep() -> kitti.KittiFrame:
    if not KITTI.exists():
        pytest.skip("../shared/data/kitti not present")
    return kitti.KittiFolder(KITTI).load(0)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[int, int]]:
    """Both exports in one folder, their peak under a point of the first KITTI sweep (where
    there is one), and that peak."""
    folder = tmp_path_factory.mktemp("centerpoint")
    peak = peak_cell(kitti.read_velodyne(KITTI / "000000" / "velodyne.bin")) if KITTI.exists() else (10, 10)
    export_two_files(folder, peak)
    export_one_file(folder, peak)
    return folder, peak


def peak_cell(points: np.ndarray) -> tuple[int, int]:
    """The head cell (row, col) of the sweep's point nearest to 12 m ahead, 3 m left."""
    p = points[np.argmin(np.hypot(points[:, 0] - 12.0, points[:, 1] - 3.0))]
    lo, size = GRID.point_cloud_range, GRID.voxel_size
    return int((p[1] - lo[1]) // (size[1] * FACTOR)), int((p[0] - lo[0]) // (size[0] * FACTOR))


def expected_box(points: np.ndarray, peak: tuple[int, int], rig: calib.Rig, frame: str = "velodyne") -> msgs.Box3D:
    """The box in plain numpy: the pillars' first 32 points (voxels in order of first appearance,
    at most max_voxels), the mean z of the four under the peak summed, the box moved from the
    card's ``frame`` (the LiDAR's own, where ``points`` are) to the rig."""
    lo, size = GRID.point_cloud_range, GRID.voxel_size
    nx, ny, _ = GRID.shape
    kept: dict[tuple[int, int], list[float]] = {}
    for x, y, z in points[:, :3].astype(np.float64).tolist():
        cx, cy = math.floor((x - lo[0]) / size[0]), math.floor((y - lo[1]) / size[1])
        if not (0 <= cx < nx and 0 <= cy < ny and lo[2] <= z < lo[5]):
            continue
        if (cy, cx) not in kept:
            if len(kept) == GRID.max_voxels:
                continue
            kept[(cy, cx)] = []
        if len(kept[(cy, cx)]) < GRID.max_points_per_voxel:
            kept[(cy, cx)].append(z)
    row, col = peak
    under = [kept.get((2 * row + i, 2 * col + j)) for i in (0, 1) for j in (0, 1)]
    height = sum(float(np.asarray(zs, np.float32).mean()) for zs in under if zs)
    centre = ((col + REG[0]) * FACTOR * size[0] + lo[0], (row + REG[1]) * FACTOR * size[1] + lo[1], height)
    to_rig = rig[frame].extrinsics
    c = to_rig.apply(np.array([centre]))[0]
    turn = math.atan2(to_rig.rotation[1, 0], to_rig.rotation[0, 0])
    return msgs.Box3D(center=tuple(c), size=DIMS, yaw=YAW + turn, label="pedestrian", score=sig(3.0))


@pytest.mark.parametrize("two_files", [True, False], ids=["encoder+head", "one file"])
def test_centerpoint_exports_decode_the_known_box_on_a_kitti_sweep(
    sweep: kitti.KittiFrame, exports: tuple[Path, tuple[int, int]], two_files: bool
) -> None:
    cloud = sweep.members["lidar"][0]
    assert isinstance(cloud, msgs.PointCloud)
    folder, peak = exports
    assert peak == peak_cell(cloud.data)
    path = write_card(folder, f"cp_{two_files}.yaml", cp_card(two_files))
    card = load_card(path)
    assert isinstance(card, CenterPointCard) and (card.encoder is not None) == two_files
    detector = open_detector(str(path), sweep.rig, device="cpu", threads=1)
    frame = msgs.SyncedFrame(stamp_ns=5, frame_id="base_link", members=sweep.members)
    assert detector.warm_up() > 0 and detector.present(frame) == ["lidar"]
    det, times = detector.process(frame)
    assert det.stamp_ns == 5 and det.frame_id == "base_link" and times.total_ms > 0
    want = expected_box(cloud.data, peak, sweep.rig)
    assert want.center[2] != 0.0  # the pillars under the peak have points: the height is real data
    (got,) = det.boxes  # the duplicate beside the peak is dropped by circle NMS
    assert got.label == want.label and got.score == pytest.approx(want.score, rel=1e-5)
    np.testing.assert_allclose(got.center, want.center, atol=1e-3)
    np.testing.assert_allclose(got.size, want.size, rtol=1e-5)
    assert abs(math.remainder(got.yaw - want.yaw, math.tau)) < 1e-5
    vel = sweep.rig["velodyne"].extrinsics.rotation[:2, :2] @ np.array(VEL)
    np.testing.assert_allclose(got.velocity, vel, atol=1e-5)
    none = write_card(folder, f"none_{two_files}.yaml", cp_card(two_files, nms={"type": "none"}))
    assert len(open_detector(str(none), sweep.rig, device="cpu").process(frame)[0].boxes) == 2


# ----------------------------------------------------------------------------- bad cards


def test_bad_centerpoint_cards_name_the_file_and_key(exports: tuple[Path, tuple[int, int]], tmp_path: Path) -> None:
    for onnx in exports[0].glob("*.onnx"):
        (tmp_path / onnx.name).write_bytes(onnx.read_bytes())
    outputs = {h: {"name": h} for h in HEAD_NAMES if h != "rot"}
    cases = {
        "range.yaml": (cp_card(True, point_cloud_range=[0, -40, -3, 70.4, 40]), "point_cloud_range"),
        "size.yaml": (cp_card(True, voxel_size=[0.2, 0.0, 4]), "voxel_size"),
        "z_cells.yaml": (cp_card(True, voxel_size=[0.2, 0.2, 1.0]), "voxel_size"),
        "factor.yaml": (cp_card(True, out_size_factor=3), "out_size_factor"),
        "no_rot.yaml": (cp_card(True, outputs=outputs), "outputs.rot"),
        "twice.yaml": (cp_card(True, outputs={**outputs, "hm": {"name": "x"}}), "outputs.hm"),
        "sigmoid.yaml": (
            cp_card(True, outputs={"heatmap": {"name": "h", "sigmoid": "yes"}}),
            "outputs.heatmap.sigmoid",
        ),
        "dim.yaml": (cp_card(True, outputs={"dim": {"name": "d", "order": ["l", "w", "w"]}}), "outputs.dim.order"),
        "feature.yaml": (cp_card(True, encoder_features=["x", "y", "ring"]), "encoder_features"),
        "nms.yaml": (cp_card(True, nms={"type": "soft"}), "nms.type"),
        "radius.yaml": (cp_card(True, nms={"type": "circle", "radius": -1}), "nms.radius"),
        "inputs.yaml": (cp_card(False, inputs={"voxels": {"name": "voxels"}}), "inputs.voxel_coords"),
        "encoder.yaml": (cp_card(True, onnx={"head": "pts_backbone_neck_head.onnx"}), "onnx.encoder"),
        "typo.yaml": (cp_card(True, downsample_factor=2), "downsample_factor"),
    }
    refused_at_load(tmp_path, cases)

    def refused(card: dict[str, object]) -> object:
        return refused_at_open(tmp_path, {**card, "frame": "lidar_top"})  # a LiDAR of the rig it opens on

    err = refused(cp_card(True, outputs={**{h: {"name": h} for h in HEAD_NAMES}, "reg": {"name": "offset"}}))
    assert err.key == "outputs"  # type: ignore[attr-defined]
    assert "offset" in err.expected and set(err.found) == set(HEAD_NAMES)  # type: ignore[attr-defined]
    err = refused(cp_card(True, inputs={**cp_card(True)["inputs"], "input_features": {"name": "features"}}))  # type: ignore[dict-item]
    assert err.key == "onnx.encoder" and err.found == ("input_features",)  # type: ignore[attr-defined]
    assert refused(cp_card(True, classes=["CAR"], class_map={})).key == "classes"  # type: ignore[attr-defined]
    assert refused(cp_card(True, max_voxels=16000)).key == "max_voxels"  # type: ignore[attr-defined]
    assert refused(cp_card(True, out_size_factor=4)).key == "out_size_factor"  # type: ignore[attr-defined]
    assert refused(cp_card(False, fields=["x", "y", "z"])).key == "fields"  # type: ignore[attr-defined]
    assert refused(cp_card(True, encoder_features=FEATURES[:8])).key == "encoder_features"  # type: ignore[attr-defined]
    # the CLI: exit 2 naming the file and the key
    bad = write_card(tmp_path, "bad.yaml", cp_card(True, nms={"type": "soft"}))
    r = run_cli("eval-sim", "--model", str(bad), "--seeds", "1", "--per-seed", "1")
    assert r.returncode == 2 and "bad.yaml" in r.stderr and "nms.type" in r.stderr, r.stderr
