"""Scoring detections against ground truth (nuScenes-style metrics, KITTI AP) and the reports built
on it. The metrics are pure; the reports run the model, so names load on first use."""

from typing import TYPE_CHECKING

from fusion_stream.core.lazy import lazy_exports

if TYPE_CHECKING:
    from fusion_stream.eval.bag_eval import BagEvaluation, EvalSetup, evaluate_bag, setup_from_launch
    from fusion_stream.eval.html import write_report
    from fusion_stream.eval.kitti import kitti_metrics
    from fusion_stream.eval.metrics import FrameResult, average_precision, detection_metrics
    from fusion_stream.eval.report import evaluate_split

__all__ = [
    "BagEvaluation",
    "EvalSetup",
    "FrameResult",
    "average_precision",
    "detection_metrics",
    "evaluate_bag",
    "evaluate_split",
    "kitti_metrics",
    "setup_from_launch",
    "write_report",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BagEvaluation": "fusion_stream.eval.bag_eval",
        "EvalSetup": "fusion_stream.eval.bag_eval",
        "FrameResult": "fusion_stream.eval.metrics",
        "average_precision": "fusion_stream.eval.metrics",
        "detection_metrics": "fusion_stream.eval.metrics",
        "evaluate_bag": "fusion_stream.eval.bag_eval",
        "evaluate_split": "fusion_stream.eval.report",
        "kitti_metrics": "fusion_stream.eval.kitti",
        "setup_from_launch": "fusion_stream.eval.bag_eval",
        "write_report": "fusion_stream.eval.html",
    },
)
