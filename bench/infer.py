"""Benchmark: per-stage latency of the fusion pipeline for each inference backend present.

Frames are real simulated synced sets (held-out scenarios). For every backend that loads here
(TensorRT, ONNX Runtime, torch) it prints pre-processing, inference and decode p50/p99 in ms,
and the total against the 100 ms budget of a 10 Hz LiDAR. torch in the same run is the baseline
the others are compared with, since these machines' speed varies from run to run. ONNX Runtime
runs three ways, compared with the first ("vs ORT static"): the static graph fed all 6000 LiDAR
pillar slots (as before variable pillars), the graph with a variable pillar count fed the occupied
ones (the default), and its int8 copy (``precision: int8``). The models take turns frame by frame,
so a burst of load elsewhere on the machine hits them alike.

    python bench/infer.py                  # default weights, every CPU core
    python bench/infer.py --threads 1      # one core
    python bench/infer.py --device cuda    # on an NVIDIA GPU (TensorRT where installed)
    python bench/infer.py --model my_card.yaml   # a model card (or cluster) next to the network
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

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
STATIC = "onnxruntime static"


def frames(n: int, rig: calib.Rig) -> list[msgs.SyncedFrame]:
    specs = dataset.plan(range(100, 100 + n), 1)
    out = []
    for spec in specs:
        members = dataset.members_of(dataset.simulate(spec, rig), rig)
        out.append(msgs.SyncedFrame(stamp_ns=round(spec.t * 1e9), frame_id="base_link", members=members))
    return out


def measure(pipes: list[Detector], sets: list[msgs.SyncedFrame], repeats: int) -> list[list[StageTimes]]:
    """Per-stage times of each detector on every set, ``repeats`` times, the detectors in turn."""
    for pipe in pipes:
        pipe.process(sets[0])  # warm-up (allocations, lazy init, CUDA context)
    times: list[list[StageTimes]] = [[] for _ in pipes]
    for _ in range(repeats):
        for f in sets:
            for pipe, out in zip(pipes, times, strict=True):
                out.append(pipe.process(f)[1])
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
        "vs ORT static",
        "10 Hz budget",
        title=f"fusion pipeline latency, ms ({len(sets)} frames × {args.repeats})",
    )
    baseline = None
    ort_fp32 = None

    def row(name: str, device: str, times: list[StageTimes]) -> None:
        nonlocal baseline, ort_fp32
        pre = np.array([t.preprocess_ms for t in times])
        inf = np.array([t.inference_ms for t in times])
        dec = np.array([t.decode_ms for t in times])
        tot = np.array([t.total_ms for t in times])
        p50 = float(np.percentile(tot, 50))
        baseline = baseline or p50
        if name == STATIC:
            ort_fp32 = p50
        table.add_row(
            name,
            device,
            f"{np.percentile(pre, 50):.1f}",
            f"{np.percentile(inf, 50):.1f} / {np.percentile(inf, 99):.1f}",
            f"{np.percentile(dec, 50):.2f}",
            f"{p50:.1f} / {np.percentile(tot, 99):.1f}",
            f"{baseline / p50:.2f}×",
            f"{ort_fp32 / p50:.2f}×" if ort_fp32 else "",
            "ok" if np.percentile(tot, 99) <= 100 else "over",
        )

    pipes: list[Detector] = []
    for name, precision in (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("tensorrt", "fp32")):
        if precision == "int8" and args.device != "cpu":
            continue
        try:
            be = backends.load(
                args.weights, backend=name, device=args.device, threads=args.threads, precision=precision
            )
        except BackendUnavailableError as err:
            console.print(f"[dim]{name} {precision}: {err}[/dim]")
            continue
        pipes.append(FusionPipeline(be, rig))
        if name == "onnxruntime" and precision == "fp32":  # the same model, static shapes: the baseline
            static = backends.OnnxRuntimeBackend(
                backends.onnx_for(Path(args.weights), static=True), be.device, args.threads
            )
            static.name = STATIC
            pipes.insert(len(pipes) - 1, FusionPipeline(static, rig))
    if args.model:
        pipes.append(open_detector(locate(args.model), rig, device=args.device, threads=args.threads))
    t0 = time.perf_counter()
    for pipe, times in zip(pipes, measure(pipes, sets, args.repeats), strict=True):
        if isinstance(pipe, FusionPipeline):
            row(pipe.backend.name, pipe.backend.device, times)
        else:
            row(pipe.name, args.device, times)
    console.print(
        f"[dim]{len(pipes)} models × {len(sets) * args.repeats} frames in {time.perf_counter() - t0:.1f} s[/dim]"
    )
    console.print(table)
    gpu = ""
    if args.device.startswith("cuda"):
        import torch

        gpu = f", GPU {torch.cuda.get_device_name()}"
    console.print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs{gpu}; threads {args.threads}")


if __name__ == "__main__":
    main()
