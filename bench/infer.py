"""Benchmark: per-stage latency of the fusion pipeline for each inference backend present.

Frames are real simulated synced sets (held-out scenarios). For every backend that loads here
(TensorRT, ONNX Runtime, torch) it prints pre-processing, inference and decode p50/p99 in ms,
and the total against the 100 ms budget of a 10 Hz LiDAR. torch in the same run is the baseline
the others are compared with, since these machines' speed varies from run to run.

    python bench/infer.py                  # default weights, all CPU threads
    python bench/infer.py --threads 1      # one core
    python bench/infer.py --device cuda    # on an NVIDIA GPU (TensorRT where installed)
    python bench/infer.py --model my_card.yaml   # a model card (or cluster) next to the network
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from fusion_stream.core import calib, msgs, resources
from fusion_stream.errors import BackendUnavailableError
from fusion_stream.infer import backends
from fusion_stream.infer.detector import Detector, StageTimes
from fusion_stream.infer.open import locate, open_detector
from fusion_stream.infer.pipeline import FusionPipeline
from fusion_stream.model import dataset
from fusion_stream.model.config import DEFAULT_WEIGHTS

console = Console(width=150)


def frames(n: int, rig: calib.Rig) -> list[msgs.SyncedFrame]:
    specs = dataset.plan(range(100, 100 + n), 1)
    out = []
    for spec in specs:
        members = dataset.members_of(dataset.simulate(spec, rig), rig)
        out.append(msgs.SyncedFrame(stamp_ns=round(spec.t * 1e9), frame_id="base_link", members=members))
    return out


def measure(pipe: Detector, sets: list[msgs.SyncedFrame], repeats: int) -> list[StageTimes]:
    pipe.process(sets[0])  # warm-up (allocations, lazy init, CUDA context)
    times = []
    for _ in range(repeats):
        for f in sets:
            times.append(pipe.process(f)[1])
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument(
        "--model", default=None, help="also time this model (weights, a card or a built-in name) on the same sets"
    )
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch and ONNX Runtime (0: default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rig = calib.load(resources.resolve("calib/sim_rig.yaml"))
    sets = frames(args.frames, rig)
    table = Table(
        "backend",
        "device",
        "preprocess p50",
        "inference p50 / p99",
        "decode p50",
        "total p50 / p99",
        "vs torch",
        "10 Hz budget",
        title=f"fusion pipeline latency, ms ({len(sets)} frames × {args.repeats})",
    )
    baseline = None

    def row(name: str, device: str, times: list[StageTimes]) -> None:
        nonlocal baseline
        pre = np.array([t.preprocess_ms for t in times])
        inf = np.array([t.inference_ms for t in times])
        dec = np.array([t.decode_ms for t in times])
        tot = np.array([t.total_ms for t in times])
        p50 = float(np.percentile(tot, 50))
        baseline = baseline or p50
        table.add_row(
            name,
            device,
            f"{np.percentile(pre, 50):.1f}",
            f"{np.percentile(inf, 50):.1f} / {np.percentile(inf, 99):.1f}",
            f"{np.percentile(dec, 50):.2f}",
            f"{p50:.1f} / {np.percentile(tot, 99):.1f}",
            f"{baseline / p50:.2f}×",
            "ok" if np.percentile(tot, 99) <= 100 else "over",
        )

    for name in ("torch", "onnxruntime", "tensorrt"):
        try:
            be = backends.load(args.weights, backend=name, device=args.device, threads=args.threads)
        except BackendUnavailableError as err:
            console.print(f"[dim]{name}: {err}[/dim]")
            continue
        t0 = time.perf_counter()
        times = measure(FusionPipeline(be, rig), sets, args.repeats)
        row(name, be.device, times)
        console.print(f"[dim]{name}: {len(times)} frames in {time.perf_counter() - t0:.1f} s[/dim]")
    if args.model:
        detector = open_detector(locate(args.model), rig, device=args.device, threads=args.threads)
        row(detector.name, args.device, measure(detector, sets, args.repeats))
    console.print(table)
    gpu = ""
    if args.device.startswith("cuda"):
        import torch

        gpu = f", GPU {torch.cuda.get_device_name()}"
    console.print(
        f"machine: {platform.machine()}, {__import__('os').cpu_count()} CPUs{gpu}; threads {args.threads or 'default'}"
    )


if __name__ == "__main__":
    main()
