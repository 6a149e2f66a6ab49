"""Evaluate many bags: in this process one after another, or on Ray (a local runtime started and
stopped here, or an existing cluster), one actor per worker that loads the model once and takes
bags in turn. Both ways run the same :class:`BagWorker`, so they give the same frames; the fleet's
metrics are computed once from them (:mod:`fusion_stream.eval.fleet_metrics`).

Ray is an optional extra (``fusion-stream[cluster]``) and is imported here only, when asked for.
A bag that cannot be read is a failed bag with its reason, not a failed fleet; a worker killed
mid-bag is restarted by Ray and the bag retried (its result is taken once, from the try that
finished)."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_stream.bag.mapping import TopicMap
from fusion_stream.core import calib, resources
from fusion_stream.errors import FusionStreamError, UsageError
from fusion_stream.eval.bag_eval import BagEvaluation, EvalSetup, evaluate_bag, load_model
from fusion_stream.eval.fleet_metrics import BagOutcome, FrameScore
from fusion_stream.eval.html import render_set, write_report

log = logging.getLogger(__name__)

MAX_RESTARTS = 2
"""How often Ray restarts a worker that died (killed, out of memory) and retries its bag."""
CLUSTER_EXTRA = "pip install 'fusion-stream[cluster]'"


@dataclass(frozen=True)
class FleetJob:
    """What every worker needs, the same for every bag (sent to each worker once)."""

    setup: EvalSetup
    topic_map: TopicMap
    threads: int = 1
    frames: int = 3
    """Frames drawn in each bag's own report."""
    worst: int = 6
    """Worst frames of each bag drawn for the fleet report (the fleet keeps its ``worst`` overall)."""


class _Capture(logging.Handler):
    """This package's warnings while one bag is evaluated: they go into that bag's log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.text = io.StringIO()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.text.write(self.format(record) + "\n")


class BagWorker:
    """Holds the model and evaluates bags with it, one at a time (a Ray actor, or used directly)."""

    def __init__(self, job: FleetJob) -> None:
        self.job = job
        self.model = load_model(job.setup, threads=job.threads)  # once per worker, for every bag
        self.rig = calib.load(resources.resolve(job.setup.calib))
        self.where = f"{socket.gethostname()}:{os.getpid()}"

    def evaluate(self, index: int, path: str, name: str) -> BagOutcome:
        """One bag: its frames, metrics and report files, or why it could not be evaluated."""
        capture = _Capture()
        package = logging.getLogger("fusion_stream")
        package.addHandler(capture)
        capture.text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} evaluating {path} on {self.where}\n")
        try:
            result = evaluate_bag(path, self.job.setup, topic_map=self.job.topic_map, model=self.model)
            outcome = self._outcome(index, path, name, result)
            capture.text.write(f"done: {len(result.frames)} sets in {result.wall_s:.1f} s\n")
        except (FusionStreamError, OSError) as err:  # a damaged, foreign or unreadable bag
            reason = str(err) if isinstance(err, FusionStreamError) else f"{type(err).__name__}: {err}"
            capture.text.write(f"failed: {reason}\n")
            outcome = BagOutcome(index, path, name, error=reason, worker=self.where)
        finally:
            package.removeHandler(capture)
        outcome.log = capture.text.getvalue()
        return outcome

    def _outcome(self, index: int, path: str, name: str, result: BagEvaluation) -> BagOutcome:
        classes = result.classes
        frames = [
            FrameScore.of(f.stamp_ns, f.detections, f.gt, f.times_ms, bool(f.frame.missing), classes)
            for f in result.frames
        ]
        ranked = sorted(range(len(frames)), key=lambda i: (-(frames[i].misses + frames[i].false_alarms), i))
        worst = [i for i in ranked[: self.job.worst] if frames[i].misses + frames[i].false_alarms > 0]
        pictures: dict[int, list[str]] = {}
        with tempfile.TemporaryDirectory(prefix="fusion_stream_eval_") as tmp:
            out = Path(tmp)
            inputs = dict(self.job.setup.inputs)
            write_report(result, out, rig=self.rig, classes=classes, inputs=inputs, frames=self.job.frames)
            for i in worst:
                pictures[frames[i].stamp_ns] = render_set(result, i, self.rig, inputs, out, "worst")
            files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        return BagOutcome(
            index,
            path,
            name,
            frames=frames,
            metrics=result.metrics,
            classes=classes,
            files=files,
            pictures=pictures,
            worker=self.where,
        )


OnDone = Callable[[BagOutcome], None]


def run_serial(bags: Sequence[Path], names: Sequence[str], job: FleetJob, on_done: OnDone) -> list[BagOutcome]:
    """Every bag in this process, in order, with one model."""
    worker = BagWorker(job)
    outcomes = []
    for i, (bag, name) in enumerate(zip(bags, names, strict=True)):
        outcome = worker.evaluate(i, str(bag), name)
        outcomes.append(outcome)
        on_done(outcome)
    return outcomes


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _check_reachable(address: str) -> None:
    """A ``HOST:PORT`` that does not answer is refused at once: ``ray.init`` would wait forever."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "//" in host:  # "auto", "ray://...": Ray's own checks
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UsageError(f"--ray-address {address}: no Ray cluster answers there ({err})") from err


def run_on_ray(
    bags: Sequence[Path],
    names: Sequence[str],
    job: FleetJob,
    on_done: OnDone,
    *,
    workers: int,
    address: str | None = None,
    on_start: Callable[[str], None] | None = None,
) -> list[BagOutcome]:
    """Every bag on ``workers`` Ray actors: on a local runtime started and stopped here (quiet: no
    dashboard, workers' output not relayed), or on the cluster at ``address`` (the bags must be
    readable there at the same paths). The runtime stops, and the actors with it, however this
    ends (Ctrl-C included)."""
    try:
        import ray
        from ray.exceptions import RayActorError, RayTaskError
    except ImportError as err:
        raise UsageError(f"evaluating on several workers needs Ray: {CLUSTER_EXTRA}") from err
    if address and address != "local":
        _check_reachable(address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    local = address in (None, "local")
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(
            address=address or "local",
            num_cpus=workers if local else None,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=True,
            logging_level=logging.ERROR,
        )
    except ConnectionError as err:  # no cluster there, or one that wants a token (RAY_AUTH_TOKEN)
        raise UsageError(f"--ray-address {address}: {err} ({err.__cause__})") from err
    if on_term is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)  # Ray's core put in one that aborts the process
    actors: list[Any] = []
    try:
        if on_start is not None:
            on_start(str(ray.get_runtime_context().gcs_address))
        remote = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(BagWorker)
        actors = [remote.remote(job) for _ in range(workers)]
        idle = list(actors)
        pending = deque(range(len(bags)))
        running: dict[Any, tuple[Any, int]] = {}
        outcomes: dict[int, BagOutcome] = {}
        while pending or running:
            while idle and pending:
                actor, i = idle.pop(0), pending.popleft()
                running[actor.evaluate.remote(i, str(bags[i]), names[i])] = (actor, i)
            if not running:  # every worker is gone
                for i in pending:
                    outcomes[i] = BagOutcome(i, str(bags[i]), names[i], error="not evaluated: no worker left")
                    on_done(outcomes[i])
                break
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                actor, i = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                    idle.append(actor)
                except RayActorError as err:  # died more often than it may be restarted
                    outcome = BagOutcome(i, str(bags[i]), names[i], error=f"worker died: {err}")
                except RayTaskError as err:  # a fault of ours, not of the bag: named, the rest go on
                    outcome = BagOutcome(i, str(bags[i]), names[i], error=f"evaluation failed: {err.cause!r}")
                    outcome.log = str(err)
                    idle.append(actor)
                outcomes[i] = outcome
                on_done(outcome)
        return [outcomes[i] for i in range(len(bags))]
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        ray.shutdown()


@dataclass
class FleetResult:
    outcomes: list[BagOutcome]
    metrics: dict[str, Any]
    metrics_path: Path
    report_path: Path

    @property
    def failed(self) -> list[BagOutcome]:
        return [o for o in self.outcomes if not o.ok]


def evaluate_fleet(
    bags: Sequence[Path],
    job: FleetJob,
    out_dir: Path | str,
    *,
    workers: int = 1,
    address: str | None = None,
    on_done: OnDone | None = None,
) -> FleetResult:
    """Evaluate ``bags`` (in this process with one worker and no ``address``, else on Ray) and
    write each bag's report and log as it comes back, then the fleet's ``metrics.json`` and
    ``report.html`` in ``out_dir``."""
    from fusion_stream.eval.bag_list import report_names
    from fusion_stream.eval.fleet_metrics import fleet_metrics
    from fusion_stream.eval.fleet_report import write_fleet_report, write_outcome

    out = Path(out_dir)
    names = report_names(bags)
    t0 = time.perf_counter()
    ray_info: dict[str, Any] = {}

    def done(outcome: BagOutcome) -> None:
        write_outcome(outcome, out)
        if on_done is not None:
            on_done(outcome)

    if workers > 1 or address:
        outcomes = run_on_ray(
            bags,
            names,
            job,
            done,
            workers=workers,
            address=address,
            on_start=lambda gcs: ray_info.update(gcs_address=gcs, start_s=time.perf_counter() - t0),
        )
    else:
        outcomes = run_serial(bags, names, job, done)
    wall = time.perf_counter() - t0
    classes = next((o.classes for o in outcomes if o.ok), ())
    metrics = fleet_metrics(outcomes, classes, worst=job.worst)
    metrics.update(
        {
            "workers": workers,
            "ray": {"address": address or "local", **ray_info} if ray_info else None,
            "wall_s": wall,
            "frames_per_s": metrics["sets"] / wall if wall > 0 else None,
            "speed_x_realtime": metrics["bag_duration_s"] / wall if wall > 0 else None,
        }
    )
    metrics_path, report_path = write_fleet_report(metrics, outcomes, out, classes)
    return FleetResult(outcomes, metrics, metrics_path, report_path)
