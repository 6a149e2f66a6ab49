"""Benchmark: fleet evaluation of the same simulated bags serially and on Ray with 1 and 2 workers.

Prints, per run, the wall time (and the part spent starting Ray), synced sets per second, the
multiple of real time (bag seconds / wall seconds, with and without the start-up) and the
speed-up over the serial run of this same invocation; then checks that every run gives the same
metrics, to the last digit. Every run uses one inference thread per worker, so the workers do not
fight over the cores and the model's arithmetic is the same everywhere.

    python bench/eval_scale.py                       # 4 bags of 3 s of the simulated rig
    python bench/eval_scale.py --bags 6 --seconds 5
    python bench/eval_scale.py --dir BAGS/           # bags you have (made once with `sim bag`)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fusion_stream.bag.mapping import TopicMap
from fusion_stream.eval.bag_eval import setup_from_launch
from fusion_stream.eval.bag_list import expand_bags
from fusion_stream.eval.fleet import FleetJob, evaluate_fleet
from fusion_stream.eval.html import jsonable
from fusion_stream.sim.recording import record_sim
from fusion_stream.sim.world import Scenario

console = Console()
SCORE_KEYS = ("nuscenes", "kitti_bev", "kitti_3d", "siren", "sets", "partial_sets", "frames_with_ground_truth")


def make_bags(folder: Path, count: int, seconds: float) -> list[Path]:
    bags = []
    for i in range(count):
        path = folder / f"sim_{i:02d}.mcap"
        record_sim(path, Scenario(seed=100 + i, actors=28), start_s=200.0 + 10 * i, duration_s=seconds)
        bags.append(path)
    return bags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bags", type=int, default=4, help="simulated bags to make (default 4)")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each simulated bag (default 3 s)")
    ap.add_argument("--dir", default=None, help="evaluate the bags in this folder instead of making some")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts (default 1 2)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="eval_scale_") as tmp_name:
        tmp = Path(tmp_name)
        if args.dir:
            bags = expand_bags([args.dir])
        else:
            t0 = time.perf_counter()
            bags = make_bags(tmp / "bags", args.bags, args.seconds)
            console.print(f"made {len(bags)} bags of {args.seconds:g} s in {time.perf_counter() - t0:.1f} s")
        job = FleetJob(setup_from_launch("sim"), TopicMap(), threads=1, frames=0, worst=0)
        runs: list[tuple[str, dict[str, Any]]] = []
        for label, workers in [("serial (this process)", 1), *((f"Ray, {w} workers", w) for w in args.workers)]:
            on_ray = label.startswith("Ray")
            result = evaluate_fleet(
                bags, job, tmp / label.split()[0] / str(workers), workers=workers, address="local" if on_ray else None
            )
            runs.append((label, result.metrics))
    table = Table(
        "run", "wall s", "Ray start s", "sets/s", "× real time", "× real time after start", "speed-up", box=None
    )
    base = runs[0][1]["wall_s"]
    for label, m in runs:
        start = (m["ray"] or {}).get("start_s") or 0.0
        table.add_row(
            label,
            f"{m['wall_s']:.1f}",
            f"{start:.1f}" if m["ray"] else "–",
            f"{m['frames_per_s']:.1f}",
            f"{m['speed_x_realtime']:.2f}",
            f"{m['bag_duration_s'] / (m['wall_s'] - start):.2f}",
            f"{base / m['wall_s']:.2f}×",
        )
    first = runs[0][1]
    console.print(
        f"{len(bags)} bags, {first['bag_duration_s']:.1f} s of bag, {first['sets']} synced sets, "
        f"mAP {first['nuscenes']['mAP']:.4f} ({first['backend']}, 1 thread per worker)"
    )
    console.print(table)
    same = all(
        json.dumps(jsonable({k: m[k] for k in SCORE_KEYS}), sort_keys=True)
        == json.dumps(jsonable({k: first[k] for k in SCORE_KEYS}), sort_keys=True)
        for _, m in runs
    )
    console.print(
        "metrics identical in every run: " + ("[green]yes[/]" if same else "[red]NO[/]"),
        highlight=False,
    )
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
