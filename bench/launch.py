"""Benchmark: how long the supervisor takes to bring a graph up, to bring a killed node back, and
to take the graph down, next to what a bare Python process costs on this machine in the same run.

Baselines (same run, since these machines' speed varies): ``python -c pass`` and
``python -c "import fusion_stream.node"``, the floor every node process pays.

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

    python bench/launch.py              # 8 nodes, 5 rounds
    python bench/launch.py --nodes 16 --rounds 3 --sim
    python bench/launch.py --rounds 1 --kills 1 --faults
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
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fusion_stream.registry import ENV_GRAPH, ENV_RUNTIME_DIR, Registry
from fusion_stream.transport import Subscriber

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kills", type=int, default=4, help="kill -9 per round")
    ap.add_argument("--sim", action="store_true", help="also time launch/sim.yaml to its first /detections")
    ap.add_argument("--faults", action="store_true", help="also time /detections gaps of launch/sim.yaml after faults")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fsb-") as tmp:
        runtime = Path(tmp) / "run"
        runtime.mkdir(mode=0o700)
        os.environ[ENV_RUNTIME_DIR] = str(runtime)
        os.environ[ENV_GRAPH] = GRAPH
        graph = Path(tmp) / "graph.yaml"
        graph.write_text(graph_yaml(args.nodes))
        registry = Registry(runtime, GRAPH)
        python = bare_python("pass", args.rounds)
        runtime_import = bare_python("import fusion_stream.node", args.rounds)
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
    row("baseline: python -c 'import fusion_stream.node'", runtime_import)
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
