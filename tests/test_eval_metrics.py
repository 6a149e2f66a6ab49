"""nuScenes-style metrics on hand-made detections whose scores are known."""

from __future__ import annotations

import math

import pytest

from fusion_stream.core import resources
from fusion_stream.core.msgs import Box3D
from fusion_stream.eval.metrics import FrameResult, average_precision, detection_metrics, match_class, siren_accuracy


def box(x: float, y: float, label: str = "car", score: float = 1.0, **kw: object) -> Box3D:
    return Box3D(center=(x, y, 0.8), size=(4.5, 1.9, 1.6), label=label, score=score, **kw)  # type: ignore[arg-type]


GT = [FrameResult([box(10, 0), box(20, 5), box(-8, 3, "pedestrian")], [])]


def test_perfect_detections_score_one() -> None:
    frames = [FrameResult(f.gt, list(f.gt)) for f in GT]
    m = detection_metrics(frames, ["car", "pedestrian", "truck"])
    assert m["mAP"] == pytest.approx(1.0)
    assert m["per_class"]["truck"]["ap"] != m["per_class"]["truck"]["ap"]  # no trucks: NaN, left out
    assert m["mean_tp"]["ate"] == 0.0 and m["mean_tp"]["ave"] == 0.0
    assert m["NDS"] == pytest.approx(1.0)


def test_a_centre_error_counts_only_at_looser_thresholds() -> None:
    dets = [box(11.5, 0), box(21.5, 5)]  # 1.5 m off
    m = detection_metrics([FrameResult(GT[0].gt, dets)], ["car"])
    row = m["per_class"]["car"]
    assert row["ap@0.5"] == 0 and row["ap@1"] == 0
    assert row["ap@2"] == pytest.approx(1.0) and row["ap@4"] == pytest.approx(1.0)
    assert row["ap"] == pytest.approx(0.5)
    assert row["ate"] == pytest.approx(1.5)


def test_false_positives_above_the_true_ones_lower_precision() -> None:
    dets = [box(40, 0, score=0.9), box(10, 0, score=0.8), box(20, 5, score=0.7)]
    matches, n_gt = match_class([FrameResult(GT[0].gt, dets)], "car", 2.0)
    assert [m.tp for m in matches] == [False, True, True] and n_gt == 2
    ap = average_precision(matches, n_gt)
    # precision 1/2 at recall 0.5 and 2/3 at recall 1: the envelope is 2/3 everywhere
    assert ap == pytest.approx((2 / 3 - 0.1) / 0.9, abs=1e-6)
    # the same false positive ranked last costs nothing
    last = [box(10, 0, score=0.9), box(20, 5, score=0.8), box(40, 0, score=0.1)]
    assert average_precision(*match_class([FrameResult(GT[0].gt, last)], "car", 2.0)) == pytest.approx(1.0)


def test_a_ground_truth_box_matches_only_once_and_only_its_class() -> None:
    dets = [box(10, 0, score=0.9), box(10.2, 0, score=0.8), box(20, 5, "truck")]
    matches, _ = match_class([FrameResult(GT[0].gt, dets)], "car", 2.0)
    assert [m.tp for m in matches] == [True, False]


def test_errors_in_size_yaw_velocity_and_siren() -> None:
    gt = [box(10, 0, yaw=0.0, velocity=(5.0, 0.0), attributes={"siren": True})]
    det = Box3D(
        center=(10, 0, 0.8),
        size=(4.5 * 0.5, 1.9, 1.6),
        yaw=math.pi / 2,
        velocity=(2.0, 4.0),
        label="car",
        attributes={"siren": False},
    )
    row = detection_metrics([FrameResult(gt, [det])], ["car"])["per_class"]["car"]
    assert row["ase"] == pytest.approx(0.5)
    assert row["aoe"] == pytest.approx(math.pi / 2)
    assert row["ave"] == pytest.approx(5.0)
    assert row["aae"] == 1.0
    acc, n, sirens = siren_accuracy([FrameResult(gt, [det])])
    assert (acc, n, sirens) == (0.0, 1, 1)


def test_no_detections_at_all_is_zero_not_an_error() -> None:
    m = detection_metrics(GT, ["car", "pedestrian"])
    assert m["mAP"] == 0.0
    assert math.isnan(siren_accuracy(GT)[0])


def test_in_view_keeps_the_boxes_the_camera_sees() -> None:
    from fusion_stream.core import calib
    from fusion_stream.eval.report import in_view

    camera = calib.load(resources.resolve("calib/sim_rig.yaml"))["camera_front"]
    ahead = Box3D(center=(20.0, 3.0, 0.8), size=(4.5, 1.9, 1.6), yaw=0.0, label="car")
    beside = Box3D(center=(2.0, 15.0, 0.8), size=(4.5, 1.9, 1.6), yaw=0.0, label="car")  # 80° left: outside 77° FOV
    behind = Box3D(center=(-20.0, 0.0, 0.8), size=(4.5, 1.9, 1.6), yaw=0.0, label="car")
    assert in_view([ahead, beside, behind], camera) == [ahead]
    assert in_view([], camera) == []
