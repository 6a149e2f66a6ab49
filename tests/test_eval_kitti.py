"""KITTI-style metrics on hand-made boxes whose overlaps and AP are computed by hand."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from fusion_stream.core.msgs import Box3D
from fusion_stream.eval.kitti import (
    IOU_THRESHOLDS,
    average_precision_r40,
    bev_iou,
    iou_3d,
    kitti_metrics,
    match_class,
    precision_recall_curve,
)
from fusion_stream.eval.metrics import FrameResult


def box(
    x: float,
    y: float,
    z: float = 0.0,
    size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    yaw: float = 0.0,
    label: str = "car",
    score: float = 1.0,
) -> Box3D:
    return Box3D(center=(x, y, z), size=size, yaw=yaw, label=label, score=score)


CAR = (4.5, 1.9, 1.6)


# --- IoU -------------------------------------------------------------------------------------


def test_identical_boxes_have_iou_one() -> None:
    a = box(3.0, -2.0, 0.8, CAR, yaw=0.4)
    assert bev_iou(a, a) == pytest.approx(1.0)
    assert iou_3d(a, a) == pytest.approx(1.0)


def test_half_length_offset_gives_one_third_and_a_vertical_offset_one_seventh() -> None:
    a, b = box(0, 0), box(0.5, 0)
    # overlap 0.5 × 1, union 2 − 0.5
    assert bev_iou(a, b) == pytest.approx(1 / 3)
    assert iou_3d(a, b) == pytest.approx(1 / 3)
    # half a height up as well: intersection 0.5 × 0.5 = 0.25, union 2 − 0.25
    c = box(0.5, 0, 0.5)
    assert bev_iou(a, c) == pytest.approx(1 / 3)
    assert iou_3d(a, c) == pytest.approx(0.25 / 1.75)
    # offset along y instead of x: same by symmetry; along the rotated length axis too
    assert bev_iou(a, box(0, 0.5)) == pytest.approx(1 / 3)
    assert bev_iou(box(0, 0, yaw=0.3), box(0.5 * math.cos(0.3), 0.5 * math.sin(0.3), yaw=0.3)) == pytest.approx(1 / 3)


def test_quarter_turn_keeps_a_square_footprint_but_crosses_a_long_one() -> None:
    square = box(1, 2, size=(2, 2, 1))
    assert bev_iou(square, box(1, 2, size=(2, 2, 1), yaw=math.pi / 2)) == pytest.approx(1.0)
    long = box(1, 2, size=(2, 1, 1))
    # 2 × 1 against its own 90° turn: a 1 × 1 cross in the middle, union 2 + 2 − 1
    assert bev_iou(long, box(1, 2, size=(2, 1, 1), yaw=math.pi / 2)) == pytest.approx(1 / 3)
    # a half turn leaves a rectangle where it was
    assert bev_iou(long, box(1, 2, size=(2, 1, 1), yaw=math.pi)) == pytest.approx(1.0)


def test_disjoint_boxes_have_iou_zero() -> None:
    assert bev_iou(box(0, 0), box(1.5, 0)) == 0.0
    assert bev_iou(box(0, 0), box(3, 3, yaw=0.7)) == 0.0
    # overlapping footprints, separate heights
    assert bev_iou(box(0, 0), box(0, 0, 2.0)) == pytest.approx(1.0)
    assert iou_3d(box(0, 0), box(0, 0, 2.0)) == 0.0
    # touching edges: zero area
    assert bev_iou(box(0, 0), box(1, 0)) == pytest.approx(0.0, abs=1e-12)


def test_rotated_square_inside_and_across_a_square() -> None:
    # a unit square turned 45° reaches √2/2 ≈ 0.71 from its centre: inside a 2 × 2 square
    diamond = box(0, 0, size=(1, 1, 1), yaw=math.pi / 4)
    assert bev_iou(diamond, box(0, 0, size=(2, 2, 1))) == pytest.approx(1 / 4)
    assert bev_iou(box(0.2, -0.1, size=(2, 2, 1)), diamond) == pytest.approx(1 / 4)
    # against the unit square itself: an octagon, the square less four corners of the diamond
    # sticking out by h = √2/2 − 1/2 (area h² each): 1 − (√2 − 1)² = 2√2 − 2; IoU 1/√2
    inter = 2 * math.sqrt(2) - 2
    assert bev_iou(diamond, box(0, 0)) == pytest.approx(inter / (2 - inter))
    assert bev_iou(diamond, box(0, 0)) == pytest.approx(1 / math.sqrt(2))


def test_degenerate_boxes_do_not_divide_by_zero() -> None:
    flat = box(0, 0, size=(0, 0, 0))
    assert bev_iou(flat, flat) == 0.0
    assert iou_3d(flat, box(0, 0)) == 0.0


# --- AP|R40 ----------------------------------------------------------------------------------


def test_ap_r40_on_a_hand_made_list() -> None:
    # recall 1/2 at precision 1 (points 1..20), recall 1 at precision 2/3 (points 21..40)
    assert average_precision_r40([True, False, True], 2) == pytest.approx((20 * 1 + 20 * 2 / 3) / 40)
    assert average_precision_r40([True, False, True], 2) == pytest.approx(0.8333333)
    # a false positive first: precision 1/2 then 2/3 at full recall, envelope 2/3 everywhere
    assert average_precision_r40([False, True, True], 2) == pytest.approx(2 / 3)
    # recall never passes 1/4 of 4: points 1..10 at precision 1, the rest 0
    assert average_precision_r40([True, False], 4) == pytest.approx(10 / 40)
    # recall 1/3 lies between the points 13/40 (0.325) and 14/40 (0.35)
    assert average_precision_r40([True], 3) == pytest.approx(13 / 40)


def test_ap_r40_edge_cases() -> None:
    assert math.isnan(average_precision_r40([True], 0))
    assert average_precision_r40([], 3) == 0.0
    assert average_precision_r40(np.array([False, False]), 3) == 0.0
    assert average_precision_r40([True, True, True], 3) == pytest.approx(1.0)


# --- matching and kitti_metrics ----------------------------------------------------------------


def test_iou_06_counts_for_pedestrian_but_not_car() -> None:
    # length 1, shifted a quarter along it: 0.75 / 1.25 = 0.6
    assert bev_iou(box(0, 0), box(0.25, 0)) == pytest.approx(0.6)
    for label, expected in (("pedestrian", 1.0), ("car", 0.0), ("cyclist", 1.0), ("truck", 0.0)):
        frames = [FrameResult([box(0, 0, label=label)], [box(0.25, 0, label=label)])]
        m = kitti_metrics(frames, [label])
        row = m["per_class"][label]  # type: ignore[index]
        assert row["ap"] == pytest.approx(expected), label
        assert row["tp"] == int(expected) and row["gt"] == 1
        assert row["iou_threshold"] == IOU_THRESHOLDS[label]


def test_class_without_ground_truth_is_nan_and_left_out_of_map() -> None:
    frames = [FrameResult([box(0, 0, size=CAR)], [box(0, 0, size=CAR), box(20, 0, label="truck", score=0.9)])]
    m = kitti_metrics(frames, ["car", "truck", "pedestrian"])
    per_class = m["per_class"]
    assert math.isnan(per_class["truck"]["ap"])  # type: ignore[index]
    assert per_class["truck"]["gt"] == 0 and per_class["truck"]["tp"] == 0  # type: ignore[index]
    assert math.isnan(per_class["pedestrian"]["ap"])  # type: ignore[index]
    assert m["mAP"] == pytest.approx(1.0)
    assert math.isnan(kitti_metrics(frames, ["pedestrian"])["mAP"])  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["bev", "3d"])
def test_perfect_detections_give_map_one(kind: str) -> None:
    gt = [
        box(10, 0, 0.8, CAR, yaw=0.3),
        box(20, 5, 0.8, CAR, yaw=-1.2),
        box(-8, 3, 0.9, (0.8, 0.6, 1.8), label="pedestrian"),
        box(5, -6, 0.9, (1.8, 0.6, 1.7), yaw=2.0, label="cyclist"),
        box(30, 2, 1.5, (10, 2.5, 3.0), label="truck"),
    ]
    frames = [FrameResult(gt, list(gt)), FrameResult(gt[:2], list(gt[:2]))]
    m = kitti_metrics(frames, ["car", "truck", "pedestrian", "cyclist"], kind=kind)  # type: ignore[arg-type]
    assert m["mAP"] == pytest.approx(1.0)
    assert m["per_class"]["car"]["gt"] == 4 and m["per_class"]["car"]["tp"] == 4  # type: ignore[index]


def test_3d_iou_can_fail_where_bev_passes() -> None:
    # same footprint, half a height up: BEV IoU 1, 3D IoU 1/3 < 0.5
    frames = [FrameResult([box(0, 0, 0.9, (0.8, 0.6, 1.8), label="pedestrian")],
                          [box(0, 0, 1.8, (0.8, 0.6, 1.8), label="pedestrian")])]  # fmt: skip
    assert kitti_metrics(frames, ["pedestrian"], kind="bev")["mAP"] == pytest.approx(1.0)
    assert kitti_metrics(frames, ["pedestrian"], kind="3d")["mAP"] == 0.0


def test_greedy_matching_takes_the_highest_overlap_and_each_ground_truth_once() -> None:
    # two ground truths; the best detection overlaps the second one more (IoU 0.6 vs 1/3)
    gt = [box(0, 0, label="pedestrian"), box(0.75, 0, label="pedestrian")]
    dets = [box(0.5, 0, label="pedestrian", score=0.9), box(0.5, 0, label="pedestrian", score=0.8)]
    scores, flags, n_gt = match_class([FrameResult(gt, dets)], "pedestrian", 0.5)
    assert n_gt == 2 and scores.tolist() == [0.9, 0.8]
    # first takes gt 1 (IoU 0.6); the second's only candidate left is gt 0 at 1/3 < 0.5
    assert flags.tolist() == [True, False]
    # at a looser threshold the second detection gets gt 0
    _, flags, _ = match_class([FrameResult(gt, dets)], "pedestrian", 0.3)
    assert flags.tolist() == [True, True]


def test_duplicates_and_other_frames_and_classes() -> None:
    f0 = FrameResult([box(0, 0, size=CAR)], [box(0, 0, size=CAR, score=0.5), box(0, 0, size=CAR, score=0.7)])
    f1 = FrameResult([box(5, 5, size=CAR)], [box(0, 0, size=CAR, score=0.9), box(5, 5, size=CAR, label="truck")])
    scores, flags, n_gt = match_class([f0, f1], "car", 0.7)
    # order 0.9 (frame 1, in the wrong place), 0.7 (frame 0, TP), 0.5 (duplicate)
    assert n_gt == 2 and scores.tolist() == [0.9, 0.7, 0.5]
    assert flags.tolist() == [False, True, False]
    # precision 0, 1/2, 1/3; recall stays at 1/2: envelope 1/2 on points 1..20
    m = kitti_metrics([f0, f1], ["car"])
    assert m["mAP"] == pytest.approx(0.25)
    precision, recall = precision_recall_curve([f0, f1], "car")
    assert precision == pytest.approx([0.0, 0.5, 1 / 3])
    assert recall == pytest.approx([0.0, 0.5, 0.5])


def test_score_ties_break_by_frame_then_detection_index() -> None:
    # both frames have one car, each detection is right for frame 0 only
    f0 = FrameResult([box(0, 0, size=CAR)], [box(0, 0, size=CAR, score=0.5)])
    f1 = FrameResult([box(9, 9, size=CAR)], [box(0, 0, size=CAR, score=0.5)])
    _, flags, _ = match_class([f0, f1], "car", 0.7)
    assert flags.tolist() == [True, False]
    _, flags, _ = match_class([f1, f0], "car", 0.7)
    assert flags.tolist() == [False, True]


def test_bad_kind_and_unknown_class_are_rejected() -> None:
    frames = [FrameResult([box(0, 0)], [box(0, 0)])]
    with pytest.raises(ValueError, match="kind"):
        kitti_metrics(frames, ["car"], kind="2d")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bus"):
        kitti_metrics(frames, ["bus"])
    buses = [FrameResult([box(0, 0, label="bus")], [box(0.25, 0, label="bus")])]  # IoU 0.6
    assert kitti_metrics(buses, ["bus"], iou_thresholds={"bus": 0.5})["mAP"] == pytest.approx(1.0)
    assert kitti_metrics(buses, ["bus"], iou_thresholds={"bus": 0.65})["mAP"] == 0.0
    precision, recall = precision_recall_curve([FrameResult([], [])], "car")
    assert precision.size == 0 and recall.size == 0


def test_a_few_hundred_busy_frames_score_quickly() -> None:
    rng = np.random.default_rng(0)
    labels = ["car", "truck", "pedestrian", "cyclist"]
    sizes = {"car": CAR, "truck": (8.0, 2.5, 3.0), "pedestrian": (0.8, 0.6, 1.8), "cyclist": (1.8, 0.6, 1.7)}
    frames = []
    for _ in range(300):
        gt, dets = [], []
        for _ in range(30):
            label = labels[int(rng.integers(4))]
            x, y, yaw = rng.uniform(-50, 50), rng.uniform(-50, 50), rng.uniform(-math.pi, math.pi)
            gt.append(box(x, y, 1.0, sizes[label], yaw=yaw, label=label))
            jitter = rng.normal(0, 0.2, 3)
            dets.append(box(x + jitter[0], y + jitter[1], 1.0, sizes[label], yaw + jitter[2], label, rng.uniform()))
        frames.append(FrameResult(gt, dets))
    start = time.perf_counter()
    for kind in ("bev", "3d"):
        m = kitti_metrics(frames, labels, kind=kind)
        assert 0.0 < float(m["mAP"]) < 1.0  # type: ignore[arg-type]
    assert time.perf_counter() - start < 4.0  # ~0.3 s each on a laptop; generous for loaded CI
