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
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_stream.bag.mapping import TopicMap
from fusion_stream.core import calib, resources
from fusion_stream.errors import FusionStreamError
from fusion_stream.eval.bag_eval import BagEvaluation, EvalSetup, evaluate_bag, load_model
from fusion_stream.eval.fleet_metrics import BagOutcome, FrameScore
from fusion_stream.eval.html import render_set, write_report
from fusion_stream.runtime.ray_runtime import MAX_RESTARTS, ray_runtime

log = logging.getLogger(__name__)

KILL_ENV = "FUSION_STREAM_TEST_KILL_BAG"
"""Test-only fault: ``NAME:MARKER`` makes the worker process die in the middle of bag ``NAME``
(evaluated, result not yet returned) on its first try, the one that creates the file ``MARKER``."""


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
            _kill_switch(name)
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


def _kill_switch(name: str) -> None:
    """The test-only fault of :data:`KILL_ENV`: bag ``name`` evaluated, its result not yet handed
    back, this process exits at once (no clean-up, as under ``kill -9``), unless an earlier try
    already did."""
    target, _, marker = os.environ.get(KILL_ENV, "").partition(":")
    if not marker or target != name:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # the retry: carry on
        return
    os._exit(17)


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
    with ray_runtime(workers, address) as gcs:
        if on_start is not None:
            on_start(gcs)
        return _evaluate_on_actors(bags, names, job, on_done, workers)


def _evaluate_on_actors(
    bags: Sequence[Path],
    names: Sequence[str],
    job: FleetJob,
    on_done: OnDone,
    workers: int,
) -> list[BagOutcome]:
    """Hand the bags to ``workers`` actors, each its next bag when it is free; the actors are
    killed however this ends."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    actors: list[Any] = []
    try:
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
