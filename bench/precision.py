"""Quality gate for a quantized network: the float (fp32) and the int8 ONNX Runtime models on the
same held-out simulated frames, in the same run, with the inference time of each.

The int8 model may only be recommended when its held-out mAP is within 0.005 of the float one
(``GATE``); the script prints both, the difference and the verdict.

    python bench/precision.py                 # all 25 held-out scenarios (200 frames)
    python bench/precision.py --split fog --threads 1
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
GATE = 0.005
"""Largest held-out mAP an int8 model may lose against the float one."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--split", default="val")
    ap.add_argument("--seeds", type=int, default=None, help="only the first N held-out scenarios (default all 25)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    data = splits.dataset(args.split, seeds=args.seeds)
    for _ in data.ensure():
        pass
    table = Table(
        "precision",
        "frames",
        "mAP",
        "mAP in camera view",
        "NDS",
        "ATE m",
        "AVE m/s",
        "siren acc.",
        "car",
        "truck",
        "pedestrian",
        "cyclist",
        "inference p50 ms",
        title=f"float vs int8 on held-out split {args.split!r}, ONNX Runtime",
    )
    results: dict[str, Any] = {}
    for precision in ("fp32", "int8"):
        r = evaluate_split(args.weights, data, backend="onnxruntime", precision=precision)
        results[precision] = r
        pc = r["per_class"]
        table.add_row(
            precision,
            str(r["frames"]),
            f"{r['mAP']:.4f}",
            f"{r['camera_view']['mAP']:.4f}",
            f"{r['NDS']:.4f}",
            f"{r['mean_tp']['ate']:.3f}",
            f"{r['mean_tp']['ave']:.3f}",
            f"{r['siren_accuracy']:.3f}",
            *(f"{pc[c]['ap']:.3f}" for c in ("car", "truck", "pedestrian", "cyclist")),
            f"{r['inference_ms']['p50']:.1f}",
        )
    console.print(table)
    loss = results["fp32"]["mAP"] - results["int8"]["mAP"]
    verdict = "passes" if loss <= GATE else "fails"
    console.print(f"int8 − fp32 mAP: {-loss:+.4f}; the gate (lose at most {GATE}) {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
