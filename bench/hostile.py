"""What the pipeline withstands: the attacks of issue 17, run for real, with what each cost.

Each row is one attack against the installed command line or a running graph, measured in a
child process (exit status, wall seconds, peak RSS from ``wait4``):

* the wire decoder under a fuzz campaign (``bench/fuzz_wire.py``: 100,000 hostile messages);
* the 58-byte message (a zero-element array of shape ``[0, 2**64-1]``) sent to a running
  launcher's ``/diagnostics`` and to a relay's input: both must still run;
* MCAP decompression bombs (2 GiB of zeros in a 65 KB file, the chunk honest or lying about its
  size; the bombs are built by ``tests/test_bag_hostile.py``) through ``bag info``;
* YAML: a 700-byte alias bomb of 10**9 leaves and a 31 MB launch file through ``launch --dry-run``;
  ``/dev/zero`` as a calibration file.

    python bench/hostile.py            # about a minute
    python bench/hostile.py --frames 20000
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import zmq
from rich.console import Console
from rich.table import Table

from fusion_stream.core import wire
from fusion_stream.runtime.registry import Registry, TopicEntry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the MCAP bomb builders live with the tests that pin the behaviour down
_bags: Any = importlib.import_module("tests.test_bag_hostile")

Row = tuple[str, str, str, bool]  # attack, cases, what happened, held


def fuzz(frames: int) -> Row:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fuzz_wire.py"), "--frames", str(frames), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    doc = json.loads(out.stdout)
    refused = sum(doc["refused"].values())
    what = (
        f"{doc['decoded']:,} decoded, {refused:,} refused as WireError, "
        f"{doc['unexpected_count']} other exceptions ({doc['seconds']} s)"
    )
    return "wire.decode fuzz campaign", f"{doc['frames']:,}", what, doc["unexpected_count"] == 0


def _vm_hwm_kib(status: Path) -> int:
    """The process's peak resident memory so far, 0 once it is gone."""
    try:
        lines = status.read_text().splitlines()
    except OSError:
        return 0
    return next((int(x.split()[1]) for x in lines if x.startswith("VmHWM:")), 0)


def run_measured(args: list[str], timeout: float) -> tuple[int, str, float, int]:
    """Exit status, stderr, seconds and peak RSS (KiB) of one CLI run.

    The peak is the child's own ``VmHWM``, polled: ``wait4``'s ``ru_maxrss`` would include this
    process's memory, which a child inherits across fork and exec."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fusion_stream.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err
        )
        peak = 0
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            peak = max(peak, _vm_hwm_kib(status))
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
        rc = proc.wait()
        err.seek(0)
        return rc, err.read(), time.monotonic() - t0, peak


def cli(args: list[str], name: str, *, want: int = 2, timeout: float = 120) -> Row:
    rc, stderr, seconds, rss_kib = run_measured(args, timeout)
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    reason = last.split(": ", 2)[-1][:70]
    held = rc == want and "Traceback" not in stderr
    return name, "1", f"exit {rc} in {seconds:.2f} s, peak {rss_kib / 1024:.0f} MiB ({reason})", held


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    """A YAML document of ``width ** levels`` leaves in a few hundred bytes."""
    lines = ["    l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def tiny_graph_survives(tmp: Path) -> Row:
    """The 58-byte message on /diagnostics and on a relay's input of a running graph."""
    runtime = tmp / "rt"
    env = dict(os.environ, FUSION_STREAM_RUNTIME_DIR=str(runtime), FUSION_STREAM_GRAPH="bench")
    launch = tmp / "g.yaml"
    launch.write_text(
        "graph: bench\nexternal_topics: [/in]\nnodes:\n"
        "  - {name: relay, type: relay, params: {input: /in, output: /out}}\n"
        "  - {name: source, type: pattern, params: {kind: radar, rate_hz: 10, topic: /points}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusion_stream.cli", "launch", str(launch)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    registry = Registry(runtime, "bench")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    socks = []
    header = wire.PREFIX + msgspec.msgpack.encode(
        [1, 7, 1, 1, "x", ["PointCloud", ["x", "y", "z", "intensity"]], [["<f4", [0, 2**64 - 1], b""]]]
    )
    sent = 0
    try:
        deadline = time.monotonic() + 60
        while {e.node for e in registry.entries()} < {"relay", "source"} and time.monotonic() < deadline:
            time.sleep(0.1)
        for i, topic in enumerate(("/diagnostics", "/in")):
            s = ctx.socket(zmq.PUB)
            ep = f"ipc://{runtime}/bomb{i}.ipc"
            s.bind(ep)
            registry.register(TopicEntry(topic, ep, "PointCloud", "attacker", os.getpid(), socket.gethostname(), i))
            socks.append((topic, s))
        time.sleep(1.0)  # subscribers find the attacker
        for _ in range(50):
            for topic, s in socks:
                s.send_multipart([topic.encode(), header])
                sent += 1
            time.sleep(0.02)
        time.sleep(2.0)
        alive = proc.poll() is None
        nodes = {e.node for e in registry.entries()}
    finally:
        for _, s in socks:
            s.close(0)
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    held = alive and {"relay", "source"} <= nodes and "died" not in out
    what = f"launcher {'running' if alive else 'DEAD'}, nodes {sorted(nodes & {'relay', 'source'})} still registered"
    return "58-byte message to a running graph", f"{sent}", what, held


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the hostile-input attacks and report what held.")
    ap.add_argument("--frames", type=int, default=100_000, help="fuzz campaign size (default 100000)")
    args = ap.parse_args(argv)
    console = Console()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="fsh-") as d:
        tmp = Path(d)
        with console.status("fuzzing wire.decode"):
            rows.append(fuzz(args.frames))
        with console.status("attacking a running graph"):
            rows.append(tiny_graph_survives(tmp))
        for kind in ("zstd-honest", "zstd-lying"):
            path = _bags.BOMBS[kind](tmp / f"{kind}.mcap")
            name = f"MCAP bomb ({kind}, {path.stat().st_size // 1024} KiB → 2 GiB)"
            with console.status(name):
                rows.append(cli(["bag", "info", str(path)], f"{name}: bag info"))
        alias = tmp / "alias.yaml"
        alias.write_text(
            "graph: g\nargs:\n  big: &big\n"
            + billion_laughs()
            + "nodes:\n  - {name: a, type: relay, params: {input: /x, output: /y, extra: [*big, *big]}}\n"
        )
        rows.append(
            cli(["launch", str(alias), "--dry-run"], f"YAML alias bomb ({alias.stat().st_size} B, 10^9 leaves)")
        )
        big = tmp / "big.yaml"
        big.write_text("graph: g\nnodes:\n" + "# padding\n" * 3_100_000)
        rows.append(cli(["launch", str(big), "--dry-run"], f"launch file of {big.stat().st_size / 1e6:.0f} MB"))
        rows.append(cli(["calib", "check", "/dev/zero", "-o", str(tmp / "c")], "/dev/zero as calibration"))
    table = Table(title="What fusion_stream withstands (bench/hostile.py)")
    for col in ("attack", "cases", "what happened", "held"):
        table.add_column(col)
    for name, cases, what, held in rows:
        table.add_row(name, cases, what, "[green]yes[/]" if held else "[red]NO[/]")
    console.print(table)
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
