"""An in-process test double for nodes: a node type's real ``setup`` without sockets or processes.

:class:`NodeHarness` builds a real :class:`~fusion_stream.runtime.node.Node` whose transport is
replaced: publishers keep what they send, subscriptions are fed by the test, and the clock is a
:class:`~fusion_stream.runtime.clock.ReplayClock` that moves only when told. Everything else is
the node's own code: its params are converted and checked as ``run_node`` does, every message
goes through the wire encoder and decoder (so what a test sees is what a subscriber would get),
timers fire by the node's own schedule, and diagnostics are the node's real reports::

    from fusion_stream.nodes import relay
    from fusion_stream.runtime.testing import NodeHarness

    with NodeHarness(relay, params={"input": "/a", "output": "/b"}) as h:
        h.feed("/a", cloud)
        assert h.published["/b"] == [cloud]

Each fed message is delivered at once (a subscription never has a backlog, so ``latest`` and
``queue_size`` change nothing here), and a node does not receive what it publishes itself.
"""

from __future__ import annotations

import itertools
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from fusion_stream.core import msgs, wire
from fusion_stream.errors import UsageError
from fusion_stream.runtime import params as params_mod
from fusion_stream.runtime.clock import ReplayClock
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.security import CurveKeys
from fusion_stream.runtime.shm import ShmMapper
from fusion_stream.runtime.transport import (
    DEFAULT_QUEUE_SIZE,
    Publisher,
    PublisherStats,
    Subscriber,
    SubscriberStats,
)

DEFAULT_START_NS = 1_700_000_000 * 10**9
"""Where a harness's clock starts: a plausible wall-clock time (2023-11-14), not the epoch."""


class NodeType(Protocol):
    """What a node module declares (``nodes/*.py``): its ``Params`` and ``setup(node, params)``."""

    Params: type[Any]
    setup: Callable[[Node, Any], None]


class CapturedPublisher(Publisher):
    """A :class:`Publisher` whose frames go to a function instead of a socket (its ``publish`` is
    the real one: type check, sequence numbers, wire encoding, statistics)."""

    def __init__(
        self, topic: str, *, src: int, deliver: Callable[[list[bytes]], None], msg_type: type[msgs.Message] | None
    ) -> None:
        self.topic = wire.check_topic(topic)
        self.msg_type = msg_type
        self.src = src
        self.stats = PublisherStats()
        self.endpoint = f"harness://{topic}"
        self.remote_endpoint = None
        self._topic_bytes = topic.encode()
        self._seq = 0
        self._entry_path = None
        self._type = msg_type.__name__ if msg_type is not None else ""
        self._node = ""
        self._deliver = deliver
        self._pool = None
        self.closed = False

    def _send(self, frames: list[wire.Frame]) -> None:
        # bytes, as a socket would deliver them: the receiver shares no array with the sender
        self._deliver([f.tobytes() if hasattr(f, "tobytes") else bytes(f) for f in frames])

    def close(self) -> None:
        self.closed = True


class FedSubscriber(Subscriber):
    """A :class:`Subscriber` whose frames are queued by the harness instead of read from a socket
    (its ``recv_envelope`` is the real one: decoding, malformed and lost counts, statistics)."""

    def __init__(
        self,
        topics: str | Sequence[str],
        *,
        endpoints: Sequence[str] | None = None,
        registry: Registry | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        latest: bool = False,
        timeout: float | None = None,
        max_bytes: int = wire.DEFAULT_MAX_BYTES,
        context: object = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.topics = tuple([topics] if isinstance(topics, str) else topics)
        if not self.topics:
            raise UsageError("a subscription needs at least one topic")
        for t in self.topics:
            wire.check_topic(t)
        self.latest = latest
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.stats = SubscriberStats()
        self._shm = ShmMapper()
        self._local_srcs = None  # the harness is the only sender
        self._stats_lock = threading.Lock()
        self._wanted = {t.encode() for t in self.topics}
        self._last_seq: dict[int, int] = {}
        self._pump = None
        self._queue: list[list[bytes]] = []
        self.closed = False

    def put(self, frames: list[bytes]) -> None:
        """Queue one raw message (its frames) for the next receive."""
        self._queue.append(frames)

    def _next_frames(self) -> list[Any] | None:
        return self._queue.pop(0) if self._queue else None

    def _wait(self, timeout: float | None) -> bool:
        return False  # nothing arrives but what the harness queued

    def refresh_if_due(self) -> None:
        """No publishers to discover: the harness is the only sender."""

    def close(self) -> None:
        self.closed = True


class HarnessNode(Node):
    """A :class:`Node` whose publishers and subscriptions are in-process (see :class:`NodeHarness`)."""

    def __init__(
        self,
        name: str,
        *,
        clock: ReplayClock,
        remap: Mapping[str, str] | None = None,
        on_publish: Callable[[list[bytes]], None],
        strict: bool = True,
    ) -> None:
        self._on_publish = on_publish
        self._srcs = itertools.count(1)
        self.strict = strict
        self.fed: list[FedSubscriber] = []
        super().__init__(name, clock=clock, remap=remap, handle_signals=False, diagnostics_period_s=3600.0)

    def _make_publisher(self, topic: str, kwargs: dict[str, Any]) -> Publisher:
        return CapturedPublisher(topic, src=next(self._srcs), deliver=self._on_publish, msg_type=kwargs.get("msg_type"))

    def _make_subscriber(self, topics: list[str], kwargs: dict[str, Any]) -> Subscriber:
        sub = FedSubscriber(topics, **kwargs)
        self.fed.append(sub)
        return sub

    def _close_subscriber(self, sub: Subscriber) -> None:
        sub.close()

    def _guard(self, fn: Callable[[], None], where: str) -> None:
        if not self.strict:
            super()._guard(fn, where)
            return
        fn()  # a test wants the callback's exception, not a log line and a count


class NodeHarness:
    """Run ``node_type.setup`` on an in-process node; feed it messages, move its clock, read what
    it published.

    ``params`` is a mapping (converted and checked like a params file: unknown keys and bad
    types are :class:`~fusion_stream.errors.ParamError`) or a ready ``Params`` instance. With
    ``strict`` (default) an exception in one of the node's callbacks reaches the test; without it
    the node logs and counts it as it would live (``errors`` in its diagnostics)."""

    def __init__(
        self,
        node_type: NodeType,
        params: Mapping[str, Any] | object | None = None,
        *,
        name: str | None = None,
        remap: Mapping[str, str] | None = None,
        start_ns: int = DEFAULT_START_NS,
        strict: bool = True,
    ) -> None:
        params_cls: type[Any] = node_type.Params
        if params is None or isinstance(params, Mapping):
            self.params = params_mod.convert(params_cls, dict(params or {}))
        elif isinstance(params, params_cls):
            self.params = params
        else:
            raise UsageError(f"params must be a mapping or a {params_cls.__name__}, got {type(params).__name__}")
        self.clock = ReplayClock(start_ns)
        self.published: defaultdict[str, list[msgs.Message]] = defaultdict(list)
        """Messages the node published, by topic, decoded from the bytes it sent."""
        self.envelopes: list[wire.Envelope] = []
        """Everything the node published, in order, with the transport metadata."""
        self._feeders: dict[str, Iterator[int]] = {}
        kind = getattr(node_type, "__name__", type(node_type).__name__).rsplit(".", 1)[-1]
        self.node = HarnessNode(name or kind, clock=self.clock, remap=remap, on_publish=self._keep, strict=strict)
        try:
            node_type.setup(self.node, self.params)
        except BaseException:
            self.node.close()
            raise

    def _keep(self, frames: list[bytes]) -> None:
        env = wire.decode(frames)  # what the node sent must decode, as any subscriber would need
        self.envelopes.append(env)
        self.published[env.topic].append(env.message)

    # ------------------------------------------------------------------ input

    @property
    def subscribed(self) -> list[str]:
        """The topics the node subscribes to (after remapping), in subscription order."""
        return [t for sub in self.node.fed for t in sub.topics]

    def feed(self, topic: str, msg: msgs.Message, *, pub_ns: int | None = None) -> None:
        """Deliver ``msg`` on ``topic`` to the node's subscriptions now, encoded and decoded as on
        the wire; ``pub_ns`` (default: wall-clock now, as a publisher stamps it) is the publish time."""
        seq = next(self._feeders.setdefault(topic, itertools.count(1)))
        when = time.time_ns() if pub_ns is None else pub_ns
        src = zlib.crc32(topic.encode()) | 1 << 32  # one sender per topic, apart from the node's own ids
        frames = wire.encode(topic, msg, seq=seq, src=src, pub_ns=when)
        self.feed_frames(topic, [f.tobytes() if hasattr(f, "tobytes") else bytes(f) for f in frames])

    def feed_frames(self, topic: str, frames: Sequence[bytes]) -> None:
        """Deliver raw frames (possibly malformed: the subscriber counts and drops them)."""
        wanted = [s for s in self.node._subs if topic in s.sub.topics]
        if not wanted:
            raise UsageError(f"node {self.node.name!r} subscribes to no topic {topic!r}; it reads {self.subscribed}")
        for s in wanted:
            if isinstance(s.sub, FedSubscriber):  # always: this node makes no other kind
                s.sub.put(list(frames))
            self.node._dispatch(s)

    # ------------------------------------------------------------------ time

    def now_ns(self) -> int:
        return self.clock.now_ns()

    def next_timer_ns(self) -> int | None:
        """When the node's next timer is due, or None if it has none."""
        return min((t.next_ns for t in self.node._timers), default=None)

    def tick(self) -> int:
        """Move the clock to the next timer's due time and fire what is due; the new time."""
        due = self.next_timer_ns()
        if due is None:
            raise UsageError(f"node {self.node.name!r} has no timer to tick")
        self.clock.set(max(due, self.clock.now_ns()))
        self.node._fire_timers()
        return self.clock.now_ns()

    def advance(self, seconds: float) -> int:
        """Move the clock ``seconds`` forward, firing every timer tick on the way at its own time
        (as a node that is never late would); the number of ticks fired."""
        if seconds < 0:
            raise UsageError(f"the clock only moves forward, not by {seconds} s")
        end = self.clock.now_ns() + round(seconds * 1e9)
        ticks = 0
        while (due := self.next_timer_ns()) is not None and due <= end:
            self.clock.set(max(due, self.clock.now_ns()))
            before = [t.next_ns for t in self.node._timers]
            self.node._fire_timers()
            ticks += sum(1 for t, b in zip(self.node._timers, before, strict=False) if t.next_ns != b)
        self.clock.set(end)
        return ticks

    # ------------------------------------------------------------------ output

    def diagnostics(self) -> msgs.Diagnostics:
        """The node's health report now (its own ``diagnostics()``, values added by the node included)."""
        return self.node.diagnostics()

    def close(self) -> None:
        """Close the node as at shutdown (its STALE report lands in ``published['/diagnostics']``)."""
        self.node.close()

    def __enter__(self) -> NodeHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
