"""Fusion node: synced sets → a detector → ``Detections`` on ``/detections``.

The detector is the project's fusion network (``weights``), or any model named by ``model``: a
weights file, a model card (a user's ONNX detector) or a built-in name (``cluster``).

The sets come from ``/sync/frames`` (a sync node), or, with a ``sync:`` block in the parameters
(the sync node's keys), from the sync stage run in this process on the sensor topics themselves:
each sensor frame is then received and decoded once, here, instead of by the sync node and again
by this node. ``publish_sets: /sync/frames`` also publishes those sets, for a recorder or the demo.

It always works on the newest synced set and skips older ones rather than queueing (a late
detection is worth less than a fresh one); partial sets run with the missing branches zeroed.
``/diagnostics`` carries per-stage latency (pre-process, inference, decode), end-to-end latency
from the sensor stamp to publish (p50/p99), the backend, and how many sets were skipped; with the
in-process sync, also the sync's own values (``sync.*``: partial sets, late and wrong-type
messages, stand-ins) and its status, as the sync node reports them.

Start-up is ordered so that a respawned node is back as soon as it can be: the model is loaded
from the cached ONNX export (no torch import on a machine without an NVIDIA GPU) and run once
before the node publishes or subscribes anything, so that neither its subscribers nor the
supervisor ever see a node that is up but not ready, and its first real set is not the slow one."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from fusion_stream.core import calib, msgs, resources
from fusion_stream.core.wire import Envelope, check_topic
from fusion_stream.errors import (
    BackendUnavailableError,
    CalibrationError,
    FusionStreamError,
    ParamError,
    TopicNameError,
)
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics
from fusion_stream.runtime.runner import run_node
from fusion_stream.sync.live import NewestSet, arrival_ns
from fusion_stream.sync.settings import EmbeddedParams, config_from
from fusion_stream.sync.stage import Emitted, SyncConfig, SyncStage

if TYPE_CHECKING:
    from fusion_stream.infer.backends import Backend
    from fusion_stream.infer.detector import Detector
    from fusion_stream.infer.pipeline import PipelineReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Params:
    weights: str = "weights/fusion_sim.pt"
    """Trained weights; a relative path is looked up in the working directory, then the project."""
    model: str = ""
    """A weights file (.pt), a model card (.yaml) or a built-in name (fusion_sim, lidar_only,
    cluster); when set it wins over ``weights``."""
    backend: str = "auto"
    device: str = "auto"
    precision: str = "fp32"
    """``fp32``, or ``int8``: the network quantized for ONNX Runtime on CPU (made and cached on first
    use; see the README's figures before choosing it)."""
    calib: str = "calib/sim_rig.yaml"
    input: str = "/sync/frames"
    output: str = "/detections"
    threshold: float | None = None
    """Lowest score published (none: the model's own, a card's score_threshold or 0.3)."""
    frame_id: str = "base_link"
    threads: int = 1
    """CPU threads for inference (0: the backend's default, every core). One leaves the other
    cores to the sensor processes on a small machine; raise it where inference has cores of its own."""
    inputs: dict[str, str] = field(default_factory=dict)
    """Model modality → synced-set input name, where they differ (e.g. {lidar: top_lidar})."""
    sync: EmbeddedParams | None = None
    """Synchronize in this process, with the sync node's parameters (``inputs``, ``deadline_ms``,
    ``calib`` ...; ``calib`` defaults to this node's): the node subscribes to the inputs' topics
    instead of ``input``."""
    publish_sets: str = ""
    """With ``sync``: a topic on which to publish every set as well (``/sync/frames``); empty: none."""


def topics(p: Params) -> NodeTopics:
    if p.sync is None:
        return NodeTopics(inputs=(p.input,), outputs=(p.output,))
    sets = (p.publish_sets,) if p.publish_sets else ()
    return NodeTopics(inputs=tuple(i.topic for i in p.sync.inputs), outputs=(p.output, *sets))


def sync_config(p: Params) -> SyncConfig | None:
    """The in-process sync's stage config (None: sets come from ``input``); ParamError if bad."""
    if p.sync is None:
        if p.publish_sets:
            raise ParamError("publish_sets", "publishes the sets of the in-process sync: give a sync block too")
        return None
    if p.publish_sets:
        try:
            check_topic(p.publish_sets)
        except TopicNameError as err:
            raise ParamError("publish_sets", str(err)) from err
    sync = p.sync if p.sync.calib else dataclasses.replace(p.sync, calib=p.calib)
    try:
        return config_from(sync)
    except ParamError as err:
        raise ParamError(f"sync.{err.key}", err.reason) from err


_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
_MAX_BACKLOG_S = 0.1
"""The in-process sync offers what it read at least this often, even while more keeps coming."""

_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/proc/driver/nvidia/version")
"""Where an NVIDIA driver shows itself (``/dev/dxg``: WSL 2); CUDA cannot run without one."""


def resolve_device(device: str) -> str:
    """``auto`` is ``cpu`` where no NVIDIA driver is present, decided without importing torch
    (seconds of start-up, paid again at each respawn); otherwise the backend decides."""
    if device == "auto" and not any(Path(f).exists() for f in _GPU_DEVICE_FILES):
        return "cpu"
    return device


def check(p: Params) -> None:
    """What can be judged before the node starts, without loading the model (``fusion-stream
    launch`` calls it; so does setup): threshold, the sync block, the rig file (found and parsed),
    the model (a readable weights file, a valid card whose ONNX matches it, a built-in name) and
    the backend's name."""
    _checked(p)


def model_key(p: Params) -> tuple[str, str]:
    """The parameter naming the model (``model`` when set, else ``weights``) and its value."""
    return ("model", p.model) if p.model else ("weights", p.weights)


def _checked(p: Params) -> tuple[SyncConfig | None, calib.Rig]:
    from fusion_stream.infer import backends
    from fusion_stream.infer.artifacts import check_precision
    from fusion_stream.infer.open import check_spec

    if p.threshold is not None and not 0.0 <= p.threshold <= 1.0:
        raise ParamError("threshold", f"must be within [0, 1], got {p.threshold}")
    config = sync_config(p)
    try:
        rig = calib.load(resources.resolve(p.calib))
    except CalibrationError as err:
        raise ParamError("calib", str(err)) from err
    if p.backend not in backends.CHOICES:
        raise ParamError("backend", f"must be one of {', '.join(backends.CHOICES)}, got {p.backend!r}")
    check_precision(p.precision)
    key, spec = model_key(p)
    try:
        check_spec(spec, p.backend, p.precision)
    except BackendUnavailableError as err:
        raise ParamError("backend", str(err)) from err
    except FusionStreamError as err:
        if _names_precision(err):
            raise
        raise ParamError(key, str(err)) from err
    return config, rig


def open_backend(p: Params) -> Backend:
    """The inference backend of ``weights`` (the project's network); a ParamError names
    ``backend`` when the backend (or its device) cannot run here, ``weights`` when the model is at fault."""
    from fusion_stream.infer.backends import load

    weights = resources.resolve(p.weights)
    try:
        return load(
            weights, backend=p.backend, device=resolve_device(p.device), threads=p.threads, precision=p.precision
        )
    except BackendUnavailableError as err:
        raise ParamError("backend", str(err)) from err
    except FusionStreamError as err:  # the weights (or their export) are missing, damaged or unusable
        raise ParamError("weights", str(err)) from err


def open_model(p: Params, rig: calib.Rig) -> Detector:
    """The detector the parameters ask for; a ParamError names ``backend`` when the backend (or
    its device) cannot run here, ``model``/``weights`` when the model is at fault."""
    from fusion_stream.infer.open import open_detector

    key, spec = model_key(p)
    try:
        return open_detector(
            spec,
            rig,
            backend=p.backend,
            device=resolve_device(p.device),
            threads=p.threads,
            threshold=p.threshold,
            inputs=p.inputs,
            frame_id=p.frame_id,
            precision=p.precision,
        )
    except BackendUnavailableError as err:
        raise ParamError("backend", str(err)) from err
    except FusionStreamError as err:  # the model (or its export) is missing, damaged or unusable
        if _names_precision(err):
            raise
        raise ParamError(key, str(err)) from err


def _names_precision(err: FusionStreamError) -> bool:
    """Whether ``err`` already names the ``precision`` parameter (int8 asked of a model card)."""
    return isinstance(err, ParamError) and err.key == "precision"


def setup(node: Node, p: Params) -> None:
    from fusion_stream.infer.open import rig_warning
    from fusion_stream.infer.pipeline import FusionPipeline, PipelineReport

    t0 = time.perf_counter()

    config, rig = _checked(p)  # before the model: a bad value exits at once
    detector = open_model(p, rig)
    first_ms = detector.warm_up()
    spec = model_key(p)[1]
    log.info(
        "fusion model %s on %s: ready in %.2f s (first run %.0f ms)",
        spec,
        detector.name,
        time.perf_counter() - t0,
        first_ms,
    )
    warning = rig_warning(spec, rig)
    if warning:
        log.warning("%s", warning)
    # only now is the node visible on its topics: a subscriber or the supervisor sees a ready node
    pub = node.publisher(p.output, msgs.Detections)
    # the network's diagnostics name its backend alone, as before cards; another model its name
    report = PipelineReport(detector.backend.name if isinstance(detector, FusionPipeline) else detector.name)

    def run(frame: msgs.SyncedFrame) -> None:
        try:
            det, times = detector.process(frame)
        except FusionStreamError as err:
            report.failed += 1
            log.warning("set at %d ns skipped: %s", frame.stamp_ns, err)
            return
        pub.publish(det)
        report.ran(frame, det, times, node.clock.now_ns())

    if config is not None:
        _sync_in_process(node, config, p.publish_sets, run, report)
        return

    def on_frame(env: Envelope) -> None:
        if isinstance(env.message, msgs.SyncedFrame):
            run(env.message)

    sub = node.subscribe(p.input, on_frame, latest=True)
    node.add_diagnostics(lambda: report.values(skipped=sub.stats.superseded))


def _sync_in_process(
    node: Node,
    config: SyncConfig,
    publish_sets: str,
    run: Callable[[msgs.SyncedFrame], None],
    report: PipelineReport,
) -> None:
    """Sensor topics → the sync stage → ``run`` on the newest set whenever the model is free.

    Every message goes into the stage (queued, not ``latest``: a set needs each message of the
    other inputs within its window), once everything waiting on the socket is read, in the order
    it arrived and judged by when it arrived (see :class:`NewestSet`), so a model run that held the
    loop does not change the sets. A set is run as soon as nothing else waits on the socket (what
    waits may complete a newer set, which then wins) or at the next 5 ms tick. Arrival times go
    back at most half the stage's ``reset_jump``: a clock of another host that is off must not
    look like a bag that looped."""
    sets_pub = node.publisher(publish_sets, msgs.SyncedFrame) if publish_sets else None
    unpublished: list[Emitted] = []

    def publish_sets_after_run() -> None:
        """The sets go out after the model has run on the newest: a recorder can wait a few ms,
        the detections' latency cannot (a set with an image is ~1.5 MB to serialize)."""
        if sets_pub is not None:
            for e in unpublished:
                sets_pub.publish(e.frame)
        unpublished.clear()

    sets = NewestSet(SyncStage(config), node.clock.now_ns, on_set=unpublished.append if sets_pub else None)

    def run_newest() -> None:
        e = sets.take()
        if e is not None:
            run(e.frame)
        publish_sets_after_run()

    def drained() -> bool:
        """Nothing more waits on the socket, or what was read has waited _MAX_BACKLOG_S (inputs
        faster than this node reads them must not starve the model)."""
        more = sub.socket.getsockopt(_EVENTS) & _POLLIN  # type: ignore[operator]
        return not more or sets.backlog_s() >= _MAX_BACKLOG_S

    def on_message(env: Envelope) -> None:
        waited = time.time_ns() - env.pub_ns  # behind the model's last run, maybe
        sets.add(env.topic, env.message, arrival_ns(node.clock.now_ns(), waited, config.reset_jump_ns // 2))
        if drained():  # everything that came is read: offer it in arrival order, run the newest set
            sets.flush()
            run_newest()

    def tick() -> None:
        if drained():  # else the runtime reads on (in batches) first
            sets.poll(node.clock.now_ns())
            run_newest()

    def diagnostics() -> dict[str, msgs.ScalarValue]:
        values, level, message = sets.report.report()
        node.set_status(level, message)
        return {**report.values(skipped=sets.skipped), **values}

    sub = node.subscribe(sets.stage.topics, on_message, queue_size=config.queue_size)
    node.timer(0.005, tick)
    node.add_diagnostics(diagnostics)


if __name__ == "__main__":
    raise SystemExit(run_node("fusion", Params, setup))
