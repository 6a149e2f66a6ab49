"""One synced set in, detections out: pre-process, infer, decode, with per-stage timings.

The fusion node wraps this; evaluation and benchmarks call it directly."""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping

import numpy as np

from fusion_stream.core import calib, msgs
from fusion_stream.infer.backends import Backend, OnnxRuntimeBackend
from fusion_stream.infer.detector import StageTimes
from fusion_stream.model import preprocess
from fusion_stream.model.config import MODALITIES, ModelConfig
from fusion_stream.model.decode import DEFAULT_THRESHOLD, assign_siren, to_boxes


def decode_frame(
    out: Mapping[str, np.ndarray],
    inputs: Mapping[str, np.ndarray],
    geometry: preprocess.RigGeometry,
    cfg: ModelConfig,
    threshold: float,
) -> tuple[msgs.Box3D, ...]:
    """Batch item 0's detections down to ``threshold``, best first, the siren attribute given
    (among those scoring at least the default threshold) to the vehicle the siren is heard from."""
    boxes = to_boxes(out, cfg, threshold=threshold)
    if inputs["present"][0, 3] == 0 or geometry.microphones is None:
        return boxes
    origin = geometry.microphones.mean(axis=0)
    confident = tuple(b for b in boxes if b.score >= DEFAULT_THRESHOLD)
    rest = boxes[len(confident) :]  # boxes are sorted by score
    heard = assign_siren(
        confident, inputs["audio"][0], float(out["audio_siren"][0]), (origin[0], origin[1]), cfg.azimuth_bins
    )
    return heard + rest


class FusionPipeline:
    """The project's own network as a :class:`~fusion_stream.infer.detector.Detector`. ``inputs``
    maps the model's modalities to the synced set's input names (default: same)."""

    def __init__(
        self,
        backend: Backend,
        rig: calib.Rig,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        inputs: Mapping[str, str] | None = None,
        frame_id: str = "base_link",
    ) -> None:
        self.backend = backend
        self.geometry = preprocess.RigGeometry.from_rig(rig)
        self.threshold = threshold
        self.inputs = {m: (inputs or {}).get(m, m) for m in MODALITIES}
        self.frame_id = frame_id
        self.name = f"{backend.name} ({backend.device})"
        self._trim = isinstance(backend, OnnxRuntimeBackend) and backend.variable_pillars

    def warm_up(self) -> float:
        """Compile the pre-processing kernels and run the network once on an empty set; the
        milliseconds it took. A backend's first run allocates and plans (much slower than the next,
        on a GPU above all): a node does it before it subscribes, so its first real set is not the
        one that pays."""
        t0 = time.perf_counter()
        preprocess.compile_kernels()  # else the first real set compiles them: a second, on a small machine
        self.backend.run(preprocess.batch([preprocess.empty_inputs(self.backend.config)]))
        return (time.perf_counter() - t0) * 1e3

    def present(self, frame: msgs.SyncedFrame) -> list[str]:
        return [m for m, name in self.inputs.items() if frame.members.get(name)]

    def process(self, frame: msgs.SyncedFrame) -> tuple[msgs.Detections, StageTimes]:
        t0 = time.perf_counter()
        members = {m: frame.members[name] for m, name in self.inputs.items() if name in frame.members}
        cfg = self.backend.config
        inputs = preprocess.batch([preprocess.prepare(members, self.geometry, cfg)])
        t1 = time.perf_counter()
        out = self.backend.run(preprocess.trim_pillars(inputs, cfg) if self._trim else inputs)
        t2 = time.perf_counter()
        boxes = decode_frame(out, inputs, self.geometry, cfg, self.threshold)
        det = msgs.Detections(stamp_ns=frame.stamp_ns, frame_id=self.frame_id, boxes=boxes)
        t3 = time.perf_counter()
        return det, StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)


class PipelineReport:
    """What the fusion node reports per set run: counts, per-stage and end-to-end latency (from
    the earliest sensor stamp of the set to the detections' publish) over the last 100 sets."""

    def __init__(self, backend_name: str) -> None:
        self.backend_name = backend_name
        self.frames = 0
        self.partial = 0
        self.failed = 0
        self._window: collections.deque[tuple[float, float, float, float, int]] = collections.deque(maxlen=100)

    def ran(self, frame: msgs.SyncedFrame, det: msgs.Detections, times: StageTimes, now_ns: int) -> None:
        self.frames += 1
        self.partial += bool(frame.missing)
        sensor_stamp = min((m.stamp_ns for ms in frame.members.values() for m in ms), default=frame.stamp_ns)
        e2e = (now_ns - sensor_stamp) / 1e6
        self._window.append((times.preprocess_ms, times.inference_ms, times.decode_ms, e2e, len(det.boxes)))

    def values(self, skipped: int) -> dict[str, msgs.ScalarValue]:
        """``skipped``: sets never run because a newer one was ready when the model was free."""
        values: dict[str, msgs.ScalarValue] = {
            "backend": self.backend_name,
            "frames": self.frames,
            "partial_sets": self.partial,
            "failed_sets": self.failed,
            "skipped_sets": skipped,
        }
        if self._window:
            a = np.array(self._window)
            values.update(
                {
                    "preprocess_ms_p50": round(float(np.percentile(a[:, 0], 50)), 2),
                    "inference_ms_p50": round(float(np.percentile(a[:, 1], 50)), 2),
                    "decode_ms_p50": round(float(np.percentile(a[:, 2], 50)), 2),
                    "e2e_ms_p50": round(float(np.percentile(a[:, 3], 50)), 1),
                    "e2e_ms_p99": round(float(np.percentile(a[:, 3], 99)), 1),
                    "detections_per_frame": round(float(a[:, 4].mean()), 2),
                }
            )
        return values
