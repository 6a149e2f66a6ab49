"""`fusion-stream demo`: run the default graph (``launch/sim.yaml``) for a while and show what flows.

The simulated camera, LiDAR, radar and microphone array, ground truth and the synchronizer, each
in its own process under the supervisor. The console shows, per topic, the rate, bandwidth, loss
and the latency from capture stamp to arrival here, and for ``/sync/frames`` how many sets were
partial; for ``/detections``, detections per frame, and its stamp→here latency is the end-to-end
latency from the sensor capture stamp to the detections arriving here. A second table says what
each node cost (CPU share of one core, resident memory, from its own ``/diagnostics``) and what it
warned about, and the end names the sources that fell behind: the nodes a busy machine starved.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fusion_stream.core import msgs
from fusion_stream.errors import UsageError
from fusion_stream.graph import launch
from fusion_stream.graph.supervisor import Supervisor
from fusion_stream.runtime.introspect import RateMeter
from fusion_stream.runtime.node import DIAGNOSTICS_TOPIC
from fusion_stream.runtime.registry import Registry, explicit_graph, running_graphs
from fusion_stream.runtime.transport import Subscriber

SYNC_TOPIC = "/sync/frames"
DETECTIONS_TOPIC = "/detections"


@dataclass
class TopicStats:
    topic: str
    meter: RateMeter = field(default_factory=lambda: RateMeter(200))
    latency_ns: list[int] = field(default_factory=list)
    count: int = 0
    lost: int = 0
    partial: int = 0
    boxes: int = 0
    shm: bool = False
    """Arrays came through shared memory (the MB/s are the payload's, not the wire's)."""

    def row(self) -> tuple[str, str, str, str, str, str]:
        rate = self.meter.rate()
        lat = np.asarray(self.latency_ns[-2000:], dtype=np.float64) / 1e6
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if lat.size else (float("nan"),) * 2
        extra = f"{self.lost}" + (f" ({self.partial} partial)" if self.topic == SYNC_TOPIC else "")
        if self.topic == DETECTIONS_TOPIC and self.count:
            extra += f" ({self.boxes / self.count:.1f} boxes/frame)"
        return (
            self.topic,
            str(self.count),
            f"{rate.rate_hz:.1f}" if rate else "-",
            (f"{rate.bytes_per_s / 1e6:.1f}" + (" shm" if self.shm else "")) if rate else "-",
            f"{p50:.2f} / {p99:.2f}",
            extra,
        )


HEADERS = ("topic", "msgs", "rate Hz", "MB/s", "stamp→here p50 / p99 ms", "lost")
NODE_HEADERS = ("node", "CPU % mean / max", "RSS MB", "warnings")


@dataclass
class NodeStats:
    """What a node said about itself on ``/diagnostics`` during the run."""

    node: str
    cpu_pct: list[float] = field(default_factory=list)
    rss_mb: float = 0.0
    warnings: dict[str, int] = field(default_factory=dict)
    """Kind of WARN (its message without figures) → how many reports said it."""
    last_warning: dict[str, str] = field(default_factory=dict)
    frames_skipped: int = 0
    below_rate: bool = False
    """Some report had a source below 90 % of its nominal rate (the runtime's own rule)."""

    def add(self, report: msgs.Diagnostics) -> None:
        values = report.values
        if "busy_s" not in values:  # a watchdog's busy heartbeat carries no figures
            cpu = values.get("cpu_pct")
            if isinstance(cpu, int | float):
                self.cpu_pct.append(float(cpu))
            rss = values.get("rss_mb")
            if isinstance(rss, int | float):
                self.rss_mb = max(self.rss_mb, float(rss))
            skipped = values.get("frames_skipped")
            if isinstance(skipped, int):
                self.frames_skipped = skipped
            for key, nominal in values.items():  # pub.<topic>.nominal_hz beside pub.<topic>.rate_hz_5s
                if key.endswith(".nominal_hz") and isinstance(nominal, int | float):
                    rate = values.get(key.removesuffix("nominal_hz") + "rate_hz_5s")
                    self.below_rate |= isinstance(rate, int | float) and rate < 0.9 * nominal
        if report.level >= msgs.Level.WARN and report.message:
            for part in report.message.split("; "):
                kind = " ".join(w for w in part.split() if not any(c.isdigit() for c in w))
                self.warnings[kind] = self.warnings.get(kind, 0) + 1
                self.last_warning[kind] = part

    @property
    def cpu_mean(self) -> float:
        return float(np.mean(self.cpu_pct)) if self.cpu_pct else float("nan")

    def row(self) -> tuple[str, str, str, str]:
        cpu = f"{self.cpu_mean:.0f} / {max(self.cpu_pct):.0f}" if self.cpu_pct else "-"
        said = [f"{self.last_warning[k]} (x{n})" for k, n in sorted(self.warnings.items(), key=lambda kv: -kv[1])]
        return self.node, cpu, f"{self.rss_mb:.0f}" if self.rss_mb else "-", "; ".join(said[:2])


def short_of_cpu(nodes: dict[str, NodeStats]) -> list[str]:
    """Sources that fell behind (skipped frames or ran below their nominal rate), worst first,
    each with what it cost: the nodes a busy machine starved."""
    behind = [n for n in nodes.values() if n.frames_skipped or n.below_rate]
    behind.sort(key=lambda n: -n.frames_skipped)
    return [
        f"{n.node} ({n.frames_skipped} frames skipped, {n.cpu_mean:.0f} % of a core)"
        if n.frames_skipped
        else f"{n.node} (below its nominal rate, {n.cpu_mean:.0f} % of a core)"
        for n in behind
    ]


@dataclass
class DemoResult:
    topics: dict[str, TopicStats]
    exit_codes: dict[str, int]
    failure: str | None
    log_tail: list[str]
    nodes: dict[str, NodeStats] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.failure is None
            and all(c == 0 for c in self.exit_codes.values())
            and all(s.count > 0 for s in self.topics.values())
        )


def load_graph(launch_file: str | None = None, args: dict[str, object] | None = None) -> launch.LaunchFile:
    """The demo's launch file (default ``sim``), checked."""
    return launch.load(launch.find(launch_file or "sim"), args)


def choose_graph_name(launch_name: str, running: set[str]) -> str:
    """The graph the demo runs as: the named one (``--graph``, ``$FUSION_STREAM_GRAPH``), else the
    launch file's (``sim``), so that ``fusion-stream record --all`` finds it as the README says.
    A named graph that already runs is refused; the default one gets a suffix (``sim-2``)."""
    named = explicit_graph()
    if named is not None:
        if named in running:
            raise UsageError(f"graph {named!r} is already running; stop it, or name another with --graph NAME")
        return named
    name, n = launch_name, 1
    while name in running:
        n += 1
        name = f"{launch_name}-{n}"
    return name


def run_demo(
    duration_s: float = 10.0,
    on_update: Callable[[dict[str, TopicStats]], None] | None = None,
    launch_file: str | None = None,
    args: dict[str, object] | None = None,
    graph_name: str | None = None,
    loaded: launch.LaunchFile | None = None,
) -> DemoResult:
    """Launch the graph (as ``graph_name``, default :func:`choose_graph_name`), watch its topics
    for ``duration_s``, stop everything cleanly and remove the graph's then empty folder.
    ``loaded``: the launch file already loaded by :func:`load_graph` (else it is loaded here)."""
    graph = loaded or load_graph(launch_file, args)
    name = graph_name or choose_graph_name(graph.graph, {g.name for g in running_graphs()})
    registry = Registry(graph=name)
    tail: deque[str] = deque(maxlen=40)
    sup = Supervisor(graph, registry=registry, output=tail.append)
    topics = sorted({t for n in graph.nodes for t in n.topics.outputs})
    stats = {t: TopicStats(t) for t in topics}
    nodes = {n.name: NodeStats(n.name) for n in graph.nodes}
    try:
        sup.start()
        with (
            Subscriber(topics, registry=registry, queue_size=256) as sub,
            Subscriber(DIAGNOSTICS_TOPIC, registry=registry, queue_size=256) as diag,
        ):
            # The clock starts once every topic has delivered: start-up (imports, the first frame's
            # scene building, the model's warm-up) is not what the table measures.
            deadline = time.monotonic() + 90.0
            silent = set(topics)
            while silent and not sup.done:
                if time.monotonic() > deadline:
                    sup.failure = f"no message within 90 s on {sorted(silent)}"
                    break
                env = sub.recv_envelope(timeout=0.05)
                if env is not None:
                    silent.discard(env.topic)
                while diag.recv(timeout=0) is not None:
                    pass  # reports of the start-up are not the run's
                sup.step()
            end = time.monotonic() + duration_s
            next_update = 0.0
            while (remaining := end - time.monotonic()) > 0 and not sup.done:
                env = sub.recv_envelope(timeout=min(remaining, 0.05))
                if env is not None:
                    s = stats[env.topic]
                    s.count += 1
                    s.meter.add(time.monotonic_ns(), env.nbytes + env.shm_bytes)
                    s.shm = s.shm or env.shm_bytes > 0
                    s.latency_ns.append(time.time_ns() - env.message.stamp_ns)
                    if isinstance(env.message, msgs.SyncedFrame) and env.message.missing:
                        s.partial += 1
                    elif isinstance(env.message, msgs.Detections):
                        s.boxes += len(env.message.boxes)
                while (report := diag.recv(timeout=0)) is not None:
                    if isinstance(report, msgs.Diagnostics) and report.node in nodes:
                        nodes[report.node].add(report)
                sup.step()
                if on_update and time.monotonic() >= next_update:
                    on_update(stats)
                    next_update = time.monotonic() + 0.5
            for topic, lost in sub.stats.lost_by_topic.items():
                stats[topic].lost = lost
    finally:
        codes = sup.shutdown()
        registry.remove_if_empty()
    return DemoResult(stats, codes, sup.failure, list(tail), nodes)
