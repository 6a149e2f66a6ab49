"""A background thread that follows every topic of a graph, newest message first.

The viewer and the Foxglove bridge both want "whatever the graph publishes, as it appears":
topics are found in the endpoint registry every half second, each gets a latest-only
subscriber (a viewer that falls behind skips frames instead of lagging), and every message goes
to ``on_message``. ``on_tick`` runs about ten times a second for periodic work.

A registry the tap must not trust (another user's directory, a link: see
:mod:`fusion_stream.runtime.registry`) is reported in :attr:`TopicTap.problem` and looked at again
later; the thread keeps running, so fixing the directory brings the graph in."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import zmq

from fusion_stream.core.wire import Envelope
from fusion_stream.errors import TransportError
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber

log = logging.getLogger(__name__)

SKIP_TOPICS = frozenset({"/sync/frames"})
"""Not followed by default: a synced set repeats its members' data (half the graph's bandwidth)."""


class TopicTap:
    """Follows every topic of a graph as publishers come and go and hands each message to a callback."""

    def __init__(
        self,
        on_message: Callable[[str, Envelope], None],
        *,
        registry: Registry | None = None,
        skip: frozenset[str] = SKIP_TOPICS,
        on_tick: Callable[[], None] | None = None,
        name: str = "topic-tap",
    ) -> None:
        self.registry = registry or Registry()
        self.skip = skip
        self.on_message = on_message
        self.on_tick = on_tick
        self.subscribers: dict[str, Subscriber] = {}
        self.problem: str | None = None
        """Why the graph's topics cannot be followed now (a refused registry), or None."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def topics(self) -> list[str]:
        return sorted(self.subscribers)

    def _discover(self, poller: zmq.Poller) -> None:
        try:
            entries = self.registry.entries()
        except TransportError as err:
            if self.problem != str(err):
                log.error("%s", err)
            self.problem = str(err)
            return
        self.problem = None
        for entry in entries:
            if entry.topic in self.subscribers or entry.topic in self.skip:
                continue
            try:
                sub = Subscriber(entry.topic, registry=self.registry, latest=True)
            except TransportError as err:  # the registry changed under us: next round
                log.warning("cannot follow %s: %s", entry.topic, err)
                continue
            self.subscribers[entry.topic] = sub
            poller.register(sub.socket, zmq.POLLIN)
            log.info("following %s", entry.topic)

    def _run(self) -> None:
        poller = zmq.Poller()
        next_discovery = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_discovery:
                    self._discover(poller)
                    next_discovery = now + 0.5
                if self.on_tick is not None:
                    self.on_tick()
                ready = dict(poller.poll(100))
                for topic, sub in list(self.subscribers.items()):
                    if sub.socket in ready and (env := sub.recv_envelope(timeout=0)) is not None:
                        self.on_message(topic, env)
        finally:
            for sub in self.subscribers.values():
                sub.close()
