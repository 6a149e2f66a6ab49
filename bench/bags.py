"""Benchmark: recording throughput, replay+eval speed, and recording the live rig.

Part 1: writing the same messages (2 s of the simulated rig: camera images, LiDAR sweeps, radar,
audio, ground truth) with our recorder's writer (CDR serialisation + MCAP + compression) against
the raw ``mcap`` writer given bytes already serialised (the floor: framing and compression
only), in MB/s of message data, for each compression.

Part 2: ``fusion-stream eval`` on a simulated bag (sync + fusion in lockstep, ONNX Runtime), as a
multiple of real time; model loading excluded and reported apart.

Part 3 (``--rig S``): ``launch/sim.yaml`` plus ``fusion-stream record --all`` in their own
processes for S seconds; messages recorded per topic against the nominal rates, and drops
(sequence gaps before the recorder).

    python bench/bags.py              # parts 1 and 2
    python bench/bags.py --rig 60     # and 60 s of recording the live rig
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcap.writer import Writer
from rich.console import Console
from rich.table import Table

from fusion_stream.bag import convert
from fusion_stream.bag.mapping import messages
from fusion_stream.bag.reader import Bag
from fusion_stream.bag.writer import BagWriter, compression_type
from fusion_stream.graph import launch
from fusion_stream.graph.supervisor import Supervisor
from fusion_stream.runtime.registry import ENV_GRAPH, Registry
from fusion_stream.sim.recording import record_sim
from fusion_stream.sim.world import Scenario

console = Console()
NOMINAL_HZ = {"/lidar/top/points": 10, "/camera/front/image": 15, "/radar/front/points": 13, "/audio/array/chunk": 50}


def write_speed(tmp: Path, seconds: float) -> Table:
    source = tmp / "source.mcap"
    record_sim(source, Scenario(seed=2), start_s=50.0, duration_s=seconds, compression="none")
    with Bag(source) as bag:
        items = [(c.topic, c.log_ns, c.message) for c in messages(bag)]
    encoded = [(t, ns, *convert.serialize(m)) for t, ns, m in items]
    payload = sum(len(data) for _, _, _, data in encoded)
    table = Table(
        "compression",
        "ours MB/s (serialise+write)",
        "raw mcap MB/s (bytes given)",
        "ours / raw",
        "file MB",
        box=None,
        title=f"writing {len(items)} messages, {payload / 1e6:.0f} MB of message data",
    )
    for comp in ("zstd", "lz4", "none"):
        out = tmp / f"ours-{comp}.mcap"
        t0 = time.perf_counter()
        with BagWriter(out, compression=comp) as w:  # type: ignore[arg-type]
            for topic, ns, msg in items:
                w.write(topic, msg, ns)
        ours = payload / (time.perf_counter() - t0) / 1e6
        raw_out = tmp / f"raw-{comp}.mcap"
        t0 = time.perf_counter()
        with open(raw_out, "wb") as f:
            writer = Writer(f, chunk_size=4 << 20, compression=compression_type(comp))
            writer.start(profile="ros2", library="bench")
            schemas: dict[str, int] = {}
            channels: dict[str, int] = {}
            for topic, ns, typename, data in encoded:
                if typename not in schemas:
                    schemas[typename] = writer.register_schema(typename, "ros2msg", b"")
                if topic not in channels:
                    channels[topic] = writer.register_channel(topic, "cdr", schemas[typename])
                writer.add_message(channels[topic], ns, data, ns)
            writer.finish()  # type: ignore[no-untyped-call]
        raw = payload / (time.perf_counter() - t0) / 1e6
        table.add_row(comp, f"{ours:.0f}", f"{raw:.0f}", f"{ours / raw:.2f}", f"{out.stat().st_size / 1e6:.0f}")
    return table


def eval_speed(tmp: Path, seconds: float) -> Table:
    from fusion_stream.eval.bag_eval import evaluate_bag, setup_from_launch

    bag = tmp / "eval.mcap"
    record_sim(bag, Scenario(seed=9, actors=30), start_s=300.0, duration_s=seconds)
    table = Table(
        "threads", "bag s", "eval s", "× real time", "model load s", "mAP", box=None, title="replay + eval (lockstep)"
    )
    for threads in (1, os.cpu_count() or 1):
        setup = setup_from_launch(launch.find("sim"), backend="onnxruntime")
        t0 = time.perf_counter()
        result = evaluate_bag(bag, setup, threads=threads)
        total = time.perf_counter() - t0
        table.add_row(
            str(threads),
            f"{result.bag_s:.1f}",
            f"{result.wall_s:.2f}",
            f"{result.bag_s / result.wall_s:.1f}",
            f"{total - result.wall_s:.1f}",
            f"{result.metrics['nuscenes']['mAP']:.3f}",
        )
    return table


def record_rig(tmp: Path, seconds: float) -> Table:
    graph = launch.load(launch.find("sim"))
    name = f"bench-bags-{os.getpid()}"
    registry = Registry(graph=name)
    sup = Supervisor(graph, registry=registry, output=lambda line: None)
    out = tmp / "rig.mcap"
    try:
        sup.start()
        warm = time.monotonic() + 8.0
        with console.status("starting launch/sim.yaml (8 s) ..."):
            while time.monotonic() < warm:
                sup.step()
                time.sleep(0.05)
        env = dict(os.environ, **{ENV_GRAPH: name})
        rec = subprocess.Popen(
            [sys.executable, "-m", "fusion_stream.cli", "record", "--all", "-o", str(out), "--duration", str(seconds)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        t_cpu0 = os.times()
        with console.status(f"recording the rig for {seconds:.0f} s ..."):
            while rec.poll() is None:
                sup.step()
                time.sleep(0.05)
        t_cpu1 = os.times()
        stdout, stderr = rec.communicate()
    finally:
        if "rec" in locals() and rec.poll() is None:
            rec.send_signal(signal.SIGINT)
        sup.shutdown()
    recorder_cpu = (t_cpu1.children_user + t_cpu1.children_system) - (t_cpu0.children_user + t_cpu0.children_system)
    console.print(stdout.strip())
    if stderr.strip():
        console.print(f"[yellow]{stderr.strip()[-400:]}[/]")
    with Bag(out) as bag:
        info = bag.info()
    table = Table(
        "topic",
        "messages",
        "recorded Hz",
        "nominal Hz",
        box=None,
        title=f"{info.duration_s:.1f} s recorded, {info.size_bytes / 1e6:.0f} MB on disk; "
        f"recorder CPU {recorder_cpu / seconds * 100:.0f} % of a core",
    )
    for t in info.topics:
        table.add_row(t.topic, str(t.count), f"{t.rate_hz or 0:.2f}", str(NOMINAL_HZ.get(t.topic, "-")))
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="simulated seconds written in part 1 (default 2)")
    ap.add_argument("--eval-seconds", type=float, default=10.0, help="bag length for part 2 (default 10)")
    ap.add_argument("--rig", type=float, default=0.0, metavar="S", help="also record the live rig for S seconds")
    args = ap.parse_args()
    console.print(f"machine: {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        console.print(write_speed(tmp, args.seconds))
        console.print(eval_speed(tmp, args.eval_seconds))
        if args.rig > 0:
            console.print(record_rig(tmp, args.rig))


if __name__ == "__main__":
    main()
