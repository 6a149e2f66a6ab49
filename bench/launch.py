"""Benchmark: how long the supervisor takes to bring a graph up, to bring a killed node back, and
to take the graph down, next to what a bare Python process costs on this machine in the same run.

Baselines (same run, since these machines' speed varies): ``python -c pass`` and
``python -c "import fusion_stream.runtime.node"``, the floor every node process pays.

The graph: N test-pattern nodes (default 8, as many processes as the simulated rig) under
``fusion-stream launch``, each publishing at 50 Hz, with a respawn backoff of 50 ms (the default
is 0.5 s; add it to the respawn figure for a default graph).

* start: launcher started → the first message from every node;
* respawn: ``kill -9`` of a node → the first message from its successor (a new publisher);
* stop: SIGINT to the launcher → launcher exited, every node gone.

``--sim`` also launches ``launch/sim.yaml`` (the simulated rig) once and times the first
/detections, and the stop of the whole rig.

``--faults`` launches ``launch/sim.yaml`` and measures the longest gap between two /detections
around each fault, the rig's default respawn backoff (0.5 s) included: ``kill -9`` of the LiDAR
(the sync's reference sensor), ``kill -9`` of the fusion node, and SIGSTOP of the fusion node for
5 s then SIGCONT (for which the time from SIGCONT to the next detection is given too).

``--rig S`` runs ``launch/sim.yaml`` under the supervisor for S seconds (after 8 s of warm-up)
in two variants, alternately (A B A B ... ``--rig-rounds`` times each, so a machine shared with
other work treats both alike): the sync in its own node (sensor → sync node → /sync/frames →
fusion node) and the sync in the fusion node's process (a ``sync:`` block; ``publish_sets`` keeps
/sync/frames). Whichever of the two the file ships, the other is derived from it. Per run: each
sensor's rate (from its /diagnostics), synced sets and how many were partial or skipped,
/detections rate and latency from the sweep stamp (p50/p99, received here), and the CPU each node
used (from /proc, % of one core). The start-up benchmark is skipped with ``--rig``.

    python bench/launch.py              # 8 nodes, 5 rounds
    python bench/launch.py --nodes 16 --rounds 3 --sim
    python bench/launch.py --rounds 1 --kills 1 --faults
    python bench/launch.py --rig 30 --rig-rounds 2
    python bench/launch.py --rig 30 --rig-compare precision   # the fusion node in fp32 vs int8
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from fusion_stream.core import msgs
from fusion_stream.graph import launch
from fusion_stream.graph.supervisor import Supervisor
from fusion_stream.runtime.registry import ENV_GRAPH, ENV_RUNTIME_DIR, Registry
from fusion_stream.runtime.transport import Subscriber

console = Console()
GRAPH = "launchbench"


def graph_yaml(nodes: int) -> str:
    lines = [f"graph: {GRAPH}", "nodes:"]
    for i in range(nodes):
        lines.append(
            f"  - {{name: n{i}, type: pattern, params: {{kind: radar, rate_hz: 50, topic: /bench/n{i}}},"
            " respawn: {max_retries: 1000, backoff_s: 0.05, backoff_max_s: 0.05}}"
        )
    return "\n".join(lines) + "\n"


def bare_python(code: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        out.append(time.perf_counter() - t0)
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def start_launcher(graph: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fusion_stream.cli", "launch", str(graph)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
    )


def stop_graph(launcher: subprocess.Popen[bytes], registry: Registry) -> float:
    """SIGINT to the launcher → it and every node of the graph gone, in seconds."""
    pids = {e.pid for e in registry.entries()}
    t0 = time.perf_counter()
    launcher.send_signal(signal.SIGINT)
    launcher.wait(timeout=30)
    while any(alive(p) for p in pids):
        time.sleep(0.005)
    return time.perf_counter() - t0


def one_round(graph: Path, nodes: int, registry: Registry, kills: int) -> tuple[float, list[float], float]:
    """(start s, respawn s per kill, stop s) for one launch of the graph."""
    topics = [f"/bench/n{i}" for i in range(nodes)]
    with Subscriber(topics, registry=registry, queue_size=1000) as sub:
        t0 = time.perf_counter()
        launcher = start_launcher(graph)
        seen: set[str] = set()
        while len(seen) < nodes:
            env = sub.recv_envelope(timeout=60.0)
            if env is None:
                raise RuntimeError(f"nodes {sorted(set(topics) - seen)} published nothing within 60 s")
            seen.add(env.topic)
        start = time.perf_counter() - t0
        respawns = []
        for k in range(kills):
            topic = topics[k % nodes]
            [entry] = registry.lookup(topic)
            os.kill(entry.pid, signal.SIGKILL)
            t0 = time.perf_counter()
            while True:
                env = sub.recv_envelope(timeout=30.0)
                if env is None:
                    raise RuntimeError(f"{topic} did not come back within 30 s")
                if env.topic == topic and env.src != entry.src:
                    break
            respawns.append(time.perf_counter() - t0)
        return start, respawns, stop_graph(launcher, registry)


def sim_round(registry: Registry) -> tuple[float, float]:
    """(launch → first /detections s, SIGINT → every node gone s) for launch/sim.yaml."""
    with Subscriber("/detections", registry=registry) as sub:
        t0 = time.perf_counter()
        launcher = start_launcher(Path("launch/sim.yaml"))
        if sub.recv(timeout=120.0) is None:
            raise RuntimeError("launch/sim.yaml published no /detections within 120 s")
        first = time.perf_counter() - t0
        return first, stop_graph(launcher, registry)


def detection_gap(
    sub: Subscriber, fault: Callable[[list[float]], None], *, resumes: bool = False, settle_s: float = 2.0
) -> tuple[float, float | None]:
    """(longest gap between two /detections around ``fault(resumed)``, first detection after the
    time the fault appends to ``resumed`` (its SIGCONT, when it ``resumes``) or None), in seconds.

    A fault that lasts runs in a thread of its own, so arrivals are timed while it lasts; the
    window ends with the first detection ``settle_s`` after the fault (and after the resume), so
    the outage and the recovery are both inside it."""
    while sub.recv(timeout=0) is not None:  # what queued up before
        pass
    if sub.recv(timeout=30.0) is None:
        raise RuntimeError("no /detections before the fault")
    resumed: list[float] = []
    last = t_fault = time.perf_counter()
    fault(resumed)
    gap, after = 0.0, None
    while True:
        if sub.recv(timeout=60.0) is None:
            raise RuntimeError("/detections did not come back within 60 s")
        now = time.perf_counter()
        gap, last = max(gap, now - last), now
        if resumed and after is None:
            after = now - resumed[0]
        if now - t_fault >= settle_s and (after is not None or not resumes):
            return gap, after


def faults_round(registry: Registry) -> dict[str, tuple[float, float | None]]:
    """Detection gaps of launch/sim.yaml after kill -9 of the LiDAR and of the fusion node, and
    after SIGSTOP of the fusion node for 5 s."""

    def pid_of(node: str) -> int:
        [pid] = {e.pid for e in registry.entries() if e.node == node}
        return pid

    def kill(node: str) -> Callable[[list[float]], None]:
        return lambda resumed: os.kill(pid_of(node), signal.SIGKILL)

    def stop_fusion(resumed: list[float]) -> None:
        pid = pid_of("fusion")
        os.kill(pid, signal.SIGSTOP)

        def resume() -> None:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                console.print("the stopped fusion node was killed (by the supervisor) before its SIGCONT")
            resumed.append(time.perf_counter())

        threading.Timer(5.0, resume).start()

    launcher = start_launcher(Path("launch/sim.yaml"))
    try:
        with Subscriber("/detections", registry=registry, queue_size=100) as sub:
            if sub.recv(timeout=120.0) is None:
                raise RuntimeError("launch/sim.yaml published no /detections within 120 s")
            time.sleep(2.0)  # past the start-up: steady sets
            out = {"kill -9 lidar": detection_gap(sub, kill("lidar"))}
            time.sleep(2.0)
            out["kill -9 fusion"] = detection_gap(sub, kill("fusion"))
            time.sleep(2.0)
            out["SIGSTOP fusion 5 s, SIGCONT"] = detection_gap(sub, stop_fusion, resumes=True)
            return out
    finally:
        stop_graph(launcher, registry)


# --------------------------------------------------------------------------- --rig

SENSORS = {"lidar": 10.0, "camera": 15.0, "radar": 13.0, "audio": 50.0}
"""Node → nominal rate (Hz) in launch/sim.yaml."""


def rig_variants(path: Path) -> dict[str, dict[str, Any]]:
    """The launch file as two graphs: ``sync node`` (sensor → sync node → /sync/frames → fusion)
    and ``in-process`` (the fusion node synchronizes, publishing its sets on /sync/frames too)."""
    raw = yaml.safe_load(path.read_text())
    nodes = raw["nodes"]
    fusion = next(n for n in nodes if n["type"] == "fusion")
    sync = next((n for n in nodes if n["type"] == "sync"), None)
    if sync is not None:
        separate = raw
        block = {k: v for k, v in sync["params"].items() if k != "output"}
        fused = {
            **raw,
            "nodes": [
                {**n, "params": {**n["params"], "sync": block, "publish_sets": "/sync/frames"}} if n is fusion else n
                for n in nodes
                if n is not sync
            ],
        }
    else:
        fused = raw
        block = fusion["params"]["sync"]
        plain = {k: v for k, v in fusion["params"].items() if k not in ("sync", "publish_sets")}
        i = nodes.index(fusion)
        separate = {
            **raw,
            "nodes": [
                *nodes[:i],
                {"name": "sync", "type": "sync", "params": dict(block)},
                {**fusion, "params": plain},
                *nodes[i + 1 :],
            ],
        }
    return {"sync node": separate, "in-process": fused}


def precision_variants(path: Path) -> dict[str, dict[str, Any]]:
    """The launch file as shipped, its fusion node running the network in fp32 and in int8."""
    raw = yaml.safe_load(path.read_text())

    def with_precision(precision: str) -> dict[str, Any]:
        nodes = [
            {**n, "params": {**n["params"], "precision": precision}} if n["type"] == "fusion" else n
            for n in raw["nodes"]
        ]
        return {**raw, "nodes": nodes}

    return {"fp32": with_precision("fp32"), "int8": with_precision("int8")}


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _int(values: Mapping[str, object], key: str) -> int:
    v = values.get(key, 0)
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def rig_run(graph_raw: dict[str, Any], seconds: float, tmp: Path, tag: str) -> dict[str, Any]:
    """One run of a graph: the figures of the docstring, over ``seconds`` after an 8 s warm-up."""
    path = tmp / f"rig-{tag}.yaml"
    path.write_text(yaml.safe_dump({**graph_raw, "graph": f"rig{tag}"}, sort_keys=False))
    graph = launch.load(path)
    registry = Registry(Path(os.environ[ENV_RUNTIME_DIR]), graph.graph)
    sup = Supervisor(graph, registry=registry, output=lambda line: None)
    first: dict[str, msgs.Diagnostics] = {}
    last: dict[str, msgs.Diagnostics] = {}
    latency_ms: list[float] = []
    cpu0: dict[str, tuple[int, float]] = {}
    cpu: dict[str, float] = {}
    try:
        sup.start()
        with Subscriber(["/diagnostics", "/detections"], registry=registry, queue_size=1000) as sub:
            t0 = time.monotonic()
            start, end = t0 + 8.0, t0 + 8.0 + seconds
            started = False
            while (now := time.monotonic()) < end and not sup.done:
                if not started and now >= start:
                    started = True
                    for name, proc in sup.children.items():
                        if proc is not None and (c := _cpu_s(proc.pid)) is not None:
                            cpu0[name] = (proc.pid, c)
                    t_start = now
                env = sub.recv_envelope(timeout=0.05)
                sup.step()
                if env is None or not started:
                    continue
                m = env.message
                if isinstance(m, msgs.Diagnostics):
                    first.setdefault(m.node, m)
                    last[m.node] = m
                elif isinstance(m, msgs.Detections):
                    latency_ms.append((time.time_ns() - m.stamp_ns) / 1e6)
            elapsed = time.monotonic() - t_start
            for name, (pid, c0) in cpu0.items():
                c1 = _cpu_s(pid)
                if c1 is not None:  # a node that was respawned meanwhile is left out
                    cpu[name] = 100.0 * (c1 - c0) / elapsed
    finally:
        codes = sup.shutdown()

    def delta(node: str, key: str) -> int:
        if node not in last:
            return 0
        return _int(last[node].values, key) - _int(first[node].values, key)

    def span(node: str) -> float:
        return max(1e-9, (last[node].stamp_ns - first[node].stamp_ns) / 1e9) if node in last else 1.0

    rates = {
        n: delta(n, next((k for k in last[n].values if k.startswith("pub./") and k.endswith(".sent")), "")) / span(n)
        for n in SENSORS
        if n in last
    }
    syncer = next((n for n, d in last.items() if "sync.sets" in d.values), "")
    lat = np.asarray(latency_ms)
    return {
        "rates": rates,
        "sets": delta(syncer, "sync.sets"),
        "partial": delta(syncer, "sync.partial"),
        "skipped": delta("fusion", "skipped_sets"),
        "detections_hz": len(lat) / elapsed,
        "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "inference_ms": float(last["fusion"].values.get("inference_ms_p50", float("nan")))
        if "fusion" in last
        else float("nan"),
        "cpu": cpu,
        "exit": codes,
        "failure": sup.failure,
    }


def rig_bench(seconds: float, rounds: int, tmp: Path, compare: str = "sync") -> None:
    """``compare``: ``sync`` (a sync node or the sync in the fusion node) or ``precision``."""
    path = launch.find("sim")
    variants = precision_variants(path) if compare == "precision" else rig_variants(path)
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with console.status("rig") as status:
        for r in range(rounds):
            for i, (name, raw) in enumerate(variants.items()):
                status.update(f"round {r + 1} of {rounds}: {name} ({seconds:.0f} s + 8 s warm-up)")
                results[name].append(rig_run(raw, seconds, tmp, f"{r}{i}"))
    wide = Console(width=max(console.width, 140))
    table = Table(
        title=f"launch/sim.yaml, {seconds:.0f} s a run, runs alternated ({os.cpu_count()} cores); rates in Hz"
    )
    for col in (
        "variant",
        *SENSORS,
        "sets",
        "partial",
        "skipped",
        "/detections",
        "e2e p50 / p99 ms",
        "inference p50 ms",
        "CPU %",
    ):
        table.add_column(col, justify="left" if col == "variant" else "right")
    runs = [(name, run) for k in range(rounds) for name, r in results.items() for run in r[k : k + 1]]
    for name, run in runs:
        table.add_row(
            name,
            *(f"{run['rates'].get(s, 0.0):.1f}" for s in SENSORS),
            str(run["sets"]),
            str(run["partial"]),
            str(run["skipped"]),
            f"{run['detections_hz']:.1f}",
            f"{run['p50']:.0f} / {run['p99']:.0f}",
            f"{run['inference_ms']:.1f}",
            f"{sum(run['cpu'].values()):.0f}",
        )
    wide.print(table)
    cpu = Table(title="CPU % of one core per node (same runs, same order)")
    cpu.add_column("node")
    for name, _ in runs:
        cpu.add_column(name, justify="right")
    for node in sorted({n for _, run in runs for n in run["cpu"]}):
        cpu.add_row(node, *(f"{run['cpu'][node]:.0f}" if node in run["cpu"] else "-" for _, run in runs))
    wide.print(cpu)
    for name, run in runs:
        if run["failure"] or any(c != 0 for c in run["exit"].values()):
            wide.print(f"{name}: {run['failure'] or 'stopped'}; exit codes {run['exit']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kills", type=int, default=4, help="kill -9 per round")
    ap.add_argument("--sim", action="store_true", help="also time launch/sim.yaml to its first /detections")
    ap.add_argument("--faults", action="store_true", help="also time /detections gaps of launch/sim.yaml after faults")
    ap.add_argument(
        "--rig", type=float, default=0.0, metavar="S", help="only: sim.yaml, sync node vs in-process, S s a run"
    )
    ap.add_argument(
        "--rig-rounds", type=int, default=2, metavar="N", help="runs of each variant, alternating (default 2)"
    )
    ap.add_argument(
        "--rig-compare",
        choices=("sync", "precision"),
        default="sync",
        help="what the --rig variants differ in: where the sync runs (default), or the network's precision",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fsb-") as tmp:
        runtime = Path(tmp) / "run"
        runtime.mkdir(mode=0o700)
        os.environ[ENV_RUNTIME_DIR] = str(runtime)
        os.environ[ENV_GRAPH] = GRAPH
        if args.rig > 0:
            rig_bench(args.rig, args.rig_rounds, Path(tmp), args.rig_compare)
            return
        graph = Path(tmp) / "graph.yaml"
        graph.write_text(graph_yaml(args.nodes))
        registry = Registry(runtime, GRAPH)
        python = bare_python("pass", args.rounds)
        runtime_import = bare_python("import fusion_stream.runtime.node", args.rounds)
        starts, respawns, stops = [], [], []
        with console.status("launching") as status:
            for r in range(args.rounds):
                status.update(f"round {r + 1} of {args.rounds}")
                start, rs, stop = one_round(graph, args.nodes, registry, args.kills)
                starts.append(start)
                respawns += rs
                stops.append(stop)
            if args.sim:
                status.update("launch/sim.yaml")
                sim = sim_round(Registry(runtime, "sim"))
            if args.faults:
                status.update("launch/sim.yaml: faults")
                faults = faults_round(Registry(runtime, "sim"))
    table = Table(title=f"{args.nodes} nodes, {args.rounds} rounds, {len(respawns)} kills ({os.cpu_count()} cores)")
    for col in ("measure", "p50 ms", "max ms"):
        table.add_column(col, justify="left" if col == "measure" else "right")

    def row(name: str, values: list[float]) -> None:
        table.add_row(name, f"{statistics.median(values) * 1e3:.0f}", f"{max(values) * 1e3:.0f}")

    row("baseline: python -c pass", python)
    row("baseline: python -c 'import fusion_stream.runtime.node'", runtime_import)
    row(f"start: launch → first message from all {args.nodes}", starts)
    row("respawn: kill -9 → first message of the successor (50 ms backoff)", respawns)
    row("stop: SIGINT → launcher and every node gone", stops)
    if args.sim:
        row("launch/sim.yaml: launch → first /detections", [sim[0]])
        row("launch/sim.yaml: SIGINT → every node gone", [sim[1]])
    console.print(table)
    if args.faults:
        gaps = Table(title="launch/sim.yaml: longest gap in /detections around a fault (0.5 s respawn backoff)")
        for col in ("fault", "gap ms", "SIGCONT → detection ms"):
            gaps.add_column(col, justify="left" if col == "fault" else "right")
        for name, (gap, after) in faults.items():
            gaps.add_row(name, f"{gap * 1e3:.0f}", "" if after is None else f"{after * 1e3:.0f}")
        console.print(gaps)


if __name__ == "__main__":
    main()
