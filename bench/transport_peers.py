"""The peers of bench/transport.py: iceoryx2 and Eclipse Zenoh, each used as its own docs show.

Both are optional and live only in the bench's environment (``scripts/bench-env.sh`` installs
``bench/requirements-peers.txt`` into ``.venv-bench``); the product never imports them.

What each side does, the same for both peers and the same as raw pyzmq where it can be:

* the publisher owns one prebuilt array per trial; for each message it takes a buffer from the
  peer's shared memory (iceoryx2: ``loan_slice_uninit``; Zenoh: its SHM provider's ``alloc``),
  fills it with the array's bytes, writes two send times in the first 16 bytes (``t_fill``:
  before the fill, ``t_send``: after it) and sends it. ``now - t_fill`` is comparable with our
  copied-in path (``shm``), ``now - t_send`` with a loan (``loan``), from one trial;
* the subscriber touches the payload as raw pyzmq does (``np.frombuffer(...).reshape(...)``);
  iceoryx2 hands out a view of shared memory; Zenoh's Python API has no zero-copy read (a
  ``ZShm`` has no buffer interface), so the payload is copied out with ``to_bytes()``, as its
  examples do; its SHM buffer also takes only ``bytes``, so the fill is ``arr.tobytes()``;
* iceoryx2's publish-subscribe has no wake-up of its own: the publisher notifies an event
  service of the same name after each send and the subscriber blocks on its listener, as the
  iceoryx2 event-based example does. Zenoh runs a callback on its own thread (z_sub_thr.py);
* a warm-up message is shorter than 16 bytes; the subscriber skips those.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

Peer = Literal["iceoryx2", "zenoh"]
PEERS: tuple[Peer, ...] = ("iceoryx2", "zenoh")
PEER_MODULES: dict[Peer, str] = {"iceoryx2": "iceoryx2", "zenoh": "zenoh"}
INSTALL_HINT = "scripts/bench-env.sh (or pip install -r bench/requirements-peers.txt)"
WARMUP = b"w"
STAMP_BYTES = 16
IDLE_S = 0.1  # the subscriber stops once the sender is done and nothing came for this long
ZENOH_DEFAULT_POOL = 1 << 20


class Acked(Protocol):
    """What the subscriber reports: messages received so far (a shared ctypes value)."""

    value: int


def missing_peers() -> dict[Peer, str]:
    """Peers whose package is not importable here, with the line that says how to get them."""
    return {p: f"{p} not installed: {INSTALL_HINT}" for p in PEERS if importlib.util.find_spec(PEER_MODULES[p]) is None}


@dataclass
class SubResult:
    """What a subscribing process saw in one trial (ours, raw pyzmq or a peer)."""

    received: int = 0
    elapsed_s: float = 0.0
    """First to last received timed message (throughput)."""
    wire_bytes: int = 0
    """Bytes of all frames of one timed message."""
    latencies_ns: list[int] = field(default_factory=list)
    """Peers: from before the fill (comparable with a copied-in frame)."""
    latencies_loaned_ns: list[int] = field(default_factory=list)
    """Peers only: from after the fill (comparable with a loaned frame)."""
    lost_reported: int | None = None
    """Ours only: ``Subscriber.stats.lost`` (sequence gaps), to check against sent - received."""


@dataclass(frozen=True)
class PeerTrial:
    """What a peer needs to know about a trial (built by transport.py from its Trial)."""

    peer: Peer
    key: str
    """Service name (iceoryx2) or key expression (Zenoh), unique per trial."""
    socket_path: str
    """Zenoh: the unix socket the publisher listens on and the subscribers connect to."""
    nbytes: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    depth: int
    """Queue depth (the HWM of the zmq trials)."""
    subscribers: int


def _import(module: str) -> Any:
    """A peer's package, imported only when a trial uses it (untyped: not in the product's venv)."""
    return importlib.import_module(module)


def stamp(buf: np.ndarray, t_fill: int) -> None:
    """Write the two send times into the first 16 bytes of a filled uint8 buffer."""
    times = buf[:STAMP_BYTES].view(np.int64)
    times[0] = t_fill
    times[1] = time.monotonic_ns()


class _Receiver:
    """Counting and stamping shared by the peer subscribers (the per-message work)."""

    def __init__(self, trial: PeerTrial, test: str, acked: Acked, samples: int) -> None:
        self.trial = trial
        self.latency = test == "latency"
        self.acked = acked
        self.samples = samples
        self.res = SubResult()
        self.t_first = self.t_last = 0.0
        self.first = threading.Event()
        self.full = threading.Event()

    def on_payload(self, payload: Any) -> None:
        """One received payload (any buffer): touch it as raw pyzmq does, count it, stamp it."""
        now = time.monotonic_ns()
        buf = np.frombuffer(payload, np.uint8)
        self.first.set()
        if buf.size < STAMP_BYTES:
            return  # warm-up
        np.frombuffer(payload, self.trial.dtype).reshape(self.trial.shape)
        res = self.res
        if self.latency:
            times = buf[:STAMP_BYTES].view(np.int64)
            res.latencies_ns.append(now - int(times[0]))
            res.latencies_loaned_ns.append(now - int(times[1]))
            if len(res.latencies_ns) >= self.samples:
                self.full.set()
        self.t_last = time.perf_counter()
        if res.received == 0:
            self.t_first = self.t_last
            res.wire_bytes = buf.size
        res.received += 1
        self.acked.value = res.received

    def result(self) -> SubResult:
        self.res.elapsed_s = self.t_last - self.t_first
        return self.res


# --------------------------------------------------------------------------- iceoryx2


class IceoryxPub:
    """A publish-subscribe service of byte slices sized for the payload, plus an event to wake."""

    def __init__(self, trial: PeerTrial) -> None:
        iox2 = self.iox2 = _import("iceoryx2")
        iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
        self.node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        name = iox2.ServiceName.new(trial.key)
        self.service = _iceoryx_service(iox2, self.node, name, trial)
        self.publisher = self.service.publisher_builder().initial_max_slice_len(trial.nbytes).create()
        self.event = self.node.service_builder(name).event().open_or_create()
        self.notifier = self.event.notifier_builder().create()

    def send_warmup(self) -> None:
        sample = self.publisher.loan_slice_uninit(len(WARMUP))
        np.frombuffer(sample.payload().as_memory_view(), np.uint8)[:] = np.frombuffer(WARMUP, np.uint8)
        sample.assume_init().send()
        self.notifier.notify()

    def send(self, arr: np.ndarray) -> None:
        t_fill = time.monotonic_ns()
        sample = self.publisher.loan_slice_uninit(arr.nbytes)
        buf = np.frombuffer(sample.payload().as_memory_view(), np.uint8)
        np.copyto(buf, arr.reshape(-1).view(np.uint8))
        stamp(buf, t_fill)
        sample.assume_init().send()
        self.notifier.notify()

    def close(self) -> None:
        del self.notifier, self.event, self.publisher, self.service, self.node


class IceoryxSub:
    """Blocks on the event listener, then drains the subscriber, as iceoryx2's event example."""

    def __init__(self, trial: PeerTrial) -> None:
        iox2 = self.iox2 = _import("iceoryx2")
        iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
        self.trial = trial
        self.node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        name = iox2.ServiceName.new(trial.key)
        self.service = _iceoryx_service(iox2, self.node, name, trial)
        self.subscriber = self.service.subscriber_builder().buffer_size(trial.depth).create()
        self.event = self.node.service_builder(name).event().open_or_create()
        self.listener = self.event.listener_builder().create()
        self.wait_s = iox2.Duration.from_millis(int(IDLE_S * 1000))

    def run(self, test: str, ready: Any, done: Any, acked: Acked, samples: int, timeout_s: float) -> SubResult:
        rx = _Receiver(self.trial, test, acked, samples)
        receive, on_payload = self.subscriber.receive, rx.on_payload
        deadline = time.monotonic() + timeout_s
        while True:
            got = 0
            self.listener.timed_wait(self.wait_s)
            while (sample := receive()) is not None:
                on_payload(sample.payload().as_memory_view())
                del sample  # hands the slot back to the publisher
                got += 1
            if rx.first.is_set() and not ready.is_set():
                ready.set()
            if rx.full.is_set() or (got == 0 and done.is_set()):
                break
            if not rx.first.is_set() and time.monotonic() > deadline:
                raise TimeoutError(f"iceoryx2: no warm-up message on {self.trial.key}")
        return rx.result()

    def close(self) -> None:
        del self.listener, self.event, self.subscriber, self.service, self.node


def _iceoryx_service(iox2: Any, node: Any, name: Any, trial: PeerTrial) -> Any:
    return (
        node.service_builder(name)
        .publish_subscribe(iox2.Slice[ctypes.c_uint8])
        .max_subscribers(max(trial.subscribers, 1))
        .subscriber_max_buffer_size(trial.depth)
        .history_size(0)
        .open_or_create()
    )


# --------------------------------------------------------------------------- Zenoh


def _zenoh_session(trial: PeerTrial, role: Literal["listen", "connect"]) -> Any:
    """A peer-mode session on a unix socket (the bench's ipc://), multicast scouting off."""
    zenoh = _import("zenoh")
    zenoh.init_log_from_env_or("error")
    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5(f"{role}/endpoints", f'["unixsock-stream/{trial.socket_path}"]')
    conf.insert_json5("scouting/multicast/enabled", "false")
    return zenoh.open(conf)


class ZenohPub:
    """A declared publisher putting buffers from the session's POSIX SHM provider."""

    def __init__(self, trial: PeerTrial) -> None:
        zenoh = self.zenoh = _import("zenoh")
        self.session = _zenoh_session(trial, "listen")
        pool = max(ZENOH_DEFAULT_POOL, (trial.depth // 2 + 4) * trial.nbytes)
        self.provider = zenoh.shm.ShmProvider.default_backend(pool)
        self.policy = zenoh.shm.BlockOn(zenoh.shm.GarbageCollect())
        self.publisher = self.session.declare_publisher(trial.key)

    def send_warmup(self) -> None:
        self.publisher.put(WARMUP)

    def send(self, arr: np.ndarray) -> None:
        t_fill = time.monotonic_ns()
        sbuf = self.provider.alloc(arr.nbytes, policy=self.policy)
        head = arr.reshape(-1).view(np.uint8)[:STAMP_BYTES].copy()
        sbuf[:] = arr.tobytes()  # the SHM buffer takes bytes only
        stamp(head, t_fill)
        sbuf[0:STAMP_BYTES] = head.tobytes()
        self.publisher.put(sbuf)

    def close(self) -> None:
        self.publisher.undeclare()
        self.session.close()


class ZenohSub:
    """A subscriber with a callback on Zenoh's thread (its throughput example's way)."""

    def __init__(self, trial: PeerTrial) -> None:
        self.trial = trial
        self.session = _zenoh_session(trial, "connect")
        self.rx: _Receiver | None = None
        self.subscriber = self.session.declare_subscriber(trial.key, self._on_sample)

    def _on_sample(self, sample: Any) -> None:
        if self.rx is not None:
            self.rx.on_payload(sample.payload.to_bytes())  # no zero-copy read in the Python API

    def run(self, test: str, ready: Any, done: Any, acked: Acked, samples: int, timeout_s: float) -> SubResult:
        rx = self.rx = _Receiver(self.trial, test, acked, samples)
        if not rx.first.wait(timeout_s):
            raise TimeoutError(f"zenoh: no warm-up message on {self.trial.key}")
        ready.set()
        while not (rx.full.is_set() or done.is_set()):
            rx.full.wait(IDLE_S)
        last = -1
        while not rx.full.is_set() and rx.res.received != last:  # drain: stop once idle
            last = rx.res.received
            rx.full.wait(IDLE_S)
        self.rx = None
        return rx.result()

    def close(self) -> None:
        self.subscriber.undeclare()
        self.session.close()


def make_pub(trial: PeerTrial) -> IceoryxPub | ZenohPub:
    return IceoryxPub(trial) if trial.peer == "iceoryx2" else ZenohPub(trial)


def make_sub(trial: PeerTrial) -> IceoryxSub | ZenohSub:
    return IceoryxSub(trial) if trial.peer == "iceoryx2" else ZenohSub(trial)
