"""Fusion node: ``/sync/frames`` → the fusion network → ``Detections`` on ``/detections``.

It always works on the newest synced set and drops older ones rather than queueing (a late
detection is worth less than a fresh one); partial sets run with the missing branches zeroed.
``/diagnostics`` carries per-stage latency (pre-process, inference, decode), end-to-end latency
from the sensor stamp to publish (p50/p99), the backend, and how many sets were dropped.

Start-up is ordered so that a respawned node is back as soon as it can be: the model is loaded
from the cached ONNX export (no torch import on a machine without an NVIDIA GPU) and run once
before the node publishes or subscribes anything, so that neither its subscribers nor the
supervisor ever see a node that is up but not ready, and its first real set is not the slow one."""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusion_stream import calib, msgs
from fusion_stream.errors import CalibrationError, FusionStreamError, ParamError
from fusion_stream.launch import NodeTopics
from fusion_stream.node import Node
from fusion_stream.runner import run_node
from fusion_stream.wire import Envelope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Params:
    weights: str = "weights/fusion_sim.pt"
    """Trained weights; a relative path is looked up in the working directory, then the project."""
    backend: str = "auto"
    device: str = "auto"
    calib: str = "calib/sim_rig.yaml"
    input: str = "/sync/frames"
    output: str = "/detections"
    threshold: float = 0.3
    frame_id: str = "base_link"
    threads: int = 1
    """CPU threads for inference (0: the backend's default, every core). One leaves the other
    cores to the sensor processes on a small machine; raise it where inference has cores of its own."""
    inputs: dict[str, str] = field(default_factory=dict)
    """Model modality → synced-set input name, where they differ (e.g. {lidar: top_lidar})."""


def topics(p: Params) -> NodeTopics:
    return NodeTopics(inputs=(p.input,), outputs=(p.output,))


_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/proc/driver/nvidia/version")
"""Where an NVIDIA driver shows itself (``/dev/dxg``: WSL 2); CUDA cannot run without one."""


def resolve_device(device: str) -> str:
    """``auto`` is ``cpu`` where no NVIDIA driver is present, decided without importing torch
    (seconds of start-up, paid again at each respawn); otherwise the backend decides."""
    if device == "auto" and not any(Path(f).exists() for f in _GPU_DEVICE_FILES):
        return "cpu"
    return device


def setup(node: Node, p: Params) -> None:
    from fusion_stream.infer.backends import load
    from fusion_stream.infer.pipeline import FusionPipeline

    t0 = time.perf_counter()

    if not 0.0 <= p.threshold <= 1.0:
        raise ParamError("threshold", f"must be within [0, 1], got {p.threshold}")
    try:
        rig = calib.load(calib.resolve_path(p.calib))
    except CalibrationError as err:
        raise ParamError("calib", str(err)) from err
    try:
        backend = load(
            calib.resolve_path(p.weights), backend=p.backend, device=resolve_device(p.device), threads=p.threads
        )
    except FusionStreamError as err:
        raise ParamError("weights" if "weights" in str(err) else "backend", str(err)) from err
    pipeline = FusionPipeline(backend, rig, threshold=p.threshold, inputs=p.inputs, frame_id=p.frame_id)
    first_ms = pipeline.warm_up()
    log.info(
        "fusion model %s on %s (%s): ready in %.2f s (first run %.0f ms)",
        p.weights,
        backend.name,
        backend.device,
        time.perf_counter() - t0,
        first_ms,
    )
    # only now is the node visible on its topics: a subscriber or the supervisor sees a ready node
    pub = node.publisher(p.output, msgs.Detections)
    window: collections.deque[tuple[float, float, float, float, int]] = collections.deque(maxlen=100)
    counts = {"frames": 0, "partial": 0, "failed": 0}

    def on_frame(env: Envelope) -> None:
        frame = env.message
        if not isinstance(frame, msgs.SyncedFrame):
            return
        try:
            det, times = pipeline.process(frame)
        except FusionStreamError as err:
            counts["failed"] += 1
            log.warning("set at %d ns skipped: %s", frame.stamp_ns, err)
            return
        pub.publish(det)
        counts["frames"] += 1
        counts["partial"] += bool(frame.missing)
        sensor_stamp = min((m.stamp_ns for ms in frame.members.values() for m in ms), default=frame.stamp_ns)
        e2e = (node.clock.now_ns() - sensor_stamp) / 1e6
        window.append((times.preprocess_ms, times.inference_ms, times.decode_ms, e2e, len(det.boxes)))

    sub = node.subscribe(p.input, on_frame, latest=True)

    def report() -> dict[str, msgs.ScalarValue]:
        values: dict[str, msgs.ScalarValue] = {
            "backend": backend.name,
            "frames": counts["frames"],
            "partial_sets": counts["partial"],
            "failed_sets": counts["failed"],
            "dropped_sets": sub.stats.superseded,
        }
        if window:
            a = np.array(window)
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

    node.add_diagnostics(report)


if __name__ == "__main__":
    raise SystemExit(run_node("fusion", Params, setup))
