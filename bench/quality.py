"""Quality of the shipped fusion model against a LiDAR-only model trained the same way, on
held-out simulated scenarios (seeds never used in training).

Prints one table: mAP, NDS, AVE, siren accuracy for
  fusion (all sensors), fusion without radar, LiDAR-only  on the held-out split, and
  fusion and LiDAR-only                                   on the same scenarios in fog.

    python bench/quality.py                                   # shipped weights
    python bench/quality.py --lidar-only weights/lidar_only.pt --seeds 10 --json out.json

Make the LiDAR-only weights with
    fusion-stream train --modalities lidar -o weights/lidar_only.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fusion_stream.eval.report import evaluate_split
from fusion_stream.model import splits
from fusion_stream.model.config import DEFAULT_WEIGHTS

console = Console(width=150)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--lidar-only", default=str(DEFAULT_WEIGHTS.with_name("lidar_only.pt")))
    ap.add_argument("--seeds", type=int, default=None, help="only the first N held-out scenarios (default all 25)")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    runs = [
        ("fusion", args.weights, "val", ()),
        ("fusion without radar", args.weights, "val", ("radar",)),
        ("fusion without audio", args.weights, "val", ("audio",)),
        ("LiDAR-only model", args.lidar_only, "val", ()),
        ("fusion, fog", args.weights, "fog", ()),
        ("LiDAR-only model, fog", args.lidar_only, "fog", ()),
    ]
    table = Table(
        "model / inputs",
        "split",
        "frames",
        "mAP",
        "mAP in camera view",
        "NDS",
        "AVE m/s",
        "siren acc.",
        "car",
        "truck",
        "pedestrian",
        "cyclist",
        title="held-out simulated scenarios",
    )
    results: dict[str, Any] = {}
    for name, weights, split, drop in runs:
        if not Path(weights).exists():
            console.print(f"[yellow]{name}: {weights} not found, skipped[/yellow]")
            continue
        data = splits.dataset(split, seeds=args.seeds)
        for _ in data.ensure():
            pass
        r = evaluate_split(weights, data, backend=args.backend, drop=drop)
        results[name] = r
        pc = r["per_class"]
        table.add_row(
            name,
            split,
            str(r["frames"]),
            f"{r['mAP']:.3f}",
            f"{r['camera_view']['mAP']:.3f}",
            f"{r['NDS']:.3f}",
            f"{r['mean_tp']['ave']:.2f}",
            f"{r['siren_accuracy']:.3f}",
            *(f"{pc[c]['ap']:.3f}" for c in ("car", "truck", "pedestrian", "cyclist")),
        )
        console.print(f"[dim]{name} on {split}: mAP {r['mAP']:.3f}[/dim]")
    console.print(table)
    if "fusion" in results and "LiDAR-only model" in results:
        gain = results["fusion"]["mAP"] - results["LiDAR-only model"]["mAP"]
        view = results["fusion"]["camera_view"]["mAP"] - results["LiDAR-only model"]["camera_view"]["mAP"]
        console.print(f"fusion − LiDAR-only mAP: {gain:+.3f} (target ≥ +0.05); in the camera's view {view:+.3f}")
    if "fusion, fog" in results and "LiDAR-only model, fog" in results:
        loss_f = results["fusion"]["mAP"] - results["fusion, fog"]["mAP"]
        loss_l = results["LiDAR-only model"]["mAP"] - results["LiDAR-only model, fog"]["mAP"]
        console.print(f"mAP lost in fog: fusion {loss_f:+.3f}, LiDAR-only {loss_l:+.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
