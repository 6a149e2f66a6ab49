"""``pillars`` model cards: a PointPillars-style ONNX export fed voxels (OpenPCDet's
``POINT_CLOUD_RANGE``, ``VOXEL_SIZE``, ``MAX_POINTS_PER_VOXEL``, ``MAX_NUMBER_OF_VOXELS``) runs
through ``open_detector`` and gives what a plain-loop numpy reference of the voxelization, the
model's known answer and the frame transforms gives; a bad card is refused naming the key.

The ONNX model is built to a known answer that depends on every input: box 0 at the mean of the
real points in the voxels (so ``voxel_num_points`` and the per-voxel cut matter), box 1 at the
centre of the mean voxel cell (so ``voxel_coords`` and their order matter)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from fusion_stream.core import calib, msgs
from fusion_stream.infer.cards import CardError, PillarsCard, VoxelGrid, load_card
from fusion_stream.infer.open import open_detector
from fusion_stream.infer.voxelize import voxelize

from .test_model_cards import (
    CLASSES,
    LABELS,
    SCORES,
    SIM_RIG,
    assert_same_boxes,
    bag_frames,
    refused_at_load,
    refused_at_open,
    sim_bag,
    write_card,
)

__all__ = ["sim_bag"]  # the module-scoped fixture of the boxes card tests, shared

RANGE = [-30.0, -30.0, -4.0, 30.0, 30.0, 2.0]
VOXEL = [0.4, 0.4, 1.5]  # 150 × 150 × 4 cells: z is a real axis here, so the coordinate order shows
MAX_PER_VOXEL = 5
MAX_VOXELS = 3000  # fewer than a simulated sweep fills: the cut is exercised
FIELDS = ["x", "y", "z", "intensity"]


def export_pillars_model(path: Path, max_per_voxel: int = MAX_PER_VOXEL) -> None:
    """An ONNX graph with exactly the ``pillars`` card's I/O and a known answer (module doc)."""
    import torch

    lo = torch.tensor(RANGE[:3])
    size = torch.tensor(VOXEL)

    class VoxelMeans(torch.nn.Module):
        def forward(self, voxels: torch.Tensor, coords: torch.Tensor, num: torch.Tensor) -> tuple[torch.Tensor, ...]:
            slots = torch.arange(voxels.shape[1]).unsqueeze(0)
            real = (slots < num.unsqueeze(1)).to(torch.float32).unsqueeze(2)
            total = num.to(torch.float32).sum().clamp(min=1.0)
            mean = (voxels[:, :, :3] * real).sum((0, 1)) / total
            used = (num > 0).to(torch.float32).unsqueeze(1)
            zyx = (coords[:, 1:].to(torch.float32) * used).sum(0) / used.sum().clamp(min=1.0)
            cell = lo + (torch.flip(zyx, [0]) + 0.5) * size
            yaw = torch.atan2(mean[1:2], mean[0:1])
            car = torch.cat([mean, torch.tensor([4.0, 2.0, 1.5]), yaw])
            walker = torch.cat([cell, torch.tensor([0.6, 0.6, 1.7, 0.0])])
            boxes = torch.stack([car, walker, car])
            scores = torch.tensor(SCORES) + 0.0 * mean[0]
            labels = torch.tensor(LABELS, dtype=torch.int64) + (0.0 * mean[0]).to(torch.int64)
            return boxes, scores, labels

    torch.onnx.export(
        VoxelMeans(),
        (
            torch.zeros(MAX_VOXELS, max_per_voxel, len(FIELDS)),
            torch.zeros(MAX_VOXELS, 4, dtype=torch.int32),
            torch.zeros(MAX_VOXELS, dtype=torch.int32),
        ),
        str(path),
        input_names=["voxels", "voxel_coords", "voxel_num_points"],
        output_names=["boxes", "scores", "labels"],
        opset_version=17,
        dynamo=False,
    )


def pillars_card(**over: object) -> dict[str, object]:
    card: dict[str, object] = {
        "kind": "pillars",
        "onnx": "pillars.onnx",
        "classes": CLASSES,
        "class_map": {"Car": "car", "Truck": "truck", "Pedestrian": "pedestrian"},
        "POINT_CLOUD_RANGE": RANGE,
        "VOXEL_SIZE": VOXEL,
        "MAX_POINTS_PER_VOXEL": MAX_PER_VOXEL,
        "MAX_NUMBER_OF_VOXELS": MAX_VOXELS,
        "fields": FIELDS,
        "coords_order": ["z", "y", "x"],
        "inputs": {
            "voxels": {"name": "voxels"},
            "voxel_coords": {"name": "voxel_coords"},
            "voxel_num_points": {"name": "voxel_num_points"},
        },
        "outputs": {
            "boxes": {"name": "boxes", "layout": ["x", "y", "z", "l", "w", "h", "yaw"]},
            "scores": {"name": "scores"},
            "labels": {"name": "labels"},
        },
        "frame": "lidar_top",
        "score_threshold": 0.3,
    }
    card.update(over)
    return card


@pytest.fixture(scope="module")
def pillars_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pillars")
    export_pillars_model(d / "pillars.onnx")
    write_card(d, "pillars.yaml", pillars_card())
    rig = yaml.safe_load(SIM_RIG.read_text())
    rig["rig"] = "sim_turned"
    rig["sensors"]["lidar_top"]["extrinsics"]["rotation_rpy_deg"] = [1.0, -2.0, 30.0]
    (d / "turned_rig.yaml").write_text(yaml.safe_dump(rig))
    return d


def voxelize_reference(
    points: np.ndarray, grid: VoxelGrid, order: tuple[str, ...]
) -> tuple[list[list[np.ndarray]], list[tuple[int, int, int]]]:
    """OpenPCDet's voxelization as a plain loop: per voxel (in order of first appearance) its kept
    points, and its cell index in ``order``."""
    lo, size = grid.point_cloud_range[:3], grid.voxel_size
    shape = grid.shape
    where: dict[tuple[int, int, int], int] = {}
    voxels: list[list[np.ndarray]] = []
    coords: list[tuple[int, int, int]] = []
    for p in points:
        cell = tuple(math.floor((float(p[a]) - lo[a]) / size[a]) for a in range(3))
        if any(not 0 <= cell[a] < shape[a] for a in range(3)):
            continue
        if cell not in where:
            if len(voxels) == grid.max_voxels:
                continue
            where[cell] = len(voxels)  # type: ignore[index]
            voxels.append([])
            coords.append(tuple(cell["xyz".index(a)] for a in order))  # type: ignore[misc]
        v = voxels[where[cell]]  # type: ignore[index]
        if len(v) < grid.max_points_per_voxel:
            v.append(p)
    return voxels, coords


def test_voxelize_matches_the_plain_loop_on_a_simulated_sweep(sim_bag: Path) -> None:
    (frame,) = bag_frames(sim_bag, 1)
    cloud = frame.members["lidar"][0]
    assert isinstance(cloud, msgs.PointCloud)
    points = cloud.data[:, :4].astype(np.float32)
    for order in (("z", "y", "x"), ("x", "y", "z")):
        grid = VoxelGrid(tuple(RANGE), tuple(VOXEL), MAX_PER_VOXEL, MAX_VOXELS)  # type: ignore[arg-type]
        want, want_coords = voxelize_reference(points, grid, order)
        got = voxelize(points, grid, order)
        assert got.count == len(want) == MAX_VOXELS  # the sweep fills more voxels than the card allows
        assert got.voxels.shape == (MAX_VOXELS, MAX_PER_VOXEL, 4)
        for k, pts in enumerate(want):
            assert got.num_points[k] == len(pts)
            np.testing.assert_array_equal(got.voxels[k, : len(pts)], np.array(pts))
            assert not got.voxels[k, len(pts) :].any()
        np.testing.assert_array_equal(got.coords[:, 1:], np.array(want_coords))
        assert not got.coords[:, 0].any()
    # fewer voxels than the limit: the rest is zero padding; unpadded gives only the real ones
    few = VoxelGrid(tuple(RANGE), tuple(VOXEL), 2, 100_000)  # type: ignore[arg-type]
    want, _ = voxelize_reference(points, few, ("z", "y", "x"))
    padded, exact = voxelize(points, few), voxelize(points, few, pad=False)
    assert padded.count == exact.count == len(want) < 100_000
    assert not padded.num_points[len(want) :].any() and len(exact.num_points) == len(want)
    assert voxelize(np.zeros((0, 4), np.float32), few).count == 0


def reference(cloud: msgs.PointCloud, rig: calib.Rig, grid: VoxelGrid, threshold: float = 0.3) -> list[msgs.Box3D]:
    """What the card must give: points sensor → model frame, voxelized by the plain loop, the
    model's answer computed directly, boxes back to the rig frame (those scoring at least
    ``threshold``)."""
    sensor = rig.sensors["lidar_top"].extrinsics.matrix
    model = rig.sensors["lidar_top"].extrinsics.matrix  # the card's frame: the LiDAR itself
    to_model = np.linalg.inv(model) @ sensor
    pts = cloud.data[:, :3].astype(np.float64) @ to_model[:3, :3].T + to_model[:3, 3]
    rows = np.concatenate([pts, cloud.data[:, 3:4]], axis=1).astype(np.float32)
    voxels, coords = voxelize_reference(rows, grid, ("z", "y", "x"))
    kept = np.array([p[:3] for v in voxels for p in v], np.float64)
    mean = kept.mean(axis=0)
    zyx = np.array(coords, np.float64).mean(axis=0)
    cell = np.array(RANGE[:3]) + (zyx[::-1] + 0.5) * np.array(VOXEL)
    turn = math.atan2(model[1, 0], model[0, 0])
    ours = {0: "car", 1: "truck", 2: "pedestrian"}
    answer = [
        (np.array([*mean, 4, 2, 1.5, math.atan2(mean[1], mean[0])]), SCORES[0], LABELS[0]),
        (np.array([*cell, 0.6, 0.6, 1.7, 0.0]), SCORES[1], LABELS[1]),
        (np.array([*mean, 4, 2, 1.5, math.atan2(mean[1], mean[0])]), SCORES[2], LABELS[2]),
    ]
    out = []
    for row, score, label in answer:
        if score < threshold:
            continue
        c = model[:3, :3] @ row[:3] + model[:3, 3]
        yaw = math.remainder(row[6] + turn, math.tau)
        out.append(msgs.Box3D(center=tuple(c), size=tuple(row[3:6]), yaw=yaw, label=ours[label], score=score))
    return out


def test_pillars_card_gives_the_numpy_reference_on_simulated_sweeps(pillars_dir: Path, sim_bag: Path) -> None:
    rig = calib.load(pillars_dir / "turned_rig.yaml")
    card = load_card(pillars_dir / "pillars.yaml")
    assert isinstance(card, PillarsCard) and card.grid.shape == (150, 150, 4)
    detector = open_detector(str(pillars_dir / "pillars.yaml"), rig, device="cpu", threads=1)
    assert detector.warm_up() > 0
    for frame in bag_frames(sim_bag, 2):
        det, times = detector.process(frame)
        assert det.stamp_ns == frame.stamp_ns and times.total_ms > 0
        cloud = frame.members["lidar"][0]
        assert isinstance(cloud, msgs.PointCloud)
        assert_same_boxes(det.boxes, reference(cloud, rig, card.grid))


def test_bad_pillars_cards_name_the_file_and_key(pillars_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "pillars.onnx").write_bytes((pillars_dir / "pillars.onnx").read_bytes())
    inputs = dict(pillars_card()["inputs"])  # type: ignore[call-overload]
    del inputs["voxel_coords"]
    cases = {
        "range_len.yaml": (pillars_card(POINT_CLOUD_RANGE=RANGE[:5]), "POINT_CLOUD_RANGE"),
        "range_flat.yaml": (pillars_card(POINT_CLOUD_RANGE=[0, -30, -4, 0, 30, 2]), "POINT_CLOUD_RANGE"),
        "range_text.yaml": (pillars_card(POINT_CLOUD_RANGE=[0, -30, -4, "70", 30, 2]), "POINT_CLOUD_RANGE"),
        "size_len.yaml": (pillars_card(VOXEL_SIZE=[0.16, 0.16]), "VOXEL_SIZE"),
        "size_zero.yaml": (pillars_card(VOXEL_SIZE=[0.16, 0.0, 4]), "VOXEL_SIZE"),
        "grid_big.yaml": (pillars_card(VOXEL_SIZE=[0.001, 0.001, 0.01]), "VOXEL_SIZE"),
        "per_voxel.yaml": (pillars_card(MAX_POINTS_PER_VOXEL=0), "MAX_POINTS_PER_VOXEL"),
        "voxels_big.yaml": (
            pillars_card(MAX_NUMBER_OF_VOXELS=9_000_000, MAX_POINTS_PER_VOXEL=100),
            "MAX_NUMBER_OF_VOXELS",
        ),
        "order.yaml": (pillars_card(coords_order=["z", "y", "y"]), "coords_order"),
        "fields.yaml": (pillars_card(fields=["x", "y", "intensity"]), "fields"),
        "no_coords.yaml": (pillars_card(inputs=inputs), "inputs.voxel_coords"),
        "typo.yaml": (pillars_card(VOXELSIZE=VOXEL), "VOXELSIZE"),
    }
    refused_at_load(tmp_path, cases)

    def refused(card: dict[str, object]) -> CardError:
        return refused_at_open(tmp_path, card)

    # the ONNX graph's static shapes against the card
    assert refused(pillars_card(MAX_POINTS_PER_VOXEL=32)).key == "MAX_POINTS_PER_VOXEL"
    assert refused(pillars_card(MAX_NUMBER_OF_VOXELS=16000)).key == "MAX_NUMBER_OF_VOXELS"
    assert refused(pillars_card(fields=["x", "y", "z"])).key == "fields"
    renamed = {**pillars_card()["inputs"], "voxel_num_points": {"name": "num_points"}}  # type: ignore[dict-item]
    err = refused(pillars_card(inputs=renamed))
    assert err.key == "inputs" and set(err.found) == {"voxels", "voxel_coords", "voxel_num_points"}
    assert "num_points" in err.expected
