"""Benchmark: scenario bags rendered serially (the baseline) and as Ray tasks with N workers, in
the same run (what `fusion-stream sim bag --seeds ... --workers N` does).

Prints, per run, the wall time (and the part spent starting the local Ray runtime), scenarios per
minute with and without that start, and the speed-up over the serial run; then checks that every
run wrote the same bytes.

    python bench/sim_scale.py                          # 6 scenarios of 2 s, serially and on 2 workers
    python bench/sim_scale.py --scenarios 8 --seconds 5 --workers 2 4
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fusion_stream.sim.scenario_fleet import BagSpec, RenderedBag, plan, render_on_ray, render_serial

console = Console()


def specs(folder: Path, count: int, seconds: float) -> list[BagSpec]:
    return plan(
        folder,
        list(range(100, 100 + count)),
        ["day"],
        ["clear"],
        actors=28,
        start_s=200.0,
        duration_s=seconds,
        rig="calib/sim_rig.yaml",
    )


def digests(results: list[RenderedBag]) -> list[str]:
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return [hashlib.sha256(r.spec.path.read_bytes()).hexdigest() for r in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", type=int, default=6, help="scenarios (seeds) to render (default 6)")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each bag (default 2 s)")
    ap.add_argument("--workers", type=int, nargs="+", default=[2], help="Ray worker counts (default 2)")
    args = ap.parse_args()
    runs: list[tuple[str, float, float, list[str]]] = []
    with tempfile.TemporaryDirectory(prefix="sim_scale_") as tmp_name:
        tmp = Path(tmp_name)
        render_serial(specs(tmp / "warm", 1, 0.2), lambda r: None)  # numba/open3d loaded, as in a worker
        t0 = time.perf_counter()
        serial = render_serial(specs(tmp / "serial", args.scenarios, args.seconds), lambda r: None)
        runs.append(("serial", time.perf_counter() - t0, 0.0, digests(serial)))
        for workers in args.workers:
            started: list[float] = []

            def note_start(_gcs: str, at: list[float] = started) -> None:
                at.append(time.perf_counter())

            t0 = time.perf_counter()
            results = render_on_ray(
                specs(tmp / f"ray{workers}", args.scenarios, args.seconds),
                lambda r: None,
                workers=workers,
                on_start=note_start,
            )
            wall = time.perf_counter() - t0
            runs.append((f"Ray, {workers} workers", wall, started[0] - t0, digests(results)))
    table = Table("run", "wall s", "Ray start s", "scenarios/min", "after start", "speed-up", box=None)
    base = runs[0][1]
    for label, wall, start, _ in runs:
        table.add_row(
            label,
            f"{wall:.1f}",
            f"{start:.1f}" if start else "–",
            f"{60 * args.scenarios / wall:.1f}",
            f"{60 * args.scenarios / (wall - start):.1f}",
            f"{base / wall:.2f}×",
        )
    console.print(f"{args.scenarios} scenarios of {args.seconds:g} s each (seeds 100..., 28 actors, day, clear)")
    console.print(table)
    same = all(d == runs[0][3] for *_, d in runs)
    console.print("bags identical in every run: " + ("[green]yes[/]" if same else "[red]NO[/]"), highlight=False)
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
