"""Many simulated bags in one go: every seed × condition × weather rendered into its own MCAP,
in this process one after another, or as Ray tasks (a local runtime or an existing cluster).

A bag is a pure function of its scenario and time window (:func:`record_sim`), so the bags are
the same bytes whoever renders them and however many workers there are; a task whose worker
died is simply rendered again. Each bag is written under ``.partial/`` and moved into place when
complete, so a bag in the output folder is always a whole one."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion_stream.errors import FusionStreamError, ParamError
from fusion_stream.runtime.ray_runtime import MAX_RESTARTS, ray_runtime
from fusion_stream.sim.recording import record_sim
from fusion_stream.sim.world import Condition, Scenario, Weather

PARTIAL = ".partial"
"""Sub-folder of the output where bags are written until complete."""


@dataclass(frozen=True)
class BagSpec:
    """One bag to render: which world, which window of it, and where it goes."""

    path: Path
    scenario: Scenario
    start_s: float
    duration_s: float
    rig: str = "calib/sim_rig.yaml"

    @property
    def partial(self) -> Path:
        return self.path.parent / PARTIAL / self.path.name


@dataclass
class RenderedBag:
    spec: BagSpec
    messages: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    wall_s: float = 0.0
    worker: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_seeds(text: str) -> list[int]:
    """``100-199``, ``4,7,10-12``: the seeds in the order written, each once."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            lo = int(first)
            hi = int(last) if dash else lo
        except ValueError:
            raise ParamError("seeds", f"{part.strip()!r} is not a seed or a range FIRST-LAST of seeds") from None
        if lo < 0 or hi < lo:
            raise ParamError("seeds", f"{part.strip()!r}: a range goes from a seed >= 0 up to a larger one")
        seeds.extend(s for s in range(lo, hi + 1) if s not in seeds)
    return seeds


def bag_name(scenario: Scenario) -> str:
    """The file name says which world it holds: ``sim_seed0100_night_fog.mcap``."""
    return f"sim_seed{scenario.seed:04d}_{scenario.condition}_{scenario.weather}.mcap"


def plan(
    out_dir: Path,
    seeds: Sequence[int],
    conditions: Sequence[Condition],
    weathers: Sequence[Weather],
    *,
    actors: int,
    start_s: float,
    duration_s: float,
    rig: str,
) -> list[BagSpec]:
    """Every seed × condition × weather, seed by seed."""
    return [
        BagSpec(out_dir / bag_name(s), s, start_s, duration_s, rig)
        for seed in seeds
        for condition in conditions
        for weather in weathers
        for s in [Scenario(seed=seed, actors=actors, condition=condition, weather=weather)]
    ]


def render(spec: BagSpec) -> RenderedBag:
    """Render one bag (a Ray task, or called directly); a bag that cannot be written is a result
    with its reason, not an exception."""
    t0 = time.perf_counter()
    where = f"{socket.gethostname()}:{os.getpid()}"
    try:
        writer = record_sim(
            spec.partial, spec.scenario, start_s=spec.start_s, duration_s=spec.duration_s, rig_path=spec.rig
        )
        os.replace(spec.partial, spec.path)
    except (FusionStreamError, OSError) as err:
        reason = str(err) if isinstance(err, FusionStreamError) else f"{type(err).__name__}: {err}"
        return RenderedBag(spec, wall_s=time.perf_counter() - t0, worker=where, error=reason)
    return RenderedBag(
        spec,
        messages=dict(writer.stats.messages),
        bytes=spec.path.stat().st_size,
        wall_s=time.perf_counter() - t0,
        worker=where,
    )


OnDone = Callable[[RenderedBag], None]


def render_serial(specs: Sequence[BagSpec], on_done: OnDone) -> list[RenderedBag]:
    """Every bag in this process, in order; what an interrupted one left is removed."""
    results = []
    try:
        for spec in specs:
            results.append(render(spec))
            on_done(results[-1])
    finally:
        remove_partial(specs)
    return results


def render_on_ray(
    specs: Sequence[BagSpec],
    on_done: OnDone,
    *,
    workers: int,
    address: str | None = None,
    on_start: Callable[[str], None] | None = None,
) -> list[RenderedBag]:
    """One Ray task per bag on a local runtime of ``workers`` CPUs or the cluster at ``address``
    (its workers must be able to write the output folder at the same path). A task whose worker
    died is retried; tasks not finished when this ends (Ctrl-C) are cancelled and what they left
    is removed."""
    try:
        with ray_runtime(workers, address) as gcs:
            if on_start is not None:
                on_start(gcs)
            return _render_tasks(specs, on_done)
    finally:
        remove_partial(specs)


def _render_tasks(specs: Sequence[BagSpec], on_done: OnDone) -> list[RenderedBag]:
    import ray
    from ray.exceptions import RayError

    task = ray.remote(num_cpus=1, max_retries=MAX_RESTARTS)(render)
    running: dict[Any, int] = {task.remote(spec): i for i, spec in enumerate(specs)}
    results: dict[int, RenderedBag] = {}
    try:
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                i = running.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except RayError as err:  # its worker died more often than retried, or a fault of ours
                    results[i] = RenderedBag(specs[i], error=f"not rendered: {type(err).__name__}: {err}")
                on_done(results[i])
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
    return [results[i] for i in range(len(specs))]


def remove_partial(specs: Sequence[BagSpec]) -> None:
    """What unfinished renders left (after Ctrl-C or a failure), and ``.partial/`` once empty."""
    folders = set()
    for spec in specs:
        spec.partial.unlink(missing_ok=True)
        folders.add(spec.partial.parent)
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
