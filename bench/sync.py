"""Benchmark: throughput and added latency of the synchronization policies.

Four simulated inputs with stamp jitter and transport delay: LiDAR 10 Hz (the reference),
camera 30 Hz, radar 13 Hz, audio 50 Hz (20 ms chunks). Every policy gets the same arrival
sequence. Reported:

* messages/s through ``add`` (and ``poll`` for the live policy), pure Python, wall clock;
  a baseline loop that only appends the same messages to per-input deques runs in the same
  process, since the machine's speed varies from run to run;
* the latency the policy itself adds: emission time minus the arrival of the set's last member,
  in simulated time (every input on time), plus the wall time of the ``add`` call that emits.

Targets (issue): >= 50,000 messages/s per policy; <= 1 ms added latency for the live policy.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque

from rich.console import Console
from rich.table import Table

from fusion_stream.sync import ApproximateTimePolicy, InputConfig, ReferenceWindowPolicy

MS = 1_000_000
RATES_HZ = (("lidar", 10.0), ("camera", 30.0), ("radar", 13.0), ("audio", 50.0))
Arrival = tuple[int, int, int, int]  # (arrival_ns, input, stamp_ns, duration_ns)


def arrivals(seconds: float, seed: int = 0) -> list[Arrival]:
    """The sensors' messages in arrival order: stamps jitter by +-1 ms, delivery takes 1-3 ms."""
    rng = random.Random(seed)
    out: list[Arrival] = []
    for index, (name, rate) in enumerate(RATES_HZ):
        period = int(1e9 / rate)
        duration = period if name == "audio" else 0
        phase = rng.randrange(period)
        for k in range(int(seconds * rate)):
            stamp = max(0, phase + k * period + rng.randint(-MS, MS))
            out.append((stamp + duration + rng.randint(MS, 3 * MS), index, stamp, duration))
    out.sort()
    return out


def live_policy() -> ReferenceWindowPolicy[int]:
    return ReferenceWindowPolicy(
        [
            InputConfig("lidar", "reference"),
            InputConfig("camera", "nearest", slop_ns=20 * MS, period_ns=30 * MS),
            InputConfig("radar", "nearest", slop_ns=40 * MS, period_ns=70 * MS),
            InputConfig("audio", "window", window_ns=100 * MS),
        ],
        deadline_ns=100 * MS,
    )


def run_baseline(seq: list[Arrival]) -> float:
    queues: list[deque[tuple[int, int]]] = [deque(maxlen=64) for _ in RATES_HZ]
    t0 = time.perf_counter()
    for arrival, index, stamp, _ in seq:
        queues[index].append((stamp, arrival))
    return len(seq) / (time.perf_counter() - t0)


def run_live(seq: list[Arrival]) -> tuple[float, list[float], list[float], int, int]:
    policy = live_policy()
    added_ms: list[float] = []
    call_us: list[float] = []
    sets = partial = 0
    t0 = time.perf_counter()
    for n, (arrival, index, stamp, duration) in enumerate(seq):
        c0 = time.perf_counter()
        emitted = policy.add(index, stamp, n, arrival, duration)
        if n % 4 == 0:  # a node polls on a timer; here every few messages
            emitted += policy.poll(arrival)
        if emitted:
            call_us.append((time.perf_counter() - c0) * 1e6)
        for s in emitted:
            sets += 1
            partial += bool(s.missing)
            added_ms.append((arrival - s.last_arrival_ns) / MS)
    rate = len(seq) / (time.perf_counter() - t0)
    return rate, added_ms, call_us, sets, partial


def run_approximate(seq: list[Arrival]) -> tuple[float, int]:
    policy: ApproximateTimePolicy[int] = ApproximateTimePolicy(4, 10)
    sets = 0
    t0 = time.perf_counter()
    for n, (_, index, stamp, _) in enumerate(seq):
        sets += len(policy.add(index, stamp, n))
    return len(seq) / (time.perf_counter() - t0), sets


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=300.0, help="simulated sensor time (default 300)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per policy, best reported (default 3)")
    args = ap.parse_args(argv)
    console = Console(width=150)
    seq = arrivals(args.seconds)
    console.print(f"{len(seq):,} messages, {args.seconds:.0f} s of 4 sensors (10/30/13/50 Hz)")
    base = max(run_baseline(seq) for _ in range(args.repeat))
    live_runs = [run_live(seq) for _ in range(args.repeat)]
    live = max(live_runs, key=lambda r: r[0])
    approx = max((run_approximate(seq) for _ in range(args.repeat)), key=lambda r: r[0])

    table = Table(
        "policy",
        "msg/s",
        "vs baseline",
        "sets",
        "added latency p50 / p99 / max",
        "emitting call p50 / p99",
        "target",
        title="bench/sync.py",
    )
    table.add_row("deque append (baseline)", f"{base:,.0f}", "1.00x", "-", "-", "-", "-")
    rate, added, call_us, sets, partial = live
    ok = rate >= 50_000 and pct(added, 0.5) + pct(call_us, 0.5) / 1000 <= 1.0
    table.add_row(
        "ReferenceWindowPolicy",
        f"{rate:,.0f}",
        f"{rate / base:.3f}x",
        f"{sets:,} ({partial} partial)",
        f"{pct(added, 0.5):.2f} / {pct(added, 0.99):.2f} / {max(added):.2f} ms",
        f"{pct(call_us, 0.5):.0f} / {pct(call_us, 0.99):.0f} µs",
        ">= 50k msg/s, <= 1 ms: " + ("met" if ok else "MISSED"),
    )
    arate, asets = approx
    table.add_row(
        "ApproximateTimePolicy",
        f"{arate:,.0f}",
        f"{arate / base:.3f}x",
        f"{asets:,}",
        "-",
        "-",
        ">= 50k msg/s: " + ("met" if arate >= 50_000 else "MISSED"),
    )
    console.print(table)


if __name__ == "__main__":
    main()
