"""``fusion-stream sim bag --seeds 100-199 [--conditions day,night] [--weathers ...] --workers N
-o DIR``: many simulated bags in one command, one per seed × condition × weather, rendered in
this process or as Ray tasks (:mod:`fusion_stream.sim.scenario_fleet`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, cast

from fusion_stream.cli.common import console, err_console, progress_bar, sigterm_as_interrupt
from fusion_stream.core import calib, resources
from fusion_stream.errors import ParamError, UsageError
from fusion_stream.runtime.ray_runtime import CLUSTER_EXTRA, ray_available
from fusion_stream.runtime.runner import EXIT_FAILED
from fusion_stream.sim.world import Condition, Weather

CONDITIONS: tuple[Condition, ...] = ("day", "night")
WEATHERS: tuple[Weather, ...] = ("clear", "rain", "fog")


def wants_many(args: argparse.Namespace) -> bool:
    """Any of the many-bag options turns ``-o`` into a folder; one bag is rendered in this
    process, as ever, whatever ``--workers`` says."""
    if args.workers < 1:
        raise UsageError(f"--workers: must be at least 1, got {args.workers}")
    if args.seeds or args.conditions or args.weathers:
        return True
    if args.ray_address:
        raise UsageError("--ray-address renders many bags into a folder: give --seeds (and -o DIR)")
    return False


def _choices(option: str, text: str | None, allowed: tuple[str, ...], default: str) -> list[str]:
    if text is None:
        return [default]
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    for c in chosen:
        if c not in allowed:
            raise UsageError(f"{option}: {c!r} is not one of {', '.join(allowed)}")
    if not chosen:
        raise UsageError(f"{option}: name at least one of {', '.join(allowed)}")
    return list(dict.fromkeys(chosen))


def cmd_sim_bags(args: argparse.Namespace) -> int:
    from fusion_stream.sim import scenario_fleet as sf

    if args.duration <= 0:
        raise UsageError(f"--duration must be > 0, got {args.duration}")
    try:
        seeds = sf.parse_seeds(args.seeds) if args.seeds else [args.seed]
        specs = sf.plan(
            Path(args.output),
            seeds,
            cast(list[Condition], _choices("--conditions", args.conditions, CONDITIONS, args.condition)),
            cast(list[Weather], _choices("--weathers", args.weathers, WEATHERS, args.weather)),
            actors=args.actors,
            start_s=args.time,
            duration_s=args.duration,
            rig=args.calib,
        )
    except ParamError as err:  # the field's name is the option's
        raise UsageError(f"--{err.key.replace('_', '-')} {err.reason}") from err
    calib.load(resources.resolve(args.calib))  # a bad rig is refused before anything starts
    if existing := [s.path for s in specs if s.path.exists()]:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise UsageError(
            f"{', '.join(map(str, existing[:3]))}{more} already exist; remove them or choose another output folder"
        )
    on_ray = bool(args.ray_address) or (args.workers > 1 and len(specs) > 1)
    if on_ray and not ray_available():
        raise UsageError(f"--workers {args.workers} / --ray-address need Ray: {CLUSTER_EXTRA} (or --workers 1)")
    return _render(args, specs, on_ray)


def _render(args: argparse.Namespace, specs: list[Any], on_ray: bool) -> int:
    from fusion_stream.sim import scenario_fleet as sf

    out = Path(args.output)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    log = (out / "logs" / "sim_bag.log").open("a")
    where = f"on {args.workers} workers" if on_ray else "serially"
    if args.ray_address:
        where = f"on Ray at {args.ray_address}"
    log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} rendering {len(specs)} bags {where}\n")
    t0 = time.perf_counter()
    size = failed = 0
    try:
        with sigterm_as_interrupt(), progress_bar(err_console) as progress:
            task = progress.add_task(f"rendering {len(specs)} bags {where}", total=len(specs), info="")

            def done(r: sf.RenderedBag) -> None:
                nonlocal size, failed
                size += r.bytes
                failed += not r.ok
                state = f"{sum(r.messages.values())} messages, {r.bytes / 1e6:.1f} MB" if r.ok else f"FAILED: {r.error}"
                log.write(f"{r.spec.path.name} on {r.worker or '?'} in {r.wall_s:.1f} s: {state}\n")
                log.flush()
                if not r.ok:
                    progress.console.print(f"[yellow]{r.spec.path}: {r.error}[/]", highlight=False)
                info = f"{size / 1e6:.0f} MB" + (f", {failed} failed" if failed else "")
                progress.update(task, advance=1, info=info)

            if on_ray:
                results = sf.render_on_ray(specs, done, workers=args.workers, address=args.ray_address)
            else:
                results = sf.render_serial(specs, done)
    finally:
        log.close()
    wall = time.perf_counter() - t0
    ok = [r for r in results if r.ok]
    console.print(
        f"rendered {len(ok)} of {len(specs)} bags ({len(ok)} × {args.duration:g} s, {size / 1e6:.0f} MB) "
        f"in {wall:.1f} s {where}: {60 * len(ok) / wall:.1f} scenarios/min → {out}",
        highlight=False,
    )
    for r in results:
        if not r.ok:
            print(f"{r.spec.path}: FAILED: {r.error}", file=sys.stderr)
    return EXIT_FAILED if failed else 0
