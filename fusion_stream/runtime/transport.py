"""Publish and subscribe to typed messages over ZeroMQ.

Each :class:`Publisher` owns one PUB socket for one topic and registers its endpoint (see
:mod:`fusion_stream.runtime.registry`), so a :class:`Subscriber` can find a topic by name alone. Explicit
``ipc://`` and ``tcp://`` endpoints work too.

Back-pressure policy, chosen for sensors: a publisher never waits for a slow subscriber. ZeroMQ
PUB sockets drop messages for a peer whose queue is full, so queues are bounded on both sides
(``queue_size`` messages) and a subscriber learns of the loss through sequence gaps
(:attr:`SubscriberStats.lost`). A consumer that must always see the newest frame sets
``latest=True``: each receive drains what is queued and returns only the newest per topic.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import zmq

from fusion_stream.core import msgs, wire
from fusion_stream.errors import (
    GraphNotFoundError,
    MessageTypeError,
    ParamError,
    TopicNotFoundError,
    TransportError,
    WireError,
)
from fusion_stream.runtime.registry import (
    Registry,
    TopicEntry,
    default_runtime_dir,
    find_graph,
    similar_topics,
)
from fusion_stream.runtime.security import CurveKeys, curve_client, serve_curve
from fusion_stream.runtime.shm import DEFAULT_SLOTS, DEFAULT_THRESHOLD, ShmMapper, ShmPool, segment_prefix, shm_wanted

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE: Final = 32
# Plain ints: pyzmq's enum flags cost a conversion on every call of the hot path.
_NOBLOCK: Final = int(zmq.NOBLOCK)
_POLLIN: Final = int(zmq.POLLIN)
_EVENTS: Final = int(zmq.EVENTS)
_RCVMORE: Final = int(zmq.RCVMORE)


def _recv_parts(sock: zmq.Socket[Any], max_bytes: int) -> list[Any]:
    """One multipart message: topic and header as bytes, array frames without a copy.

    (Small frames are cheaper copied than wrapped in zmq.Frame objects, large ones are not.)
    A message with more frames than :data:`wire.MAX_FRAMES` or more bytes than ``max_bytes`` is
    read to its end and released frame by frame, then refused with :class:`WireError`: nothing a
    peer sends can make this process hold more than one bounded message per receive."""
    parts: list[Any] = [sock.recv(_NOBLOCK)]
    total = len(parts[0])
    if sock.getsockopt(_RCVMORE):
        parts.append(sock.recv(_NOBLOCK))
        total += len(parts[1])
        while sock.getsockopt(_RCVMORE):
            if len(parts) >= wire.MAX_FRAMES or total > max_bytes:
                return _refuse_rest(sock, len(parts), total, max_bytes)
            frame = sock.recv(_NOBLOCK, copy=False)
            total += len(frame)
            parts.append(frame)
    if total > max_bytes:
        raise WireError("oversized", f"message of {total} bytes exceeds {max_bytes}")
    return parts


def _refuse_rest(sock: zmq.Socket[Any], n: int, total: int, max_bytes: int) -> list[Any]:
    while sock.getsockopt(_RCVMORE):
        total += len(sock.recv(_NOBLOCK, copy=False))  # dropped at once
        n += 1
    raise WireError(
        "oversized", f"message of {n} frames, {total} bytes exceeds {wire.MAX_FRAMES} frames or {max_bytes} bytes"
    )


_REFRESH_S: Final = 0.1  # how often a waiting subscriber looks for new publishers
_DISCONNECT_GRACE_S: Final = 2.0  # how long a link outlives its publisher's registry entry


def _context() -> zmq.Context[zmq.Socket[bytes]]:
    return zmq.Context.instance()


def _given_registry(registry: Registry | None, graph: str | None) -> Registry | None:
    """The registry a caller chose: ``registry``, or the one of ``graph``; None if neither."""
    if registry is not None and graph is not None:
        raise ParamError("graph", f"pass registry= or graph=, not both (graph={graph!r}, registry={registry!r})")
    return registry if registry is not None else (Registry(graph=graph) if graph is not None else None)


@dataclass(slots=True)
class PublisherStats:
    """What a publisher sent, for diagnostics."""

    sent: int = 0
    bytes: int = 0
    shm_fallback: int = 0
    """Arrays sent as bytes because subscribers held views of every shared-memory slot (or
    loaned as plain arrays for that reason)."""
    shm_loans: int = 0
    """Loaned arrays sent as their own slot's descriptor, with no copy (:meth:`Publisher.loan`)."""


@dataclass(slots=True)
class SubscriberStats:
    """What a subscriber received and what it lost, for diagnostics."""

    received: int = 0
    bytes: int = 0
    lost: int = 0
    """Messages a publisher sent that never arrived (sequence gaps: full queues, late join); in
    ``latest`` mode the messages skipped on purpose are :attr:`superseded`, not lost."""
    lost_by_topic: Counter[str] = field(default_factory=Counter)
    superseded: int = 0
    """Messages skipped in ``latest`` mode because a newer one was already queued."""
    malformed: Counter[str] = field(default_factory=Counter)
    """Dropped undecodable messages, by :attr:`WireError.reason`."""


class Publisher:
    """Publishes messages of one topic on its own PUB socket.

    ``endpoint`` defaults to a private ``ipc://`` socket (``tcp://127.0.0.1`` on a random port if
    the path would be too long); ``tcp://HOST:0`` picks a free port. ``remote_endpoint`` binds the
    same socket a second time for subscribers on other machines (a multi-host graph's TCP
    endpoint); it is not registered here, the other hosts' launchers register it there. With
    ``curve`` keys every ``tcp://`` endpoint requires CurveZMQ; ``ipc://`` sockets are protected by
    the private runtime directory instead. ``msg_type`` registers the topic's type at once (so
    ``fusion-stream topics`` shows it before the first message) and refuses any other type;
    without it the first message sets it. Arrays are sent without a copy, so do not modify an
    array after publishing the message that holds it.

    On an ``ipc://`` endpoint, arrays of ``shm_threshold`` bytes or more are copied into a
    shared-memory pool of ``shm_slots`` slots and a descriptor is sent instead
    (:mod:`fusion_stream.runtime.shm`): subscribers on this machine get views with no copy; a
    slot is not rewritten while any view of it lives (all held: that array goes as bytes,
    counted in :attr:`PublisherStats.shm_fallback`). ``shm`` decides, else
    ``$FUSION_STREAM_SHM`` (``0`` / ``1``), else whether ``/dev/shm`` exists; no room there also
    means bytes (logged once). With a ``tcp://`` endpoint the option is ignored, and a
    ``remote_endpoint`` gets its own socket on which the other hosts receive the bytes as before.

    The graph is ``graph`` (or ``registry``), else ``$FUSION_STREAM_GRAPH``, else the one graph
    running on this machine, else ``default`` (several running: :class:`GraphAmbiguousError`).
    """

    def __init__(
        self,
        topic: str,
        *,
        endpoint: str | None = None,
        remote_endpoint: str | None = None,
        registry: Registry | None = None,
        graph: str | None = None,
        register: bool = True,
        node: str = "",
        queue_size: int = DEFAULT_QUEUE_SIZE,
        context: zmq.Context[Any] | None = None,
        curve: CurveKeys | None = None,
        msg_type: type[msgs.Message] | None = None,
        shm: bool | None = None,
        shm_slots: int = DEFAULT_SLOTS,
        shm_threshold: int = DEFAULT_THRESHOLD,
    ) -> None:
        self.topic = wire.check_topic(topic)
        self.msg_type = msg_type
        self.src = secrets.randbits(32)
        self._pool: ShmPool | None = None
        self.stats = PublisherStats()
        self._registry = _given_registry(registry, graph) or find_graph() or Registry()
        self._topic_bytes = topic.encode()
        self._seq = 0
        self._entry_path = None
        self._type = msg_type.__name__ if msg_type is not None else ""
        self._node = node
        self._socket = (context or _context()).socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, queue_size)
        self._socket.setsockopt(zmq.LINGER, 200)
        self._curve = curve
        self._bytes_socket: zmq.Socket[Any] | None = None
        """With shared memory and a ``remote_endpoint``: the other hosts' socket, which gets bytes."""
        self.endpoint = ""
        self.remote_endpoint = None
        try:
            self.endpoint = self._bind(endpoint, self._socket)
            tcp = self.endpoint.startswith("tcp://")
            local_shm = shm_wanted(shm) and self.endpoint.startswith("ipc://")
            if remote_endpoint is not None:
                remote = self._socket
                if local_shm:
                    remote = self._bytes_socket = (context or _context()).socket(zmq.PUB)
                    remote.setsockopt(zmq.SNDHWM, queue_size)
                    remote.setsockopt(zmq.LINGER, 200)
                self.remote_endpoint = self._bind(remote_endpoint, remote)
            if local_shm:
                prefix = segment_prefix(self._registry.path, self.src)
                self._pool = ShmPool(prefix, slots=shm_slots, threshold=shm_threshold)
            self._server_key = curve.public.decode() if curve is not None and tcp else ""
            if register:
                self._entry_path = self._registry.register(self._entry())
        except BaseException:
            self._socket.close(linger=0)
            if self._bytes_socket is not None:
                self._bytes_socket.close(linger=0)
            if self.endpoint.startswith("ipc://"):  # the second bind failed: leave no socket file
                Path(self.endpoint[len("ipc://") :]).unlink(missing_ok=True)
            raise

    def _bind(self, endpoint: str | None, sock: zmq.Socket[Any]) -> str:
        if endpoint is None:
            endpoint = self._registry.ipc_endpoint(self.src) or "tcp://127.0.0.1:0"
        # ZeroMQ takes the security mechanism from the socket's options at each bind
        if self._curve is not None:
            if endpoint.startswith("tcp://"):
                serve_curve(sock, self._curve)
            else:
                sock.curve_server = False  # ZeroMQ's NULL mechanism
        try:
            if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
                sock.bind_to_random_port(endpoint[: -len(":0")])
            else:
                sock.bind(endpoint)
        except zmq.ZMQError as err:
            raise TransportError(f"cannot bind {endpoint} for topic {self.topic}: {err}", endpoint=endpoint) from err
        last = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return last.replace("tcp://0.0.0.0:", f"tcp://{socket.gethostname()}:")

    def _entry(self) -> TopicEntry:
        return TopicEntry(
            self.topic,
            self.endpoint,
            self._type,
            self._node,
            os.getpid(),
            socket.gethostname(),
            self.src,
            self._server_key,
            self._pool.threshold if self._pool is not None else 0,
        )

    def publish(self, msg: msgs.Message) -> int:
        """Send ``msg`` now (never blocks); returns the bytes sent."""
        if self.msg_type is not None and type(msg) is not self.msg_type:
            raise MessageTypeError(type(msg).__name__, self._type, topic=self.topic)
        if not self._type and self._entry_path is not None:
            self._type = type(msg).__name__
            self._entry_path = self._registry.register(self._entry())
        self._seq += 1
        pub_ns = time.time_ns()
        pool = self._pool
        fallbacks = 0 if pool is None else pool.fallbacks
        loans = 0 if pool is None else pool.loans_published
        frames = wire.encode(self.topic, msg, seq=self._seq, src=self.src, pub_ns=pub_ns, shm=pool)
        try:
            self._send(frames)
        finally:
            if pool is not None:
                pool.flush()  # the copies into shared memory, while the descriptors travel
        if pool is not None:
            self.stats.shm_fallback += pool.fallbacks - fallbacks
            self.stats.shm_loans += pool.loans_published - loans
            if self._bytes_socket is not None:  # other hosts never get a descriptor
                remote = wire.encode(self.topic, msg, seq=self._seq, src=self.src, pub_ns=pub_ns)
                # a published loan's slot can be lent again at once: ZeroMQ must copy it now
                copy = pool.loans_published != loans
                self._bytes_socket.send_multipart(cast("list[Any]", remote), flags=_NOBLOCK, copy=copy)
        n = wire.frames_nbytes(frames)
        self.stats.sent += 1
        self.stats.bytes += n
        return n

    def loan(self, shape: int | tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
        """A writable array to fill and then publish inside a message with no copy.

        With a shared-memory pool it lives in a free slot (write-locked while lent) and
        :meth:`publish` sends that slot's descriptor; publish it once, and do not write to it
        afterwards (it becomes read-only). Without a pool (shm off, ``tcp://``), or when every
        slot is held by subscribers, it is a plain array that publish sends as usual: callers
        write the same code either way. A loan never published is returned to the pool by
        :meth:`release`, by :meth:`loaned`'s exit, or when it is garbage-collected. An array
        bigger than a slot makes a pool of bigger slots, or is refused (:class:`TransportError`)
        while smaller loans are out."""
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        dt = np.dtype(dtype)
        if self._pool is not None and (arr := self._pool.loan(dims, dt)) is not None:
            return arr
        if self._pool is not None:
            self.stats.shm_fallback += 1
        return np.empty(dims, dt)

    def release(self, arr: np.ndarray) -> None:
        """Return an unpublished loan to the pool (nothing to do for a plain array)."""
        if self._pool is not None and self._pool.owns(arr):
            self._pool.release(arr)

    @contextlib.contextmanager
    def loaned(self, shape: int | tuple[int, ...], dtype: npt.DTypeLike) -> Iterator[np.ndarray]:
        """:meth:`loan` for a ``with`` block: an array not published inside it is released at its end."""
        arr = self.loan(shape, dtype)
        try:
            yield arr
        finally:
            if arr.flags.writeable:  # published or released arrays are read-only
                self.release(arr)

    def _send(self, frames: list[wire.Frame]) -> None:
        """Hand the encoded frames to the socket (an in-process test double keeps them instead)."""
        self._socket.send_multipart(cast("list[Any]", frames), flags=_NOBLOCK, copy=False)

    @property
    def shm_segment(self) -> str | None:
        """Name of the shared-memory segment in use; None if this publisher does not use one."""
        return None if self._pool is None else self._pool.segment

    def close(self) -> None:
        """Unregister, flush for up to 200 ms, close; remove the socket file of an ipc endpoint
        and the shared-memory segment."""
        if self._pool is not None:
            self._pool.close()
        if self._entry_path is not None:
            self._registry.unregister(self._entry_path)
            self._entry_path = None
        if self._bytes_socket is not None:
            self._bytes_socket.close()
        if not self._socket.closed:
            self._socket.close()
            if self.endpoint.startswith("ipc://"):
                Path(self.endpoint[len("ipc://") :]).unlink(missing_ok=True)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _refuse_remote(ref: wire.ShmRef) -> memoryview:
    raise WireError("shm-remote", f"descriptor of {ref.segment!r} from a publisher not on this host's ipc://")


class _LatestPump(threading.Thread):
    """Owns a SUB socket and reads it continuously, keeping only the newest message per topic.

    Reading all the time is what makes "latest" true: if nobody read the socket, ZeroMQ's
    bounded queues would fill with old messages and drop the new ones at the publisher.
    A byte on an inproc PAIR socket tells the consumer (or a poller) that something is waiting.
    """

    def __init__(self, owner: Subscriber, ctx: zmq.Context[Any]) -> None:
        super().__init__(name=f"latest{list(owner.topics)}", daemon=True)
        self.owner = owner
        self.lock = threading.Lock()
        self.slot: OrderedDict[bytes, list[Any]] = OrderedDict()
        self.skipped: dict[int, list[int]] = {}
        """Publisher id → sequence numbers superseded before the consumer took them."""
        self.stopping = threading.Event()
        address = f"inproc://fusion-stream-latest-{id(self):x}-{secrets.token_hex(4)}"
        self.wake_recv = ctx.socket(zmq.PAIR)
        self.wake_recv.bind(address)
        self._wake_send = ctx.socket(zmq.PAIR)
        self._wake_send.setsockopt(zmq.SNDHWM, 1)
        self._wake_send.connect(address)

    def run(self) -> None:
        sock = self.owner._socket
        try:
            while not self.stopping.is_set():
                if time.monotonic() >= self.owner._next_refresh:
                    self.owner._sync_connections()
                if not sock.poll(100, zmq.POLLIN):
                    continue
                fresh = False
                while True:
                    try:
                        frames = _recv_parts(sock, self.owner._max_message_bytes)
                    except zmq.Again:
                        break
                    except WireError as err:
                        self.owner._count_malformed(err)
                        continue
                    topic = frames[0]
                    if topic not in self.owner._wanted:
                        continue
                    with self.lock:
                        old = self.slot.pop(topic, None)
                        if old is not None:
                            self.owner.stats.superseded += 1
                            origin = wire.peek_origin(old[1]) if len(old) > 1 else None
                            if origin is not None:  # skipped on purpose: not a transport loss
                                self.skipped.setdefault(origin[0], []).append(origin[1])
                        self.slot[topic] = frames
                    fresh = True
                if fresh:
                    with contextlib.suppress(zmq.Again):  # a wake-up is already pending
                        self._wake_send.send(b"", zmq.NOBLOCK)
        finally:
            sock.close(linger=0)
            self._wake_send.close(linger=0)

    def take(self) -> list[Any] | None:
        with self.lock:
            return self.slot.popitem(last=False)[1] if self.slot else None

    def count_skipped(self, src: int, after: int, upto: int) -> int:
        """How many of ``src``'s messages with ``after < seq < upto`` were superseded (forgotten)."""
        with self.lock:
            seqs = self.skipped.pop(src, None)
            if not seqs:
                return 0
            n = sum(1 for q in seqs if after < q < upto)
            rest = [q for q in seqs if q > upto]
            if rest:
                self.skipped[src] = rest
            return n

    def clear_wakeups(self) -> None:
        with contextlib.suppress(zmq.Again):
            while True:
                self.wake_recv.recv(zmq.NOBLOCK)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=2.0)
        self.wake_recv.close(linger=0)


class Subscriber:
    """Receives messages of one or more topics.

    Without ``endpoints`` the topics are found in the registry, now and as publishers come and
    go. Iterating yields messages until ``timeout`` seconds pass with none (forever if None).
    Malformed messages are counted in :attr:`stats`, logged once per reason and skipped.

    By default messages queue up to ``queue_size`` (per publisher) in arrival order; when a
    reader falls further behind, ZeroMQ drops the newest and :attr:`SubscriberStats.lost` counts
    them. With ``latest=True`` a background thread drains the socket and each receive returns
    the newest message per topic (older ones count as :attr:`SubscriberStats.superseded`).
    Publishers on other hosts that require CurveZMQ are reached with ``curve`` keys, by default
    those named by ``$FUSION_STREAM_CURVE_KEYS`` (directory) and ``$FUSION_STREAM_HOST_NAME``.

    The graph is ``graph`` (or ``registry``), else ``$FUSION_STREAM_GRAPH``, else the one graph
    running on this machine: found now, or (while none runs) as soon as one starts. Several
    running and none named: :class:`GraphAmbiguousError`, naming them.
    """

    def __init__(
        self,
        topics: str | Sequence[str],
        *,
        endpoints: Sequence[str] | None = None,
        registry: Registry | None = None,
        graph: str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        latest: bool = False,
        timeout: float | None = None,
        max_bytes: int = wire.DEFAULT_MAX_BYTES,
        context: zmq.Context[Any] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.topics = tuple([topics] if isinstance(topics, str) else topics)
        if not self.topics:
            raise ParamError("topics", "a Subscriber needs at least one topic")
        for t in self.topics:
            wire.check_topic(t)
        self.latest = latest
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._max_message_bytes = max_bytes + wire.MAX_HEADER_BYTES + wire.MAX_TOPIC_LEN
        self.stats = SubscriberStats()
        self._shm = ShmMapper()
        all_ipc = all(e.startswith("ipc://") for e in endpoints or ())
        self._local_srcs: frozenset[int] | None = None if all_ipc else frozenset()
        """Publishers whose descriptors are honoured: those found on this host's ``ipc://``
        endpoints in the registry; None: any (explicit endpoints, all ``ipc://``)."""
        self._stats_lock = threading.Lock()  # the latest-mode pump counts malformed messages too
        self._wanted = {t.encode() for t in self.topics}
        self._discover = endpoints is None
        self._runtime_dir = default_runtime_dir()
        self._registry = _given_registry(registry, graph)
        if self._registry is None and self._discover:
            self._registry = find_graph(runtime_dir=self._runtime_dir)
        self._connected: set[str] = set()
        self._leaving: dict[str, float] = {}  # endpoint -> when it left the registry
        self._last_seq: dict[int, int] = {}
        self._next_refresh = 0.0
        self._curve = curve
        self._curve_from_env = curve is None  # loaded when a publisher first needs CurveZMQ
        self._warned_keys: set[str] = set()
        ctx = context or _context()
        self._socket = ctx.socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, queue_size)
        self._socket.setsockopt(zmq.LINGER, 0)
        # Let ZeroMQ refuse a huge frame before allocating it, not after (it disconnects the peer).
        # The limit is per frame; what a message holds in all is bounded in _recv_parts.
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_bytes + wire.MAX_HEADER_BYTES)
        for wanted in self._wanted:
            self._socket.setsockopt(zmq.SUBSCRIBE, wanted)
        for ep in endpoints or ():
            self._connect(ep)
        self._started = False
        self._refresh_failing = False
        self._sync_connections()
        self._started = True
        self._pump: _LatestPump | None = None
        if latest:
            self._pump = _LatestPump(self, ctx)
            self._pump.start()

    @property
    def socket(self) -> zmq.Socket[Any]:
        """A socket that polls readable when a message is waiting (see :class:`Node`)."""
        return self._pump.wake_recv if self._pump is not None else self._socket

    @property
    def endpoints(self) -> frozenset[str]:
        return frozenset(self._connected)

    @property
    def registry(self) -> Registry | None:
        """The registry of the graph subscribed to; None while no graph runs (nor was named)."""
        return self._registry

    def _find_registry(self) -> Registry | None:
        """The graph's registry, looking for the one running graph until there is one."""
        if self._registry is None:
            self._registry = find_graph(runtime_dir=self._runtime_dir)
            if self._registry is not None:
                log.info("subscriber %s: found the running graph %s", self.topics, self._registry.graph)
        return self._registry

    def _connect(self, endpoint: str, server_key: str = "") -> None:
        if server_key and self._curve_from_env:
            # a program of the user's on a multi-host graph: the keys named in its environment
            self._curve_from_env = False
            try:
                self._curve = CurveKeys.from_env()
            except TransportError as err:
                log.warning("%s; CurveZMQ publishers are skipped", err)
        if server_key:
            if self._curve is None:
                if endpoint not in self._warned_keys:
                    self._warned_keys.add(endpoint)
                    log.warning("%s requires CurveZMQ keys; this subscriber has none, skipping it", endpoint)
                return
            curve_client(self._socket, self._curve, server_key.encode())
        elif self._curve is not None:
            self._socket.curve_server = False  # back to no security for this link (ZeroMQ's NULL)
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as err:
            raise TransportError(f"cannot connect to {endpoint}: {err}", endpoint=endpoint) from err
        self._connected.add(endpoint)
        log.debug("subscriber %s connected to %s", self.topics, endpoint)

    def _sync_connections(self) -> None:
        """Connect to publishers that appeared in the registry, drop those that left.

        Runs in the thread that owns the SUB socket (the pump's, in latest mode)."""
        self._next_refresh = time.monotonic() + _REFRESH_S
        if not self._discover:
            return
        try:
            registry = self._find_registry()
            if registry is None:
                return
            entries = registry.entries()
        except (TransportError, OSError) as err:
            if not self._started:  # at start the caller learns why it cannot subscribe
                raise
            if not self._refresh_failing:  # later: keep the links we have, say so once, retry
                log.warning("cannot refresh publishers of %s (keeping current links): %s", self.topics, err)
            self._refresh_failing = True
            return
        if self._refresh_failing:
            log.warning("publishers of %s: registry readable again", self.topics)
            self._refresh_failing = False
        wanted = {e.endpoint: e.server_key for e in entries if e.topic in self.topics}
        host = socket.gethostname()
        self._local_srcs = frozenset(
            e.src for e in entries if e.topic in self.topics and e.host == host and e.endpoint.startswith("ipc://")
        )
        current = set(wanted)
        for ep in current - self._connected:
            self._connect(ep, wanted[ep])
        now = time.monotonic()
        for ep in current:
            self._leaving.pop(ep, None)
        # A publisher unregisters as it exits, often right after its last words (a STALE
        # report). Disconnecting at once would discard what is still queued from it, so
        # the link is only dropped after a grace period.
        for ep in self._connected - current:
            if now - self._leaving.setdefault(ep, now) < _DISCONNECT_GRACE_S:
                continue
            try:
                self._socket.disconnect(ep)
            except zmq.ZMQError:
                log.debug("disconnect from %s: already gone", ep)
            self._connected.discard(ep)
            del self._leaving[ep]

    def refresh_if_due(self) -> None:
        """Look for new publishers if it is time to (the pump does this itself in latest mode)."""
        if self._pump is None and time.monotonic() >= self._next_refresh:
            self._sync_connections()

    def wait_for_publishers(self, timeout: float) -> None:
        """Block until every topic has a registered publisher; else :class:`TopicNotFoundError`."""
        deadline = time.monotonic() + timeout
        while True:
            registry = self._find_registry()
            registered = set() if registry is None else {e.topic for e in registry.entries()}
            absent = [t for t in self.topics if t not in registered]
            if not absent:
                if self._pump is None:
                    self._sync_connections()
                return
            if time.monotonic() >= deadline:
                if registry is None:
                    raise GraphNotFoundError(str(self._runtime_dir), timeout)
                known = sorted(registered)
                raise TopicNotFoundError(
                    absent[0], str(registry.path), published=known, similar=similar_topics(absent[0], known)
                )
            time.sleep(0.02)

    # ------------------------------------------------------------------ receiving

    def _count_malformed(self, err: WireError, *, unexpected: bool = False) -> None:
        with self._stats_lock:
            self.stats.malformed[err.reason] += 1
            first = self.stats.malformed[err.reason] == 1
        if first:
            # str(err): a kept log record (pytest keeps them) must not keep the traceback, whose frames
            # can hold received views and so their shared-memory slots
            log.warning("dropping %s (further %r drops are only counted)", str(err), err.reason, exc_info=unexpected)

    def _resolver(self, frames: list[Any]) -> wire.ShmResolver:
        """The shared-memory resolver for a message: the mapper only for a publisher on this
        host's ``ipc://`` (a descriptor that came over TCP names nothing of ours)."""
        local = self._local_srcs
        if local is None or len(frames) < 3:
            return self._shm

        def resolve(ref: wire.ShmRef) -> memoryview:
            # judged only when the message holds a descriptor: a message of bytes (every message
            # without shared memory) pays nothing for it
            origin = wire.peek_origin(frames[1]) if isinstance(frames[1], bytes) else None
            return self._shm(ref) if origin is not None and origin[0] in local else _refuse_remote(ref)

        return resolve

    def _take(self, frames: list[Any]) -> wire.Envelope | None:
        """Decode one raw message; count and skip it if malformed."""
        try:
            env = wire.decode(frames, max_bytes=self.max_bytes, shm=self._resolver(frames))
        except WireError as err:
            self._count_malformed(err)
            return None
        except Exception as err:  # noqa: BLE001  # last resort: no message may stop the receiver
            self._count_malformed(WireError("decoder-bug", f"{type(err).__name__}: {err}"), unexpected=True)
            return None
        last = self._last_seq.get(env.src)
        if last is not None and env.seq > last + 1:
            gap = env.seq - last - 1
            if self._pump is not None:
                gap -= min(gap, self._pump.count_skipped(env.src, last, env.seq))
            if gap:
                self.stats.lost += gap
                self.stats.lost_by_topic[env.topic] += gap
        if last is None or env.seq > last:
            self._last_seq[env.src] = env.seq
        self.stats.received += 1
        self.stats.bytes += env.nbytes
        return env

    def _next_frames(self) -> list[Any] | None:
        if self._pump is not None:
            self._pump.clear_wakeups()
            return self._pump.take()
        sock = self._socket
        # Asking ZMQ_EVENTS is much cheaper than a non-blocking receive that raises zmq.Again.
        while sock.getsockopt(_EVENTS) & _POLLIN:  # type: ignore[operator]
            try:
                frames = _recv_parts(sock, self._max_message_bytes)
            except WireError as err:
                self._count_malformed(err)
                continue
            if frames[0] in self._wanted:  # else: a prefix match of another topic
                return frames
        return None

    def _wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s (None: forever) for something to read, refreshing meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        items = [(self.socket, _POLLIN)]
        while True:
            self.refresh_if_due()
            step = _REFRESH_S if deadline is None else min(_REFRESH_S, deadline - time.monotonic())
            if zmq.zmq_poll(items, max(0, int(step * 1000))):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def recv_envelope(self, timeout: float | None = -1.0) -> wire.Envelope | None:
        """The next message with its metadata, or None after ``timeout`` s.

        ``timeout=-1`` (default) uses the subscriber's own ``timeout``; 0 never waits.
        """
        wait = self.timeout if timeout is not None and timeout < 0 else timeout
        deadline = None if wait is None else time.monotonic() + wait
        self.refresh_if_due()  # also when polled with timeout 0, or new publishers go unseen
        while True:
            frames = self._next_frames()
            if frames is not None:
                env = self._take(frames)
                if env is not None:
                    return env
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if not self._wait(remaining):
                return None

    def recv(self, timeout: float | None = -1.0) -> msgs.Message | None:
        """The next message, or None after ``timeout`` s (see :meth:`recv_envelope`)."""
        env = self.recv_envelope(timeout)
        return None if env is None else env.message

    def __iter__(self) -> Iterator[msgs.Message]:
        while (msg := self.recv()) is not None:
            yield msg

    def envelopes(self) -> Iterator[wire.Envelope]:
        while (env := self.recv_envelope()) is not None:
            yield env

    def close(self) -> None:
        if self._pump is not None:
            self._pump.stop()  # closes the SUB socket from its own thread
            self._pump = None
        elif not self._socket.closed:
            self._socket.close(linger=0)
        self._shm.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
