"""Watching a running graph: every topic's rate, the newest message of each kind, the
end-to-end latency of the detections, and plain-words status for the viewer to show.

A :class:`~fusion_stream.viewer.tap.TopicTap` thread owns the sockets; readers get a consistent
snapshot under a lock. A topic that stops publishing is
reported (with how long it has been silent) rather than silently frozen on the screen."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_stream.core import msgs
from fusion_stream.core.wire import Envelope
from fusion_stream.runtime.introspect import RateMeter
from fusion_stream.runtime.registry import Registry
from fusion_stream.viewer.scene import Latest
from fusion_stream.viewer.tap import SKIP_TOPICS, TopicTap

log = logging.getLogger(__name__)

STALE_S = 2.0
DETECTIONS_TOPIC = "/detections"


@dataclass(frozen=True)
class TopicRow:
    topic: str
    type: str
    rate_hz: float | None
    mb_per_s: float | None
    silent_s: float
    stale: bool


class GraphWatcher:
    """Subscribes to the graph's topics in a background thread (start/stop it)."""

    def __init__(self, registry: Registry | None = None, *, skip: frozenset[str] = SKIP_TOPICS) -> None:
        self.tap = TopicTap(self._on_envelope, registry=registry, skip=skip, name="viewer-watcher")
        self.registry = self.tap.registry
        self.latest = Latest()
        self.lock = threading.Lock()
        self._rates: dict[str, RateMeter] = {}
        self._types: dict[str, str] = {}
        self._last_arrival: dict[str, float] = {}
        self._e2e_ms: deque[float] = deque(maxlen=200)
        self.started = time.monotonic()
        self.received = 0

    def start(self) -> GraphWatcher:
        self.tap.start()
        return self

    def stop(self) -> None:
        self.tap.stop()

    def _on_envelope(self, topic: str, env: Envelope) -> None:
        self._take(topic, env.message, env.nbytes + env.shm_bytes)

    def _take(self, topic: str, msg: msgs.Message, nbytes: int) -> None:
        arrival = time.time_ns()
        with self.lock:
            meter = self._rates.setdefault(topic, RateMeter(window=50))
            meter.add(arrival, nbytes)
            self._types[topic] = type(msg).__name__
            self._last_arrival[topic] = time.monotonic()
            self.received += 1
            self.latest.update(topic, msg)
            if topic == DETECTIONS_TOPIC and isinstance(msg, msgs.Detections):
                self._e2e_ms.append((arrival - msg.stamp_ns) / 1e6)

    # ------------------------------------------------------------------ readers

    def rows(self) -> list[TopicRow]:
        now = time.monotonic()
        with self.lock:
            out = []
            for topic in sorted(set(self.tap.subscribers) | set(self._rates)):
                rate = self._rates[topic].rate() if topic in self._rates else None
                silent = now - self._last_arrival.get(topic, self.started)
                out.append(
                    TopicRow(
                        topic,
                        self._types.get(topic, "?"),
                        None if rate is None else rate.rate_hz,
                        None if rate is None else rate.bytes_per_s / 1e6,
                        silent,
                        silent > STALE_S,
                    )
                )
        return out

    def latency_ms(self) -> dict[str, float]:
        with self.lock:
            values = np.asarray(self._e2e_ms)
        if not len(values):
            return {}
        return {
            "p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)),
            "n": float(len(values)),
        }

    def status(self) -> list[str]:
        """What is wrong, in plain words (empty when all is well)."""
        problems = []
        if self.tap.problem is not None:  # a refused registry: the fix, not "no graph"
            return [self.tap.problem]
        if not self.tap.subscribers:
            problems.append(
                f"no graph running: nothing is registered in {self.registry.path} "
                f"(start one, e.g. `fusion-stream demo`, or pass --graph NAME)"
            )
            return problems
        for row in self.rows():
            if row.stale and row.topic != "/diagnostics":
                problems.append(f"{row.topic}: nothing for {row.silent_s:.1f} s (its publisher stopped?)")
        return problems

    def snapshot(self) -> dict[str, Any]:
        rows = self.rows()
        with self.lock:
            version = self.latest.version
            detections = self.latest.detections
        return {
            "graph": self.registry.graph,
            "version": version,
            "topics": [row.__dict__ for row in rows],
            "latency_ms": self.latency_ms(),
            "detections": None if detections is None else len(detections.boxes),
            "status": self.status(),
            "time": time.time(),
        }
