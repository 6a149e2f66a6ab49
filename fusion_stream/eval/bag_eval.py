"""Score a recorded bag: replay it through the graph's own sync and fusion code, in lockstep.

The sync stage and fusion pipeline are the ones the live nodes run, configured from the same
launch file (``launch/sim.yaml`` by default), but driven in-process by the bag's log times: each
message is offered at its recorded arrival time and deadlines follow bag time, so the same bag
and model give the same synced sets, detections and metrics on every run, as fast as the
pipeline allows. Detections are matched against ``/ground_truth/objects`` at the set's stamp.
The model is any the fusion node can run (weights, a model card, a built-in name); with
``detections_out`` every set's detections are written to an MCAP file as the recorder writes
them (``/detections`` and its markers), logged at the bag time the set was complete.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion_stream.bag.mapping import StreamStats, TopicMap, messages
from fusion_stream.bag.reader import Bag
from fusion_stream.bag.writer import BagWriter
from fusion_stream.core import calib, msgs, resources
from fusion_stream.errors import FormatError, UsageError
from fusion_stream.eval.metrics import FrameResult
from fusion_stream.eval.report import EVAL_THRESHOLD
from fusion_stream.eval.scores import ground_truth_scores, percentiles
from fusion_stream.graph import launch
from fusion_stream.infer.detector import Detector
from fusion_stream.infer.open import locate, open_detector, rig_warning
from fusion_stream.infer.pipeline import FusionPipeline
from fusion_stream.model.config import ModelConfig
from fusion_stream.model.decode import in_range
from fusion_stream.runtime import params
from fusion_stream.sync.settings import Params as SyncParams
from fusion_stream.sync.settings import config_from
from fusion_stream.sync.stage import SyncStage

log = logging.getLogger(__name__)

GROUND_TRUTH_TOPIC = "/ground_truth/objects"
DEFAULT_LAUNCH = "sim"
"""The shipped graph (``launch/sim.yaml``) whose settings an evaluation uses by default."""
_WEIGHTS = "weights/fusion_sim.pt"
_CALIB = "calib/sim_rig.yaml"
GT_TOLERANCE_NS = 20_000_000
"""Ground truth is matched to a set whose stamp is within this much of its own."""


@dataclass(frozen=True)
class EvalSetup:
    """What the graph's launch file says about sync and fusion (CLI flags override)."""

    sync: SyncParams
    weights: str
    """The model: a weights file, a model card or a built-in name (see ``infer.open``)."""
    backend: str
    calib: str
    inputs: Mapping[str, str]
    ground_truth_topic: str = GROUND_TRUTH_TOPIC
    precision: str = "fp32"


def setup_from_launch(
    path: Path | str,
    *,
    weights: str | None = None,
    backend: str | None = None,
    args: Mapping[str, Any] | None = None,
    precision: str | None = None,
) -> EvalSetup:
    """The sync and fusion settings of a launch file (with ``args`` as ``NAME:=VALUE`` would give).
    ``weights``: any model spec, overriding the fusion node's ``model`` (or else ``weights``)."""
    graph = launch.load(launch.find(path), args, check_nodes=False)  # the sensors' files need not be here
    folder = Path(graph.path).parent
    by_type = {n.type: n for n in graph.nodes}
    if "fusion" not in by_type:
        raise UsageError(f"{path}: no fusion node in the graph; evaluation needs a sync and a fusion node")
    fusion_spec = by_type["fusion"]
    p = dict(fusion_spec.params)
    if "sync" in by_type:
        sync = params.convert(SyncParams, by_type["sync"].params, path=str(path))
    elif p.get("sync") is not None:  # the fusion node synchronizes in its own process
        sync = params.convert(SyncParams, {"calib": p.get("calib", ""), **p["sync"]}, path=str(path))
    else:
        raise UsageError(f"{path}: no sync node, nor a sync block in the fusion node; evaluation needs one")
    gt_topic = GROUND_TRUTH_TOPIC
    if "ground_truth" in by_type:
        gt_topic = by_type["ground_truth"].remap.get(GROUND_TRUTH_TOPIC, GROUND_TRUTH_TOPIC)
    return EvalSetup(
        sync=sync,
        weights=locate(weights) if weights else locate(str(p.get("model") or p.get("weights", _WEIGHTS)), folder),
        backend=backend or str(p.get("backend", "auto")),
        calib=str(resources.resolve(p.get("calib", sync.calib or _CALIB), folder)),
        inputs=dict(p.get("inputs", {})),
        ground_truth_topic=gt_topic,
        precision=precision or str(p.get("precision", "fp32")),
    )


@dataclass
class FrameRecord:
    stamp_ns: int
    frame: msgs.SyncedFrame
    detections: tuple[msgs.Box3D, ...]
    gt: tuple[msgs.Box3D, ...] | None
    times_ms: tuple[float, float, float]


@dataclass
class BagEvaluation:
    """The result of evaluating a bag: per-frame records, metrics, stream statistics and timing."""

    path: Path
    frames: list[FrameRecord] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    stream: StreamStats = field(default_factory=StreamStats)
    wall_s: float = 0.0
    bag_s: float = 0.0
    backend: str = ""
    classes: tuple[str, ...] = ()
    warning: str | None = None
    """Why the model may not suit the bag's rig (it was trained on another), for the report."""

    @property
    def has_ground_truth(self) -> bool:
        return any(f.gt is not None for f in self.frames)


def _nearest_gt(gt: dict[int, msgs.Detections], stamp_ns: int) -> msgs.Detections | None:
    if stamp_ns in gt:
        return gt[stamp_ns]
    best = min(gt, key=lambda s: abs(s - stamp_ns), default=None)
    if best is not None and abs(best - stamp_ns) <= GT_TOLERANCE_NS:
        return gt[best]
    return None


def load_model(setup: EvalSetup, *, threads: int = 1) -> Detector:
    """The model an evaluation runs: the one place it is opened (a fleet worker opens it once
    and passes it to :func:`evaluate_bag` for every bag)."""
    return open_detector(
        setup.weights,
        calib.load(setup.calib),
        backend=setup.backend,
        threads=threads,
        threshold=EVAL_THRESHOLD,
        inputs=setup.inputs,
        precision=setup.precision,
    )


def evaluate_bag(
    path: Path | str,
    setup: EvalSetup,
    *,
    topic_map: TopicMap | None = None,
    threads: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    detections_out: Path | str | None = None,
    model: Detector | None = None,
) -> BagEvaluation:
    """Run sync + fusion over the bag in lockstep and score the detections (see module doc).
    ``model``: one already loaded with :func:`load_model` (else it is loaded here, after the bag
    was found readable)."""
    result = BagEvaluation(Path(path))
    rig = calib.load(setup.calib)
    stage = SyncStage(config_from(setup.sync))
    wanted = set(stage.topics) | {setup.ground_truth_topic}
    gt: dict[int, msgs.Detections] = {}
    with Bag(path) as bag:
        info = bag.info()  # a damaged, hostile or foreign bag is refused before the model loads (seconds)
        tmap = topic_map or TopicMap()
        tmap.check(t.topic for t in info.topics)
        recorded = {tmap.rename(t.topic) for t in info.topics}
        absent = sorted(set(stage.topics) - recorded)
        if absent == sorted(stage.topics):
            raise FormatError(
                f"{bag.path}: none of the sync inputs {sorted(stage.topics)} is in the bag; it has {sorted(recorded)}"
            )
        if absent:
            log.warning("%s: no %s in the bag; those inputs will be missing from every set", bag.path, absent)
        detector = model if model is not None else load_model(setup, threads=threads)
        own = isinstance(detector, FusionPipeline)
        # the network's grid bounds what is scored; another model is scored over the same area
        cfg = detector.backend.config if isinstance(detector, FusionPipeline) else ModelConfig()
        result.backend = detector.backend.name if isinstance(detector, FusionPipeline) else detector.name
        result.classes = tuple(cfg.classes)
        result.warning = rig_warning(setup.weights, rig)
        if result.warning:
            log.warning("%s", result.warning)
        detector.warm_up()  # compilation and first-run allocation are not a set's latency
        t0 = time.perf_counter()
        names = [t.topic for t in info.topics if tmap.rename(t.topic) in wanted]
        total = sum(t.count for t in info.topics if t.topic in names)
        result.bag_s = info.duration_s
        # Reading, decoding and aligning (one thread) overlap with inference (this thread): on
        # two cores that is most of the way to twice as fast, and the order of sets is unchanged.
        sets: queue.Queue[tuple[msgs.SyncedFrame, int] | BaseException | None] = queue.Queue(maxsize=16)

        def produce() -> None:
            try:
                last_ns = 0
                for n, item in enumerate(messages(bag, tmap, topics=names, stats=result.stream), start=1):
                    last_ns = item.log_ns
                    if item.topic == setup.ground_truth_topic:
                        if isinstance(item.message, msgs.Detections):
                            gt[item.message.stamp_ns] = item.message
                    else:
                        for e in stage.poll(item.log_ns) + stage.offer(item.topic, item.message, item.log_ns):
                            sets.put((e.frame, item.log_ns))
                    if on_progress is not None and n % 50 == 0:
                        on_progress(n, total)
                for e in stage.poll(last_ns + 10**10):  # the deadlines of the last sets pass
                    sets.put((e.frame, last_ns))
                sets.put(None)
            except BaseException as err:  # noqa: BLE001  # handed to the consumer, which raises it
                sets.put(err)

        reader = threading.Thread(target=produce, name="bag-reader", daemon=True)
        reader.start()
        processed: list[tuple[msgs.SyncedFrame, msgs.Detections, tuple[float, float, float], int]] = []
        while (item := sets.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            frame, log_ns = item
            det, times = detector.process(frame)
            if not own:
                det = msgs.Detections(
                    stamp_ns=det.stamp_ns, frame_id=det.frame_id, boxes=tuple(b for b in det.boxes if in_range(b, cfg))
                )
            processed.append((frame, det, (times.preprocess_ms, times.inference_ms, times.decode_ms), log_ns))
        reader.join()
    for frame, det, stage_ms, _ in processed:
        truth = _nearest_gt(gt, frame.stamp_ns)
        boxes = None if truth is None else tuple(b for b in truth.boxes if in_range(b, cfg))
        result.frames.append(FrameRecord(frame.stamp_ns, frame, det.boxes, boxes, stage_ms))
    if detections_out is not None:
        write_detections(detections_out, rig, [(det, log_ns) for _, det, _, log_ns in processed])
    result.wall_s = time.perf_counter() - t0
    result.metrics = score(result, cfg.classes)
    return result


DETECTIONS_TOPIC = "/detections"


def write_detections(path: Path | str, rig: calib.Rig, detections: list[tuple[msgs.Detections, int]]) -> Path:
    """Every set's detections (with their markers, and the rig on ``/tf_static``) as the
    recorder writes them, each logged at the given bag time; written under a temporary name and
    renamed when complete, so a failed run leaves no half file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part.mcap")
    with BagWriter(tmp, markers=True) as writer:
        if detections:
            writer.write_tf_static(rig, detections[0][1])
        for det, log_ns in detections:
            writer.write(DETECTIONS_TOPIC, det, log_ns)
    tmp.replace(path)
    return path


def score(result: BagEvaluation, classes: tuple[str, ...]) -> dict[str, Any]:
    """metrics.json content: detection metrics where there is ground truth, latency always."""
    frames = result.frames
    scored = [FrameResult(f.gt, f.detections) for f in frames if f.gt is not None]
    out: dict[str, Any] = {
        "bag": str(result.path),
        "backend": result.backend,
        **({"model_warning": result.warning} if result.warning else {}),
        "sets": len(frames),
        "partial_sets": sum(bool(f.frame.missing) for f in frames),
        "frames_with_ground_truth": len(scored),
        "latency_ms": {
            "preprocess": percentiles([f.times_ms[0] for f in frames]),
            "inference": percentiles([f.times_ms[1] for f in frames]),
            "decode": percentiles([f.times_ms[2] for f in frames]),
            "total": percentiles([sum(f.times_ms) for f in frames]),
        },
        "bag_duration_s": result.bag_s,
        "wall_s": result.wall_s,
        "speed_x_realtime": result.bag_s / result.wall_s if result.wall_s > 0 else math.nan,
        "skipped_types": dict(result.stream.skipped_types),
        "failed_messages": dict(result.stream.failed),
    }
    if not scored:
        out["ground_truth"] = "none: the bag has no ground truth matching any synced set, so only latency is reported"
        return out
    out.update(ground_truth_scores(scored, classes))
    return out
