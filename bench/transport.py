"""Benchmark: fusion_stream Publisher/Subscriber against raw pyzmq PUB/SUB, two processes, one run.

What it measures, for payloads of 100 B, 64 KiB, 4 MiB (a 262144-point PointCloud, the size of a
260k-point LiDAR sweep), 6.2 MB (a 1080p RGB Image) and 40 MB (a 2.5M-point PointCloud), for three
transports: raw pyzmq, ours (today's path: arrays in ZeroMQ frames) and ``shm`` (ours with
``Publisher(shm=True)``: arrays of 64 KiB and more copied into a shared-memory slot, a descriptor
on the wire, a read-only view at the subscriber) and ``loan`` (``Publisher.loan``: the producer
fills a loaned slot, copied in from a prebuilt array, and publish sends its descriptor with no copy;
the fill counts in throughput, and is done before the latency stamp, as a producer writing its
data in place would):

* **throughput**: the publisher sends as fast as it can for a fixed time; the subscriber counts
  the messages it actually receives per second (PUB/SUB drops at the high-water mark, so messages
  *sent* per second would flatter the sender). Messages dropped on the way are reported too.
  By default the sender keeps at most HWM/2 messages unreceived (the subscriber publishes its
  count in shared memory) and sleeps when it is that far ahead: a sender spinning flat out and
  dropping at the HWM burns one of the two cores that the ZeroMQ I/O threads need, which made the
  big-payload ratio swing between 0.6x and 1.5x from run to run. ``--flat-out`` restores it.
* **one-way latency**: paced sends carrying their send time (``time.monotonic_ns()``; Linux's
  CLOCK_MONOTONIC is system-wide, so it compares across processes); the receiver subtracts it
  from its own clock once the message is decoded. Reported as p50 and p99 in microseconds.

Why raw pyzmq in the same run: absolute numbers on a small shared machine (2 cores here) move by
tens of percent from run to run, so a figure for our transport alone means little. Raw pyzmq over
the same ``ipc://`` transport, with the same high-water marks, in the same processes, alternating
with ours (``--repeat`` rounds, ABBA order, medians reported) is the floor our transport adds
to; the ratio ours/raw and the added latency are what the targets are stated in:

* at payloads >= 1 MB, throughput >= 0.9x raw;
* at 100 B, added p50 latency <= 50 us.

Raw pyzmq is written as a competent user would: ``send_multipart([topic, payload])`` with
``copy=False`` from 64 KiB up (pyzmq's own copy threshold) and ``copy=True`` below it, the same on
receive, and the receiver touches the payload (``np.frombuffer(...).reshape(...)``) as ours does.
Each side is one spawned process that keeps its sockets' context for the whole run; the parent
only orchestrates, and it prints progress only between measurements so it takes no CPU during them.

The peers a user would pick instead, when installed (``bench/transport_peers.py`` says how each
is used): ``iceoryx2`` and ``zenoh`` (Eclipse Zenoh, peer mode, its SHM provider). Each stamps
before and after filling its loaned buffer, so one trial gives a copied-in and a loaned latency.
Without them the bench says so once and runs the rest; ``scripts/bench-env.sh`` runs it in its
own environment (``.venv-bench``) with them.

Also measured: throughput with three subscribing processes (the slowest one's rate, reported as
"3 subs / 1"), and the **wake-up floor**: raw pyzmq's 100 B latency at each size's pacing (a
receiver idle for 25 ms takes longer to wake than one fed every 2 ms; no transport beats that).
Issue 21's targets are checked from the medians and shown met or missed.

Usage::

    python bench/transport.py                 # full run, about 6 min with the peers
    python bench/transport.py --quick         # smoke test, 1 subscriber
    scripts/bench-env.sh --sizes 100B,1MiB,4MiB,40MB --repeat 1   # with the peers
    python bench/transport.py --repeat 5 --json results.json
    python bench/transport.py --sizes 4MiB,6.2MB --repeat 6 --flat-out
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import zmq
from rich.console import Console
from rich.table import Table

from fusion_stream import Image, Message, PointCloud, Publisher, Registry, Subscriber

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling module
import transport_peers as peers  # a sibling module, found through the path set above

TOPIC = "/bench/data"
TOPIC_B = TOPIC.encode()
GRAPH = "bench"
WARMUP_FRAME_ID = "warmup"
STARTUP_TIMEOUT_S = 10.0
RECV_POLL_S = 0.1  # receive timeout in the measuring loops; the run ends after one idle period
WINDOW_WAIT_S = 0.0001  # how long a windowed sender sleeps when it is a full window ahead

TARGET_THROUGHPUT_RATIO = 0.9
TARGET_THROUGHPUT_MIN_BYTES = 1_000_000
TARGET_ADDED_P50_US = 50.0
TARGET_LATENCY_SIZE = "100 B"

Impl = Literal["raw", "ours", "shm", "loan", "iceoryx2", "zenoh"]
Test = Literal["throughput", "latency"]
IMPLS: tuple[Impl, ...] = ("raw", "ours", "shm", "loan")
PEER_IMPLS: tuple[Impl, ...] = peers.PEERS
MAX_SUBSCRIBERS = 3

TARGET_SHM_VS_RAW_P50 = 0.5  # a copied-in 4 MiB frame at most half raw pyzmq's one-way p50
TARGET_LOAN_P50_US = 300.0  # a loaned 4 MiB frame
TARGET_LOAN_SIZE = "4 MiB"
TARGET_LOAN_FLAT = 2.0  # loan p50 from 1 MB to 40 MB within this factor
TARGET_FANOUT_RATIO = 0.9  # throughput with three subscribers against one
TARGET_SMALL_SLACK = 1.1  # "no slower at 100 B": shm p50 within 10 % of ours (run-to-run noise)


# --------------------------------------------------------------------------- what is sent


@dataclass(frozen=True)
class SizeSpec:
    """One payload size: the array sent, queue depth and latency pacing."""

    label: str
    kind: Literal["cloud", "image"]
    shape: tuple[int, ...]
    hwm: int
    interval_s: float
    """Gap between latency sends."""
    samples: int
    """Latency samples in a full run."""

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.float32 if self.kind == "cloud" else np.uint8)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def raw_copy(self) -> bool:
        """Whether raw pyzmq copies (below pyzmq's zero-copy threshold), as a user would."""
        return self.nbytes < zmq.COPY_THRESHOLD

    def describe(self) -> str:
        if self.kind == "cloud":
            return f"PointCloud {self.shape[0]}x{self.shape[1]} f32"
        return f"Image {self.shape[0]}x{self.shape[1]}x{self.shape[2]} u8"


SIZES: tuple[SizeSpec, ...] = (
    SizeSpec("100 B", "cloud", (6, 4), hwm=1000, interval_s=0.002, samples=400),
    SizeSpec("64 KiB", "cloud", (4096, 4), hwm=1000, interval_s=0.002, samples=400),
    SizeSpec("4 MiB", "cloud", (262144, 4), hwm=32, interval_s=0.025, samples=80),
    SizeSpec("6.2 MB", "image", (1080, 1920, 3), hwm=32, interval_s=0.025, samples=80),
    SizeSpec("40 MB", "cloud", (2_500_000, 4), hwm=8, interval_s=0.1, samples=30),
)
EXTRA_SIZES: tuple[SizeSpec, ...] = (
    SizeSpec("256 KiB", "cloud", (16384, 4), hwm=200, interval_s=0.004, samples=200),
    SizeSpec("1 MiB", "cloud", (65536, 4), hwm=64, interval_s=0.01, samples=120),
)
"""Sizes between, run only when named in ``--sizes``: where shared memory starts to pay."""
SIZE_KEYS: dict[str, SizeSpec] = {
    s.label.replace(" ", ""): s for s in sorted((*SIZES, *EXTRA_SIZES), key=lambda s: s.nbytes)
}
SHM_BENCH_THRESHOLD = 64 * 1024
"""The shm trials put every array from 64 KiB into the pool, whatever the default threshold, so
that the table shows where the pool pays (the default is set from it)."""


def make_array(size: SizeSpec, seed: int) -> np.ndarray:
    """A prebuilt payload array (random contents, so nothing compresses or dedups)."""
    rng = np.random.default_rng(seed)
    if size.kind == "cloud":
        return rng.standard_normal(size.shape, dtype=np.float32)
    return rng.integers(0, 256, size.shape, dtype=np.uint8)


def make_message(size: SizeSpec, stamp_ns: int, data: np.ndarray, frame_id: str) -> Message:
    if size.kind == "cloud":
        return PointCloud(stamp_ns=stamp_ns, frame_id=frame_id, data=data)
    return Image(stamp_ns=stamp_ns, frame_id=frame_id, data=data, encoding="rgb8")


def warmup_array(size: SizeSpec) -> np.ndarray:
    """The tiny array of a warm-up message of the same type (ours); raw sends an empty frame."""
    if size.kind == "cloud":
        return np.zeros((1, 4), np.float32)
    return np.zeros((1, 1, 3), np.uint8)


@dataclass(frozen=True)
class Trial:
    impl: Impl
    test: Test
    size: SizeSpec
    endpoint: str
    duration_s: float
    samples: int
    window: int = 0
    """Throughput: most messages the sender keeps unreceived (0: send flat out, dropping at the HWM).

    Half the HWM: libzmq's pipes learn of reads in batches of HWM/2, so a full HWM in flight can
    still overflow a queue now and then."""
    subscribers: int = 1
    """Subscribing processes on the topic; throughput is the slowest one's."""

    def peer(self) -> peers.PeerTrial:
        """The trial as a peer sees it (iceoryx2, zenoh)."""
        assert self.impl in PEER_IMPLS
        path = self.endpoint.removeprefix("ipc://")
        return peers.PeerTrial(
            peer=self.impl,  # type: ignore[arg-type]  # checked above
            key="fsb/" + Path(path).parent.name + "/" + Path(path).stem,
            socket_path=path + ".zenoh",
            nbytes=self.size.nbytes,
            dtype=self.size.dtype,
            shape=self.size.shape,
            depth=self.size.hwm,
            subscribers=self.subscribers,
        )


SubResult = peers.SubResult


# --------------------------------------------------------------------------- helpers


def sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


class Progress(Protocol):
    """What the sender reads: messages received so far (one subscriber's count, or the slowest's)."""

    @property
    def value(self) -> int: ...


class SlowestAck:
    """The count of the slowest of several subscribers (each publishes its own)."""

    def __init__(self, acks: list[Any]) -> None:
        self.acks = acks

    @property
    def value(self) -> int:
        return int(min(a.value for a in self.acks))


def wait_for_receiver(sent: int, window: int, acked: Progress, end: float) -> None:
    """Sleep until at most half a window is unreceived, so the sender then sends a burst hot
    (waking up for every single message would make it pay cold-cache costs each time)."""
    while sent - acked.value > window // 2 and time.perf_counter() < end:
        time.sleep(WINDOW_WAIT_S)


def shm_slots(size: SizeSpec) -> int:
    """Slots of the shm pool: more than the throughput window (HWM/2 in flight), so no message
    still queued at the subscriber has its slot reused (it would be dropped as stale)."""
    return size.hwm // 2 + 2


def stamp_views(arrays: list[np.ndarray]) -> list[memoryview]:
    """Writable byte views of the arrays, for stamping their first 8 bytes (raw latency)."""
    return [a.reshape(-1).view(np.uint8).data for a in arrays]


# --------------------------------------------------------------------------- publishing process


class _PubSide:
    """One trial's sending end, raw or ours."""

    def __init__(self, trial: Trial, ctx: zmq.Context[Any], registry: Registry, arrays: list[np.ndarray]) -> None:
        self.trial = trial
        self.size = trial.size
        self.arrays = arrays
        self.pub: Publisher | None = None
        self.sock: zmq.Socket[Any] | None = None
        self.peer: peers.IceoryxPub | peers.ZenohPub | None = None
        if trial.impl in PEER_IMPLS:
            self.peer = peers.make_pub(trial.peer())
        elif trial.impl != "raw":
            self.pub = Publisher(
                TOPIC,
                endpoint=trial.endpoint,
                registry=registry,
                queue_size=self.size.hwm,
                shm=trial.impl in ("shm", "loan"),
                shm_slots=shm_slots(self.size),
                # a loan must fit a slot: the loan trials size the slots to the payload
                shm_threshold=max(SHM_BENCH_THRESHOLD, self.size.nbytes if trial.impl == "loan" else 0),
            )
        else:
            sock = ctx.socket(zmq.PUB)
            sock.setsockopt(zmq.SNDHWM, self.size.hwm)
            sock.setsockopt(zmq.LINGER, 200)  # as ours
            sock.bind(trial.endpoint)
            self.sock = sock

    def warm_up(self, readies: list[Event]) -> None:
        """Send warm-up messages until every subscriber has one (the slow-joiner problem)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        tiny = warmup_array(self.size)
        while not all(r.is_set() for r in readies):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.trial.impl}: subscriber got no warm-up message in {STARTUP_TIMEOUT_S} s")
            if self.pub is not None:
                self.pub.publish(make_message(self.size, time.monotonic_ns(), tiny, WARMUP_FRAME_ID))
            elif self.sock is not None:
                self.sock.send_multipart([TOPIC_B, b""])
            elif self.peer is not None:
                self.peer.send_warmup()
            time.sleep(0.002)
        time.sleep(0.02)  # let the last warm-ups drain before the clock starts

    def throughput(self, duration_s: float, window: int, acked: Progress) -> int:
        """Send as fast as possible for ``duration_s``; returns the count sent.

        With ``window`` > 0 the sender waits while that many messages are sent but not yet
        received (``acked`` is the subscriber's count), so it does not spin dropping messages
        at the HWM on a core the transport's own threads need.
        """
        arr: Any = self.arrays[0]  # pyzmq takes any buffer; numpy's stubs do not say ndarray is one
        n = 0
        end = time.perf_counter() + duration_s
        if self.pub is not None:
            publish, size, loan = self.pub.publish, self.size, self.trial.impl == "loan"
            while time.perf_counter() < end:
                if window and n - acked.value >= window:
                    wait_for_receiver(n, window, acked, end)
                    continue
                data = self.filled_loan(arr) if loan else arr  # the fill counts here: producer work
                publish(make_message(size, time.monotonic_ns(), data, "bench"))
                n += 1
        elif self.sock is not None:
            send, copy = self.sock.send_multipart, self.size.raw_copy
            while time.perf_counter() < end:
                if window and n - acked.value >= window:
                    wait_for_receiver(n, window, acked, end)
                    continue
                send([TOPIC_B, arr], copy=copy)
                n += 1
        elif self.peer is not None:
            send_peer = self.peer.send
            while time.perf_counter() < end:
                if window and n - acked.value >= window:
                    wait_for_receiver(n, window, acked, end)
                    continue
                send_peer(self.arrays[0])  # the fill counts here, as for a loan
                n += 1
        return n

    def latency(self, samples: int, interval_s: float) -> int:
        """Send ``samples`` messages ``interval_s`` apart, each carrying its send time."""
        arrays: list[Any] = list(self.arrays)
        views = stamp_views(self.arrays)
        copy = self.size.raw_copy
        next_t = time.perf_counter() + interval_s
        for i in range(samples):
            sleep_until(next_t)
            j = i & 1  # two buffers: never restamp one that may still be queued (zero-copy)
            if self.pub is not None:
                # loan: filled before the stamp, as a producer writing its data in place would
                data = self.filled_loan(arrays[j]) if self.trial.impl == "loan" else arrays[j]
                self.pub.publish(make_message(self.size, time.monotonic_ns(), data, "bench"))
            elif self.sock is not None:
                struct.pack_into("<q", views[j], 0, time.monotonic_ns())
                self.sock.send_multipart([TOPIC_B, arrays[j]], copy=copy)
            elif self.peer is not None:
                self.peer.send(self.arrays[j])  # stamps before and after the fill
            now = time.perf_counter()
            next_t = max(next_t + interval_s, now + interval_s / 2)  # no bursts after a stall
        return samples

    def filled_loan(self, arr: np.ndarray) -> np.ndarray:
        """A loaned slot holding ``arr``'s bytes (what a producer writing in place would have)."""
        assert self.pub is not None
        data = self.pub.loan(arr.shape, arr.dtype)
        np.copyto(data, arr)
        return data

    def close(self) -> None:
        if self.pub is not None:
            self.pub.close()
        if self.sock is not None:
            self.sock.close()
            Path(self.trial.endpoint.removeprefix("ipc://")).unlink(missing_ok=True)
        if self.peer is not None:
            self.peer.close()


def pub_worker(conn: Connection, readies: list[Event], done: Event, acks: list[Any], runtime_dir: str) -> None:
    """The publishing process: runs trials sent by the parent until it sends None."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    registry = Registry(runtime_dir, GRAPH)
    cache: dict[str, list[np.ndarray]] = {}
    while (trial := conn.recv()) is not None:
        assert isinstance(trial, Trial)
        arrays = cache.get(trial.size.label)
        if arrays is None:
            arrays = cache[trial.size.label] = [make_array(trial.size, seed) for seed in (1, 2)]
        side = _PubSide(trial, ctx, registry, arrays)
        try:
            conn.send("bound")
            conn.recv()  # go
            side.warm_up(readies[: trial.subscribers])
            if trial.test == "throughput":
                acked: Progress = acks[0] if trial.subscribers == 1 else SlowestAck(acks[: trial.subscribers])
                sent = side.throughput(trial.duration_s, trial.window, acked)
            else:
                sent = side.latency(trial.samples, trial.size.interval_s)
            done.set()
            conn.send(sent)
            conn.recv()  # close: the subscriber has everything
        finally:
            side.close()
        conn.send("closed")


# --------------------------------------------------------------------------- subscribing process


class _SubSide:
    """One trial's receiving end, raw or ours."""

    def __init__(self, trial: Trial, ctx: zmq.Context[Any]) -> None:
        self.trial = trial
        self.size = trial.size
        self.sub: Subscriber | None = None
        self.sock: zmq.Socket[Any] | None = None
        self.peer: peers.IceoryxSub | peers.ZenohSub | None = None
        if trial.impl in PEER_IMPLS:
            self.peer = peers.make_sub(trial.peer())
        elif trial.impl != "raw":
            self.sub = Subscriber(TOPIC, endpoints=[trial.endpoint], queue_size=self.size.hwm)
        else:
            sock = ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, self.size.hwm)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVTIMEO, int(RECV_POLL_S * 1000))
            sock.setsockopt(zmq.SUBSCRIBE, TOPIC_B)
            sock.connect(trial.endpoint)
            self.sock = sock

    def wait_first(self, ready: Event) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        if self.sub is not None:
            while self.sub.recv_envelope(timeout=RECV_POLL_S) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("ours: no warm-up message arrived")
        elif self.sock is not None:
            while True:
                try:
                    self.sock.recv_multipart()
                    break
                except zmq.Again:
                    if time.monotonic() > deadline:
                        raise TimeoutError("raw: no warm-up message arrived") from None
        ready.set()

    def run_peer(self, ready: Event, done: Event, acked: peers.Acked) -> SubResult:
        """A peer's trial: it waits for the warm-up, counts and stamps on its own (its own API)."""
        assert self.peer is not None
        return self.peer.run(self.trial.test, ready, done, acked, self.trial.samples, STARTUP_TIMEOUT_S)

    def throughput(self, done: Event, acked: peers.Acked) -> SubResult:
        """Count timed messages until the sender is done and the socket stays empty for a moment."""
        res = SubResult()
        n = 0
        t_first = t_last = 0.0
        if self.sub is not None:
            recv = self.sub.recv_envelope
            while True:
                env = recv(timeout=RECV_POLL_S)
                if env is None:
                    if done.is_set():
                        break
                    continue
                if env.message.frame_id == WARMUP_FRAME_ID:
                    continue
                t_last = time.perf_counter()
                if n == 0:
                    t_first = t_last
                    res.wire_bytes = env.nbytes
                n += 1
                acked.value = n
        elif self.sock is not None:
            recv_raw: Callable[..., list[Any]] = self.sock.recv_multipart
            copy = self.size.raw_copy
            dtype, shape = self.size.dtype, self.size.shape
            while True:
                try:
                    frames = recv_raw(copy=copy)
                except zmq.Again:
                    if done.is_set():
                        break
                    continue
                payload = frames[1]
                if len(payload) == 0:
                    continue  # warm-up
                np.frombuffer(payload, dtype).reshape(shape)
                t_last = time.perf_counter()
                if n == 0:
                    t_first = t_last
                    res.wire_bytes = sum(len(f) for f in frames)
                n += 1
                acked.value = n
        res.received = n
        res.elapsed_s = t_last - t_first
        if self.sub is not None:
            res.lost_reported = self.sub.stats.lost
        return res

    def latency(self, done: Event, samples: int) -> SubResult:
        res = SubResult()
        lat = res.latencies_ns
        if self.sub is not None:
            while len(lat) < samples:
                env = self.sub.recv_envelope(timeout=RECV_POLL_S)
                if env is None:
                    if done.is_set():
                        break
                    continue
                now = time.monotonic_ns()
                msg = env.message
                if msg.frame_id == WARMUP_FRAME_ID:
                    continue
                lat.append(now - msg.stamp_ns)
                res.wire_bytes = env.nbytes
        elif self.sock is not None:
            recv_raw: Callable[..., list[Any]] = self.sock.recv_multipart
            copy = self.size.raw_copy
            dtype, shape = self.size.dtype, self.size.shape
            while len(lat) < samples:
                try:
                    frames = recv_raw(copy=copy)
                except zmq.Again:
                    if done.is_set():
                        break
                    continue
                payload = frames[1]
                if len(payload) == 0:
                    continue
                np.frombuffer(payload, dtype).reshape(shape)
                now = time.monotonic_ns()
                lat.append(now - struct.unpack_from("<q", payload)[0])
                res.wire_bytes = sum(len(f) for f in frames)
        res.received = len(lat)
        if self.sub is not None:
            res.lost_reported = self.sub.stats.lost
        return res

    def close(self) -> None:
        if self.sub is not None:
            self.sub.close()
        if self.sock is not None:
            self.sock.close(linger=0)
        if self.peer is not None:
            self.peer.close()


def sub_worker(conn: Connection, ready: Event, done: Event, acked: ctypes.c_int64) -> None:
    """A subscribing process: runs trials sent by the parent until it sends None."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    while (trial := conn.recv()) is not None:
        assert isinstance(trial, Trial)
        side = _SubSide(trial, ctx)
        try:
            if side.peer is not None:
                res = side.run_peer(ready, done, acked)
            else:
                side.wait_first(ready)
                test = trial.test
                res = side.throughput(done, acked) if test == "throughput" else side.latency(done, trial.samples)
        finally:
            side.close()
        conn.send(res)


# --------------------------------------------------------------------------- orchestration


@dataclass
class Record:
    """One impl at one size: a value per repeat."""

    msgs_per_s: list[float] = field(default_factory=list)
    mb_per_s: list[float] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    p50_us: list[float] = field(default_factory=list)
    p99_us: list[float] = field(default_factory=list)
    latency_samples: list[int] = field(default_factory=list)
    lost_reported: list[int] = field(default_factory=list)
    """Ours: what Subscriber.stats.lost said in each throughput run (should match sent - received)."""
    wire_bytes: int = 0
    fanout_msgs_per_s: list[float] = field(default_factory=list)
    """Throughput of the slowest of ``MAX_SUBSCRIBERS`` subscribers."""
    p50_loaned_us: list[float] = field(default_factory=list)
    """Peers: p50 from after the fill (ours: see the ``loan`` impl)."""
    floor_p50_us: list[float] = field(default_factory=list)
    """Raw only: raw pyzmq's 100 B p50 at this size's pacing (the wake-up floor)."""

    @property
    def dropped(self) -> int:
        return sum(self.sent) - sum(self.received)

    def drop_fraction(self) -> float:
        return self.dropped / max(1, sum(self.sent))

    def summary(self) -> dict[str, float]:
        return {
            "msgs_per_s": median(self.msgs_per_s),
            "mb_per_s": median(self.mb_per_s),
            "p50_us": median(self.p50_us),
            "p99_us": median(self.p99_us),
            "dropped": float(self.dropped),
            "drop_fraction": self.drop_fraction(),
            "fanout_msgs_per_s": median(self.fanout_msgs_per_s),
            "p50_loaned_us": median(self.p50_loaned_us),
            "floor_p50_us": median(self.floor_p50_us),
        }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rate(res: SubResult) -> float:
    """Received messages per second (0 when fewer than two arrived)."""
    return res.received / res.elapsed_s if res.elapsed_s > 0 else 0.0


class Bench:
    """Owns the worker processes (one publisher, ``subscribers`` subscribers) and runs trials."""

    def __init__(self, runtime_dir: str, subscribers: int = 1) -> None:
        self.runtime_dir = runtime_dir
        ctx = mp.get_context("spawn")
        self.readies = [ctx.Event() for _ in range(subscribers)]
        self.done = ctx.Event()
        self.acks = [ctx.RawValue(ctypes.c_int64, 0) for _ in range(subscribers)]
        self.pub_conn, pub_child = ctx.Pipe()
        self.pub_proc = ctx.Process(
            target=pub_worker,
            args=(pub_child, self.readies, self.done, self.acks, runtime_dir),
            name="bench-pub",
            daemon=True,
        )
        self.sub_conns: list[Connection] = []
        self.sub_procs: list[BaseProcess] = []
        for i in range(subscribers):
            conn, child = ctx.Pipe()
            self.sub_conns.append(conn)
            self.sub_procs.append(
                ctx.Process(
                    target=sub_worker,
                    args=(child, self.readies[i], self.done, self.acks[i]),
                    name=f"bench-sub{i}",
                    daemon=True,
                )
            )
        for proc in (self.pub_proc, *self.sub_procs):
            proc.start()
        self._n = 0

    @staticmethod
    def _recv(conn: Connection, proc: BaseProcess, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while not conn.poll(0.2):
            if not proc.is_alive():
                raise RuntimeError(f"{proc.name} died (exit code {proc.exitcode}); see its traceback above")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proc.name} did not answer in {timeout:.0f} s")
        return conn.recv()

    def run(
        self,
        impl: Impl,
        test: Test,
        size: SizeSpec,
        duration_s: float,
        samples: int,
        window: int = 0,
        subscribers: int = 1,
    ) -> tuple[int, SubResult]:
        """One trial; returns (messages sent, what the slowest subscriber saw)."""
        self._n += 1
        endpoint = f"ipc://{self.runtime_dir}/t{self._n:04d}.ipc"
        trial = Trial(impl, test, size, endpoint, duration_s, samples, window, subscribers)
        limit = 60.0 + duration_s + samples * size.interval_s * 2
        for ready, acked in zip(self.readies, self.acks, strict=True):
            ready.clear()
            acked.value = 0
        self.done.clear()
        self.pub_conn.send(trial)
        self._recv(self.pub_conn, self.pub_proc, limit)  # bound
        for conn in self.sub_conns[:subscribers]:
            conn.send(trial)
        self.pub_conn.send("go")
        sent = int(self._recv(self.pub_conn, self.pub_proc, limit))
        results: list[SubResult] = []
        for conn, proc in zip(self.sub_conns[:subscribers], self.sub_procs, strict=False):
            res = self._recv(conn, proc, limit)
            assert isinstance(res, SubResult)
            results.append(res)
        self.pub_conn.send("close")
        self._recv(self.pub_conn, self.pub_proc, limit)  # closed
        return sent, min(results, key=rate)

    def close(self) -> None:
        for conn in (self.pub_conn, *self.sub_conns):
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in (self.pub_proc, *self.sub_procs):
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2)


@dataclass(frozen=True)
class Plan:
    repeat: int
    duration_s: float
    sample_scale: float
    quick: bool
    flat_out: bool
    sizes: tuple[SizeSpec, ...] = SIZES
    impls: tuple[Impl, ...] = IMPLS
    """Ours and raw, then whichever peers are installed."""
    subscribers: int = MAX_SUBSCRIBERS
    """1: no fan-out trial; 3: each impl's throughput also with three subscribers."""

    def samples(self, size: SizeSpec) -> int:
        return max(10, round(size.samples * self.sample_scale))


def percentile_us(latencies_ns: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(latencies_ns, dtype=np.float64) / 1e3, q)) if latencies_ns else float("nan")


def floor_size(size: SizeSpec) -> SizeSpec:
    """100 B at ``size``'s pacing: what waking the receiver costs after that long idle."""
    return replace(SIZES[0], interval_s=size.interval_s, label=f"100 B every {size.interval_s * 1e3:g} ms")


def run_all(bench: Bench, plan: Plan, console: Console) -> dict[str, dict[Impl, Record]]:
    impls = plan.impls
    results: dict[str, dict[Impl, Record]] = {s.label: {i: Record() for i in impls} for s in plan.sizes}
    per_impl = 3 if plan.subscribers > 1 else 2
    total = len(plan.sizes) * plan.repeat * (len(impls) * per_impl + 1)
    step = 0

    def show(impl: str, rep: int, what: str) -> None:
        nonlocal step
        step += 1
        console.print(f"  [{step:>3}/{total}] round {rep + 1} {impl:<8} {what}")

    for size in plan.sizes:
        console.rule(f"{size.label}: {size.describe()} ({size.nbytes:,} B), HWM {size.hwm}")
        window = 0 if plan.flat_out else size.hwm // 2  # see Trial.window
        want = plan.samples(size)
        for rep in range(plan.repeat):
            order = impls if rep % 2 == 0 else impls[::-1]  # ABC CBA
            for impl in order:
                rec = results[size.label][impl]
                sent, res = bench.run(impl, "throughput", size, plan.duration_s, 0, window)
                r = rate(res)
                rec.msgs_per_s.append(r)
                rec.mb_per_s.append(r * size.nbytes / 1e6)
                rec.sent.append(sent)
                rec.received.append(res.received)
                rec.wire_bytes = res.wire_bytes or rec.wire_bytes
                check = ""
                if res.lost_reported is not None:
                    rec.lost_reported.append(res.lost_reported)
                    check = f" (Subscriber.stats.lost: {res.lost_reported:,})"
                show(
                    impl,
                    rep,
                    f"throughput  {r:>10,.0f} msg/s {r * size.nbytes / 1e6:>8,.1f} MB/s   "
                    f"dropped {sent - res.received:,}/{sent:,}{check}",
                )
                if plan.subscribers > 1:
                    _, res = bench.run(impl, "throughput", size, plan.duration_s, 0, window, plan.subscribers)
                    rec.fanout_msgs_per_s.append(rate(res))
                    show(
                        impl,
                        rep,
                        f"throughput  {rate(res):>10,.0f} msg/s with {plan.subscribers} subscribers (slowest)",
                    )
                _, res = bench.run(impl, "latency", size, 0.0, want)
                p50, p99 = percentile_us(res.latencies_ns, 50), percentile_us(res.latencies_ns, 99)
                rec.p50_us.append(p50)
                rec.p99_us.append(p99)
                rec.latency_samples.append(len(res.latencies_ns))
                rec.wire_bytes = res.wire_bytes or rec.wire_bytes
                loaned = ""
                if res.latencies_loaned_ns:
                    rec.p50_loaned_us.append(percentile_us(res.latencies_loaned_ns, 50))
                    loaned = f"  p50 after the fill {rec.p50_loaned_us[-1]:>9,.1f} µs"
                show(
                    impl,
                    rep,
                    f"latency     p50 {p50:>9,.1f} µs  p99 {p99:>9,.1f} µs   ({len(res.latencies_ns)}/{want} "
                    f"samples){loaned}",
                )
            _, res = bench.run("raw", "latency", floor_size(size), 0.0, want)
            floor = percentile_us(res.latencies_ns, 50)
            results[size.label]["raw"].floor_p50_us.append(floor)
            show("raw", rep, f"wake-up floor: 100 B every {size.interval_s * 1e3:g} ms, p50 {floor:,.1f} µs")
    return results


# --------------------------------------------------------------------------- report


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def fmt_us(x: float) -> str:
    return f"{x:,.1f}"


def verdict(ok: bool) -> str:
    return "[green]✓ met[/]" if ok else "[red]✗ missed[/]"


def build_tables(results: dict[str, dict[Impl, Record]], plan: Plan) -> tuple[Table, Table]:
    note = f"median of {plan.repeat} round(s), raw/ours alternating" + (" — QUICK run" if plan.quick else "")
    thr = Table(title=f"Throughput, received at the subscriber ({note})", title_justify="left")
    thr_cols = (
        "payload",
        "raw msg/s",
        "raw MB/s",
        "ours msg/s",
        "ours MB/s",
        "ours/raw",
        "target",
        "shm MB/s",
        "shm/raw",
        "loan MB/s",
        "dropped raw/ours/shm/loan",
    )
    for col in thr_cols:
        thr.add_column(col, justify="left" if col in ("payload", "target") else "right")
    lat = Table(title=f"One-way latency, µs ({note})", title_justify="left")
    lat_cols = ("payload", "raw p50", "raw p99", "ours p50", "ours p99", "added p50", "target")
    for col in (*lat_cols, "shm p50", "shm p99", "shm/raw p50", "shm/ours p50", "loan p50", "loan p99", "loan/shm p50"):
        lat.add_column(col, justify="left" if col in ("payload", "target") else "right")
    for size in plan.sizes:
        raw, ours = results[size.label]["raw"].summary(), results[size.label]["ours"].summary()
        shm = results[size.label]["shm"].summary()
        loan = results[size.label]["loan"].summary()
        shm_ratio = shm["msgs_per_s"] / raw["msgs_per_s"] if raw["msgs_per_s"] > 0 else float("nan")
        wire = f"{results[size.label]['ours'].wire_bytes:,}"
        label = f"{size.label} ({size.nbytes:,} B; ours {wire} B on wire)"
        ratio = ours["msgs_per_s"] / raw["msgs_per_s"] if raw["msgs_per_s"] > 0 else float("nan")
        if size.nbytes >= TARGET_THROUGHPUT_MIN_BYTES:
            thr_target = f"≥ {TARGET_THROUGHPUT_RATIO:.1f}x  {verdict(ratio >= TARGET_THROUGHPUT_RATIO)}"
        else:
            thr_target = "—"
        thr.add_row(
            label,
            fmt_rate(raw["msgs_per_s"]),
            f"{raw['mb_per_s']:,.1f}",
            fmt_rate(ours["msgs_per_s"]),
            f"{ours['mb_per_s']:,.1f}",
            f"{ratio:.2f}x",
            thr_target,
            f"{shm['mb_per_s']:,.1f}",
            f"{shm_ratio:.2f}x",
            f"{loan['mb_per_s']:,.1f}",
            f"{raw['drop_fraction']:.1%} / {ours['drop_fraction']:.1%} / {shm['drop_fraction']:.1%}"
            f" / {loan['drop_fraction']:.1%}",
        )
        added = ours["p50_us"] - raw["p50_us"]
        if size.label == TARGET_LATENCY_SIZE:
            lat_target = f"≤ {TARGET_ADDED_P50_US:.0f} µs  {verdict(added <= TARGET_ADDED_P50_US)}"
        else:
            lat_target = "—"
        lat.add_row(
            label,
            fmt_us(raw["p50_us"]),
            fmt_us(raw["p99_us"]),
            fmt_us(ours["p50_us"]),
            fmt_us(ours["p99_us"]),
            f"{added:+,.1f}",
            lat_target,
            fmt_us(shm["p50_us"]),
            fmt_us(shm["p99_us"]),
            f"{shm['p50_us'] / raw['p50_us']:.2f}x",
            f"{shm['p50_us'] / ours['p50_us']:.2f}x",
            fmt_us(loan["p50_us"]),
            fmt_us(loan["p99_us"]),
            f"{loan['p50_us'] / shm['p50_us']:.2f}x",
        )
    return thr, lat


def build_all_table(results: dict[str, dict[Impl, Record]], plan: Plan) -> Table:
    """Every impl, peers included, one row each: fan-out and both stamps side by side."""
    note = f"median of {plan.repeat} round(s)" + (" — QUICK run" if plan.quick else "")
    t = Table(title=f"Every transport, peers included ({note})", title_justify="left")
    cols = (
        "payload",
        "impl",
        "MB/s",
        f"{plan.subscribers} subs / 1",
        "p50 µs",
        "p99 µs",
        "p50 loaned µs",
        "wake floor µs",
    )
    for col in cols:
        t.add_column(col, justify="left" if col in ("payload", "impl") else "right")
    for size in plan.sizes:
        for k, impl in enumerate(plan.impls):
            sm = results[size.label][impl].summary()
            fan = sm["fanout_msgs_per_s"] / sm["msgs_per_s"] if sm["msgs_per_s"] > 0 else float("nan")
            loaned = sm["p50_us"] if impl == "loan" else sm["p50_loaned_us"]
            t.add_row(
                size.label if k == 0 else "",
                impl,
                f"{sm['mb_per_s']:,.1f}",
                f"{fan:.2f}x" if plan.subscribers > 1 else "—",
                fmt_us(sm["p50_us"]),
                fmt_us(sm["p99_us"]),
                "—" if np.isnan(loaned) else fmt_us(loaned),
                fmt_us(sm["floor_p50_us"]) if impl == "raw" else "",
                end_section=k == len(plan.impls) - 1,
            )
    return t


@dataclass(frozen=True)
class TargetCheck:
    """One of issue 21's targets as this run measured it; ``ok`` is None when not measured."""

    target: str
    measured: str
    ok: bool | None


def check_targets(results: dict[str, dict[Impl, Record]], plan: Plan) -> list[TargetCheck]:
    """Issue 21's targets, judged from this run's medians (sizes not run are 'not measured')."""
    sm = {label: {impl: rec.summary() for impl, rec in recs.items()} for label, recs in results.items()}
    out: list[TargetCheck] = []
    big = [s.label for s in plan.sizes if s.nbytes >= TARGET_THROUGHPUT_MIN_BYTES]
    if (mid := sm.get(TARGET_LOAN_SIZE)) is not None:
        r = mid["shm"]["p50_us"] / mid["raw"]["p50_us"]
        out.append(
            TargetCheck(
                f"copied-in {TARGET_LOAN_SIZE} p50 ≤ {TARGET_SHM_VS_RAW_P50}× raw",
                f"{r:.2f}×",
                r <= TARGET_SHM_VS_RAW_P50,
            )
        )
        v = mid["loan"]["p50_us"]
        out.append(
            TargetCheck(
                f"loaned {TARGET_LOAN_SIZE} p50 ≤ {TARGET_LOAN_P50_US:.0f} µs", f"{v:,.0f} µs", v <= TARGET_LOAN_P50_US
            )
        )
    else:
        out.append(TargetCheck(f"copied-in / loaned {TARGET_LOAN_SIZE}", "not run (--sizes)", None))
    if len(big) >= 2:
        p50s = [sm[label]["loan"]["p50_us"] for label in big]
        r = max(p50s) / min(p50s)
        out.append(
            TargetCheck(
                f"loan p50 flat {big[0]} → {big[-1]} (≤ {TARGET_LOAN_FLAT:g}×)", f"{r:.2f}×", r <= TARGET_LOAN_FLAT
            )
        )
    else:
        out.append(TargetCheck("loan p50 flat from 1 MB up", "needs two sizes ≥ 1 MB", None))
    if plan.subscribers > 1:
        fans = [
            (sm[s.label][i]["fanout_msgs_per_s"] / sm[s.label][i]["msgs_per_s"], f"{i} {s.label}")
            for s in plan.sizes
            if s.nbytes >= SHM_BENCH_THRESHOLD
            for i in ("shm", "loan")
            if sm[s.label][i]["msgs_per_s"] > 0
        ]
        if fans:
            worst, where = min(fans)
            out.append(
                TargetCheck(
                    f"{plan.subscribers} subs ≥ {TARGET_FANOUT_RATIO}× 1 sub (shm, loan)",
                    f"worst {worst:.2f}× ({where})",
                    worst >= TARGET_FANOUT_RATIO,
                )
            )
    else:
        out.append(TargetCheck("3 subs ≥ 0.9× 1 sub", "not run (--subscribers 1)", None))
    peer_impls = [i for i in plan.impls if i in PEER_IMPLS]
    if peer_impls and big:
        lines, ok = [], True
        for label in big:
            m = sm[label]
            ours = max(m["shm"]["msgs_per_s"], m["loan"]["msgs_per_s"])
            best_peer = max(peer_impls, key=lambda i: m[i]["msgs_per_s"])
            quickest = min(peer_impls, key=lambda i: m[i]["p50_loaned_us"])
            thr_r = ours / m[best_peer]["msgs_per_s"]
            lat_r = m["loan"]["p50_us"] / m[quickest]["p50_loaned_us"]
            ok = ok and thr_r >= 1.0 and lat_r <= 1.0
            lines.append(f"{label}: {thr_r:.2f}× {best_peer} msg/s, p50 {lat_r:.2f}× {quickest}")
        out.append(TargetCheck("≥ 1 MB: as fast as the fastest peer (msg/s, loaned p50)", "; ".join(lines), ok))
    else:
        out.append(
            TargetCheck(
                "as fast as the fastest peer", "no peer installed" if not peer_impls else "no size ≥ 1 MB", None
            )
        )
    if (small := sm.get(TARGET_LATENCY_SIZE)) is not None:
        lat_r = small["shm"]["p50_us"] / small["ours"]["p50_us"]
        thr_r = small["shm"]["msgs_per_s"] / small["ours"]["msgs_per_s"]
        ok = lat_r <= TARGET_SMALL_SLACK and thr_r >= 1 / TARGET_SMALL_SLACK
        out.append(
            TargetCheck(
                f"{TARGET_LATENCY_SIZE}: shm no slower than ours (±10 %)", f"p50 {lat_r:.2f}×, msg/s {thr_r:.2f}×", ok
            )
        )
    return out


def build_target_table(checks: list[TargetCheck]) -> Table:
    t = Table(title="Issue 21's targets, this run", title_justify="left")
    for col in ("target", "measured", "verdict"):
        t.add_column(col)
    for c in checks:
        t.add_row(c.target, c.measured, "[dim]not measured[/]" if c.ok is None else verdict(c.ok))
    return t


def to_json(results: dict[str, dict[Impl, Record]], plan: Plan, wall_s: float) -> dict[str, Any]:
    sizes: list[dict[str, Any]] = []
    for size in plan.sizes:
        raw, ours, shm = results[size.label]["raw"], results[size.label]["ours"], results[size.label]["shm"]
        loan = results[size.label]["loan"]
        rs, os_, ss, ls = raw.summary(), ours.summary(), shm.summary(), loan.summary()
        entry: dict[str, Any] = {
            "size": size.label,
            "message": size.describe(),
            "payload_bytes": size.nbytes,
            "hwm": size.hwm,
            "latency_interval_s": size.interval_s,
            "raw_copy": size.raw_copy,
            "wire_bytes": {
                "raw": raw.wire_bytes,
                "ours": ours.wire_bytes,
                "shm": shm.wire_bytes,
                "loan": loan.wire_bytes,
            },
            "summary": {
                "raw": rs,
                "ours": os_,
                "throughput_ratio": os_["msgs_per_s"] / rs["msgs_per_s"] if rs["msgs_per_s"] > 0 else None,
                "added_p50_us": os_["p50_us"] - rs["p50_us"],
                "shm": ss,
                "shm_p50_vs_raw": ss["p50_us"] / rs["p50_us"] if rs["p50_us"] > 0 else None,
                "loan": ls,
                "loan_p50_vs_shm": ls["p50_us"] / ss["p50_us"] if ss["p50_us"] > 0 else None,
            },
            "rounds": {impl: _record_json(results[size.label][impl]) for impl in plan.impls},
            "all": {impl: results[size.label][impl].summary() for impl in plan.impls},
        }
        sizes.append(entry)
    return {
        "benchmark": "fusion_stream transport vs raw pyzmq PUB/SUB, ipc, two processes",
        "targets": {
            "throughput_ratio_min": TARGET_THROUGHPUT_RATIO,
            "throughput_min_payload_bytes": TARGET_THROUGHPUT_MIN_BYTES,
            "added_p50_us_max_at_100B": TARGET_ADDED_P50_US,
        },
        "plan": {
            "repeat": plan.repeat,
            "throughput_s": plan.duration_s,
            "quick": plan.quick,
            "throughput_window": "flat out" if plan.flat_out else "HWM/2",
        },
        "environment": {
            "python": sys.version.split()[0],
            "pyzmq": zmq.pyzmq_version(),
            "libzmq": zmq.zmq_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "wall_s": wall_s,
        "subscribers_fanout": plan.subscribers,
        "targets_checked": [c.__dict__ for c in check_targets(results, plan)],
        "sizes": sizes,
    }


def _record_json(rec: Record) -> dict[str, Any]:
    return {
        "msgs_per_s": rec.msgs_per_s,
        "mb_per_s": rec.mb_per_s,
        "sent": rec.sent,
        "received": rec.received,
        "p50_us": rec.p50_us,
        "p99_us": rec.p99_us,
        "latency_samples": rec.latency_samples,
        "lost_reported_by_subscriber": rec.lost_reported,
        "fanout_msgs_per_s": rec.fanout_msgs_per_s,
        "p50_loaned_us": rec.p50_loaned_us,
        "wake_floor_p50_us": rec.floor_p50_us,
    }


# --------------------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short run for a smoke test (1 subscriber)")
    p.add_argument(
        "--repeat", type=int, default=None, help="raw/ours rounds per size, median reported (default 3; 1 with --quick)"
    )
    p.add_argument(
        "--flat-out",
        action="store_true",
        help="throughput sender never waits (drops at the HWM) instead of keeping at most HWM/2 messages in flight",
    )
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument(
        "--sizes", default=None, metavar="LIST", help=f"comma-separated subset of {','.join(SIZE_KEYS)} (default: all)"
    )
    p.add_argument(
        "--subscribers",
        type=int,
        choices=(1, MAX_SUBSCRIBERS),
        default=None,
        help=f"{MAX_SUBSCRIBERS}: each impl's throughput also with {MAX_SUBSCRIBERS} subscribing processes "
        f"(default {MAX_SUBSCRIBERS}; 1 with --quick)",
    )
    p.add_argument("--no-peers", action="store_true", help="skip iceoryx2 and Zenoh even when installed")
    args = p.parse_args(argv)
    if args.sizes and any(k not in SIZE_KEYS for k in args.sizes.split(",")):
        p.error(f"--sizes takes a comma-separated subset of {','.join(SIZE_KEYS)}")
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    missing = peers.missing_peers()
    repeat: int = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    plan = Plan(
        repeat=repeat,
        duration_s=0.3 if args.quick else 1.5,
        sample_scale=0.125 if args.quick else 1.0,
        quick=args.quick,
        flat_out=args.flat_out,
        sizes=tuple(SIZE_KEYS[k] for k in args.sizes.split(",")) if args.sizes else SIZES,
        impls=IMPLS + tuple(i for i in PEER_IMPLS if not args.no_peers and i not in missing),
        subscribers=args.subscribers or (1 if args.quick else MAX_SUBSCRIBERS),
    )
    console = Console(width=None if sys.stdout.isatty() else 150)
    if not args.no_peers:
        for line in missing.values():
            console.print(f"[yellow]{line}[/]")
    console.print(
        f"[bold]fusion_stream transport vs raw pyzmq[/] — pyzmq {zmq.pyzmq_version()}, libzmq {zmq.zmq_version()}, "
        f"{os.cpu_count()} CPUs; {plan.repeat} round(s), {plan.duration_s} s per throughput run"
    )
    started = time.perf_counter()
    runtime_dir = tempfile.mkdtemp(prefix="fsb-")
    bench: Bench | None = None
    try:
        bench = Bench(runtime_dir, plan.subscribers)
        results = run_all(bench, plan, console)
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)
    wall = time.perf_counter() - started
    thr, lat = build_tables(results, plan)
    console.print()
    console.print(thr)
    console.print(lat)
    console.print(build_all_table(results, plan))
    console.print(build_target_table(check_targets(results, plan)))
    if plan.flat_out:
        thr_note = (
            "Throughput: --flat-out, the sender never waits and PUB drops at the HWM, so 'dropped' is expected; "
            "the spinning sender takes a core from the I/O threads, so big-payload ratios vary run to run."
        )
    else:
        thr_note = "Throughput: the sender keeps at most HWM/2 messages unreceived, so 'dropped' should be ~0."
    console.print(
        f"[dim]{thr_note}\nLatency: paced sends; the stamp is taken before the message is built, so ours includes "
        "building, encoding and decoding it.[/]"
    )
    console.print(f"wall time {wall:.1f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(results, plan, wall), indent=2) + "\n")
        console.print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
