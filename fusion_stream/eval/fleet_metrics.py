"""A fleet's metrics from what each bag's evaluation sends back (pure: no I/O, no model).

Workers return every scored frame (detections, ground truth, stage times), not per-bag AP: the
fleet's AP, NDS and TP errors are computed once over all frames of all bags, in the order the bags
were named, so they equal a serial run over the same bags to the last digit whichever worker
finished first. Frames cross process boundaries as plain tuples (``Box3D`` holds a read-only
mapping, which pickle refuses)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fusion_stream.core.msgs import Box3D
from fusion_stream.eval.metrics import TP_THRESHOLD, FrameResult, match_class
from fusion_stream.eval.scores import ground_truth_scores, percentiles
from fusion_stream.model.decode import DEFAULT_THRESHOLD

PlainBox = tuple[
    tuple[float, float, float], tuple[float, float, float], float, tuple[float, float], str, float, int, dict[str, Any]
]


def plain_box(b: Box3D) -> PlainBox:
    return (b.center, b.size, b.yaw, b.velocity, b.label, b.score, b.track_id, dict(b.attributes))


def box_from_plain(p: PlainBox) -> Box3D:
    center, size, yaw, velocity, label, score, track_id, attributes = p
    return Box3D(
        center=center,
        size=size,
        yaw=yaw,
        velocity=velocity,
        label=label,
        score=score,
        track_id=track_id,
        attributes=attributes,
    )


@dataclass(frozen=True)
class FrameScore:
    """What the fleet keeps of one synced set: no sensor data, so thousands cross the wire cheaply."""

    stamp_ns: int
    detections: tuple[PlainBox, ...]
    gt: tuple[PlainBox, ...] | None
    times_ms: tuple[float, float, float]
    partial: bool
    misses: int = 0
    false_alarms: int = 0

    @classmethod
    def of(
        cls,
        stamp_ns: int,
        detections: Sequence[Box3D],
        gt: Sequence[Box3D] | None,
        times_ms: tuple[float, float, float],
        partial: bool,
        classes: Sequence[str],
    ) -> FrameScore:
        misses, false_alarms = (0, 0) if gt is None else frame_errors(gt, detections, classes)
        return cls(
            stamp_ns,
            tuple(plain_box(b) for b in detections),
            None if gt is None else tuple(plain_box(b) for b in gt),
            times_ms,
            partial,
            misses,
            false_alarms,
        )

    def result(self) -> FrameResult:
        assert self.gt is not None
        return FrameResult([box_from_plain(b) for b in self.gt], [box_from_plain(b) for b in self.detections])


def frame_errors(gt: Sequence[Box3D], detections: Sequence[Box3D], classes: Sequence[str]) -> tuple[int, int]:
    """Missed objects and false alarms of one frame: detections at the display threshold matched
    within the TP distance, class by class (what a person looking at the picture would count)."""
    shown = [d for d in detections if d.score >= DEFAULT_THRESHOLD]
    frame = [FrameResult(gt, shown)]
    misses = false_alarms = 0
    for cls in classes:
        matches, n_gt = match_class(frame, cls, TP_THRESHOLD)
        hits = sum(m.tp for m in matches)
        misses += n_gt - hits
        false_alarms += len(matches) - hits
    return misses, false_alarms


@dataclass
class BagOutcome:
    """One bag's part of a fleet evaluation, as a worker returns it: its frames and its own
    metrics, or the reason it failed; its report's files travel as bytes (the workers of a
    cluster need not see the output folder)."""

    index: int
    path: str
    name: str
    error: str = ""
    frames: list[FrameScore] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    files: dict[str, bytes] = field(default_factory=dict)
    pictures: dict[int, list[str]] = field(default_factory=dict)
    """Stamp of a frame among the bag's worst → names in ``files`` of its pictures."""
    log: str = ""
    worker: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def scored_frames(outcomes: Sequence[BagOutcome]) -> list[FrameResult]:
    """Every frame with ground truth, bags in the order named (``index``), frames in bag order."""
    return [f.result() for o in sorted(outcomes, key=lambda o: o.index) if o.ok for f in o.frames if f.gt is not None]


def fleet_metrics(outcomes: Sequence[BagOutcome], classes: Sequence[str], *, worst: int = 6) -> dict[str, Any]:
    """metrics.json of a fleet: the bag metrics' keys over all frames, plus a row per bag, the
    failed bags with their reason, and the ``worst`` frames (most misses + false alarms)."""
    ordered = sorted(outcomes, key=lambda o: o.index)
    good = [o for o in ordered if o.ok]
    frames = [f for o in good for f in o.frames]
    scored = scored_frames(ordered)
    bag_s = sum(float(o.metrics.get("bag_duration_s", 0.0)) for o in good)
    out: dict[str, Any] = {
        "bags": len(ordered),
        "backend": next((o.metrics.get("backend", "") for o in good), ""),
        "evaluated": len(good),
        "failed": [{"bag": o.path, "name": o.name, "reason": o.error} for o in ordered if not o.ok],
        "sets": len(frames),
        "partial_sets": sum(f.partial for f in frames),
        "frames_with_ground_truth": len(scored),
        "bag_duration_s": bag_s,
        "latency_ms": {
            "preprocess": percentiles([f.times_ms[0] for f in frames]),
            "inference": percentiles([f.times_ms[1] for f in frames]),
            "decode": percentiles([f.times_ms[2] for f in frames]),
            "total": percentiles([sum(f.times_ms) for f in frames]),
        },
        "per_bag": [_bag_row(o) for o in ordered],
        "worst_frames": worst_frames(ordered, worst),
    }
    if scored:
        out.update(ground_truth_scores(scored, classes))
    else:
        out["ground_truth"] = "none: no bag has ground truth matching any synced set, so only latency is reported"
    return out


def _bag_row(o: BagOutcome) -> dict[str, Any]:
    m: Mapping[str, Any] = o.metrics
    total = m.get("latency_ms", {}).get("total", {})
    nus = m.get("nuscenes", {})
    return {
        "bag": o.path,
        "name": o.name,
        "ok": o.ok,
        "error": o.error,
        "sets": m.get("sets", 0),
        "partial_sets": m.get("partial_sets", 0),
        "frames_with_ground_truth": m.get("frames_with_ground_truth", 0),
        "mAP": nus.get("mAP", math.nan),
        "NDS": nus.get("NDS", math.nan),
        "latency_p50_ms": total.get("p50", math.nan),
        "latency_p99_ms": total.get("p99", math.nan),
        "bag_duration_s": m.get("bag_duration_s", 0.0),
        "wall_s": m.get("wall_s", 0.0),
        "worker": o.worker,
    }


def worst_frames(outcomes: Sequence[BagOutcome], count: int) -> list[dict[str, Any]]:
    """The ``count`` frames with the most misses + false alarms across the fleet (ties: the bag
    named first, the earlier frame), with the names of their pictures where the worker drew them."""
    ranked = sorted(
        ((f.misses + f.false_alarms, o.index, i, o, f) for o in outcomes if o.ok for i, f in enumerate(o.frames)),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    return [
        {
            "bag": o.path,
            "name": o.name,
            "set": i,
            "offset_s": (f.stamp_ns - o.frames[0].stamp_ns) / 1e9,
            "stamp_ns": f.stamp_ns,
            "misses": f.misses,
            "false_alarms": f.false_alarms,
            "pictures": [f"{o.name}/{p}" for p in o.pictures.get(f.stamp_ns, [])],
        }
        for errors, _, i, o, f in ranked[:count]
        if errors > 0
    ]
