"""Benchmark: do the sensor nodes gain from writing their frames into a loan? One run, real processes.

A producer process makes the frames the nodes make, the way they make them, and publishes each
on ``ipc://`` with shared memory on (``FUSION_STREAM_SHM=1``, as ``launch`` would give it); a
subscriber process (our ``Subscriber``, and a raw pyzmq SUB) receives them. Frames:

* ``lidar32`` / ``lidar64``: simulated sweeps (rig world, rain), the sectors cast beforehand; the
  timed step is :meth:`SweepCast.finish` (the returns kernel writing the points) then ``publish``;
* ``cam640``: the rig camera rendered by :class:`CameraModel` (640×384), then ``publish``;
* ``img1080``: a 1080p RGB frame made the way the OpenCV sources make it (``cv2.cvtColor`` of a
  BGR frame, into ``dst``), then ``publish``.

Each frame goes three ways, alternating round by round:

* ``raw``: the frame made into a fresh array and sent by raw pyzmq (``copy=False``): the floor;
* ``copy``: the frame made into a fresh array and published as the nodes did before (shared memory
  from 1 MiB, copied into the pool; smaller frames go as bytes);
* ``loan``: the frame made straight into ``Publisher.loan`` and published as its descriptor.

Per way: the producer's CPU per frame (process CPU time, so ZeroMQ's I/O thread counts), of which
making the frame and the ``publish`` call (the producing thread's CPU), and the one-way latency
p50/p99 from the *start of making the frame* to the decoded message in the subscriber (system-wide
``CLOCK_MONOTONIC``), so a loan's in-place fill counts against it.

Usage::

    python bench/node_loans.py                 # about 60 s on this 2-core machine
    python bench/node_loans.py --frames 20 --repeat 1 --kinds lidar32,img1080
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import zmq

KINDS = ("lidar32", "lidar64", "cam640", "img1080")
WAYS = ("raw", "copy", "loan")
WARMUP = 4
"""Frames per way sent before measuring (segment creation, first page faults, kernel compiles)."""


@dataclass
class Stats:
    cpu_ms: list[float] = field(default_factory=list)
    make_ms: list[float] = field(default_factory=list)
    publish_ms: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    bytes: int = 0
    via: str = ""


def _topic(kind: str, way: str) -> str:
    return f"/bench/{kind}/{way}"


# --------------------------------------------------------------------------- making frames


class Maker:
    """Makes frame ``i`` of a kind into ``out`` (a loan) or into an array of its own; pure."""

    def __init__(self, kind: str) -> None:
        from fusion_stream.core import calib, resources
        from fusion_stream.sim import Scenario, World, lidar

        rig = calib.load(resources.resolve("calib/sim_rig.yaml"))
        self.kind = kind
        world = World(Scenario(seed=3, weather="rain"))
        if kind.startswith("lidar"):
            spec = lidar.LidarSpec.preset(int(kind[len("lidar") :]))
            mount = rig["lidar_top"].extrinsics
            self.casts = []
            for k in range(4):  # sectors cast here: the timed step is what fills the message's array
                cast = lidar.SweepCast(world, 20.0 + 0.1 * k, mount, spec, stamp_ns=k)
                cast.cast_until(1e9)
                self.casts.append(cast)
            self.shape: tuple[int, ...] = (spec.max_points, len(lidar.FIELDS))
            self.dtype: Any = np.float32
        elif kind == "cam640":
            from fusion_stream.sim.camera import CameraModel

            cam = rig["camera_front"]
            assert cam.intrinsics is not None
            self.model, self.world, self.mount = CameraModel(cam.intrinsics, cam.distortion), world, cam.extrinsics
            self.shape, self.dtype = (cam.intrinsics.height, cam.intrinsics.width, 3), np.uint8
        else:
            import cv2

            self.cv2 = cv2
            rng = np.random.default_rng(0)
            self.bgr = [rng.integers(0, 256, (1080, 1920, 3), np.uint8) for _ in range(2)]
            self.shape, self.dtype = (1080, 1920, 3), np.uint8

    def make(self, i: int, out: np.ndarray | None) -> tuple[Any, np.ndarray]:
        """(message, its array) for frame ``i``."""
        from fusion_stream.core.msgs import Image, PointCloud
        from fusion_stream.sim import lidar

        if self.kind.startswith("lidar"):
            data = self.casts[i % len(self.casts)].finish(out).data
            return PointCloud(stamp_ns=0, frame_id="lidar", data=data, fields=lidar.FIELDS), data
        if self.kind == "cam640":
            rgb = self.model.render(self.world, 20.0 + i / 15, self.mount, stamp_ns=i, out=out).rgb
            return Image(stamp_ns=0, frame_id="cam", data=rgb), rgb
        rgb = self.cv2.cvtColor(self.bgr[i % 2], self.cv2.COLOR_BGR2RGB, dst=out)
        return Image(stamp_ns=0, frame_id="cam", data=rgb), rgb


def _stamped(msg: Any, stamp_ns: int) -> Any:
    import dataclasses

    return dataclasses.replace(msg, stamp_ns=stamp_ns)


# --------------------------------------------------------------------------- processes


def producer(conn: Connection, kinds: list[str], frames: int, repeat: int, period_s: float) -> None:
    from fusion_stream.runtime.shm import DEFAULT_THRESHOLD
    from fusion_stream.runtime.transport import Publisher

    makers = {k: Maker(k) for k in kinds}
    ctx: zmq.Context[Any] = zmq.Context.instance()
    pubs: dict[tuple[str, str], Any] = {}
    raw_eps: dict[str, str] = {}
    run_dir = os.environ["FUSION_STREAM_RUNTIME_DIR"]
    for kind, m in makers.items():
        nbytes = int(np.prod(m.shape)) * np.dtype(m.dtype).itemsize
        pubs[kind, "copy"] = Publisher(_topic(kind, "copy"))  # shm from the environment, the default slot
        pubs[kind, "loan"] = Publisher(_topic(kind, "loan"), shm_threshold=max(DEFAULT_THRESHOLD, nbytes))
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, 1000)
        raw_eps[kind] = f"ipc://{run_dir}/raw-{kind}.ipc"
        sock.bind(raw_eps[kind])
        pubs[kind, "raw"] = sock
    conn.send(raw_eps)
    conn.recv()  # the subscriber is connected
    stats = {(k, w): Stats() for k in kinds for w in WAYS}

    def one(kind: str, way: str, i: int, keep: bool) -> None:
        m, pub, st = makers[kind], pubs[kind, way], stats[kind, way]
        p0, t0 = time.process_time_ns(), time.thread_time_ns()
        stamp = time.monotonic_ns()
        out = pub.loan(m.shape, m.dtype) if way == "loan" else None
        msg, data = m.make(i, out)
        t1 = time.thread_time_ns()
        if way == "raw":
            pub.send_multipart([kind.encode(), stamp.to_bytes(8, "little"), data], copy=False)
        else:
            st.bytes = pub.publish(_stamped(msg, stamp))
        t2 = time.thread_time_ns()
        time.sleep(period_s)  # ZeroMQ's I/O thread sends meanwhile: its CPU counts below
        if keep:
            st.make_ms.append((t1 - t0) / 1e6)
            st.publish_ms.append((t2 - t1) / 1e6)
            st.cpu_ms.append((time.process_time_ns() - p0) / 1e6)

    for kind in kinds:  # warm-up of every way: segments made, kernels compiled, pages touched
        for way in WAYS:
            for i in range(WARMUP):
                one(kind, way, i, keep=False)
    for r in range(repeat):
        for kind in kinds:
            order = WAYS if r % 2 == 0 else WAYS[::-1]
            for way in order:
                for i in range(frames):
                    one(kind, way, i, keep=True)
    for kind in kinds:
        p = pubs[kind, "loan"]
        stats[kind, "loan"].via = f"{p.stats.shm_loans} loans, {p.stats.shm_fallback} fallbacks"
        c = pubs[kind, "copy"]
        stats[kind, "copy"].via = "bytes" if c.shm_segment in (None, "") else "copied into the pool"
    time.sleep(0.5)
    conn.send({f"{k}|{w}": s for (k, w), s in stats.items()})
    for (_, way), p in pubs.items():
        if way == "raw":
            p.close(linger=0)
        else:
            p.close()


def subscriber(conn: Connection, kinds: list[str]) -> None:
    from fusion_stream.runtime.transport import Subscriber

    raw_eps: dict[str, str] = conn.recv()
    topics = [_topic(k, w) for k in kinds for w in ("copy", "loan")]
    sub = Subscriber(topics, queue_size=1000)
    sub.wait_for_publishers(20.0)
    ctx: zmq.Context[Any] = zmq.Context.instance()
    raws = {}
    poller = zmq.Poller()
    poller.register(sub.socket, zmq.POLLIN)
    for kind, ep in raw_eps.items():
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 1000)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(ep)
        raws[s] = kind
        poller.register(s, zmq.POLLIN)
    time.sleep(1.0)  # connections made (a PUB drops what it sends before)
    conn.send("ready")
    lat: dict[str, list[float]] = {}
    held: list[Any] = []  # the last few messages, held as a consumer would
    while not conn.poll():
        for s, _ in poller.poll(100):
            if s is sub.socket:
                while (env := sub.recv_envelope(timeout=0)) is not None:
                    lat.setdefault(env.topic, []).append((time.monotonic_ns() - env.message.stamp_ns) / 1e6)
                    held = [*held[-2:], env.message]
            else:
                _topic_frame, stamp, payload = s.recv_multipart(copy=False)
                kind = raws[s]
                held = [*held[-2:], np.frombuffer(payload.buffer, np.uint8)]  # as ours, an array
                t = int.from_bytes(stamp.bytes, "little")
                lat.setdefault(_topic(kind, "raw"), []).append((time.monotonic_ns() - t) / 1e6)
    conn.recv()
    conn.send(lat)
    sub.close()


# --------------------------------------------------------------------------- report


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def report(stats: dict[str, Stats], lat: dict[str, list[float]], kinds: list[str], frames: int, repeat: int) -> str:
    lines = [
        f"{frames} frames × {repeat} rounds per way; CPU: the producer process per frame (ms); "
        "make/publish: its thread's CPU in each step; latency: start of making the frame → decoded in "
        "the subscriber",
        f"{'frame':8} {'way':5} {'CPU ms':>7} {'make':>6} {'publish':>8} {'p50 ms':>7} {'p99 ms':>7} {'got':>5}  path",
    ]
    for kind in kinds:
        for way in WAYS:
            st = stats[f"{kind}|{way}"]
            got = lat.get(_topic(kind, way), [])[WARMUP:]
            via = {"raw": "raw pyzmq, bytes"}.get(way, st.via)
            lines.append(
                f"{kind:8} {way:5} {statistics.median(st.cpu_ms):7.2f} {statistics.median(st.make_ms):6.2f} "
                f"{statistics.median(st.publish_ms):8.3f} {_pct(got, 0.5):7.2f} {_pct(got, 0.99):7.2f} "
                f"{len(got):5}  {via}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--frames", type=int, default=30, help="frames per way per round")
    ap.add_argument("--repeat", type=int, default=2, help="rounds (ways alternate in ABC CBA order)")
    ap.add_argument("--period-ms", type=float, default=30.0, help="pause after each frame")
    args = ap.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if bad := [k for k in kinds if k not in KINDS]:
        ap.error(f"--kinds: unknown {bad}; choose from {', '.join(KINDS)}")
    run_dir = tempfile.mkdtemp(prefix="fsb-")
    os.environ.update(FUSION_STREAM_RUNTIME_DIR=run_dir, FUSION_STREAM_GRAPH="bench", FUSION_STREAM_SHM="1")
    ctx = mp.get_context("spawn")
    p_parent, p_child = ctx.Pipe()
    s_parent, s_child = ctx.Pipe()
    t0 = time.monotonic()
    prod = ctx.Process(target=producer, args=(p_child, kinds, args.frames, args.repeat, args.period_ms / 1000))
    sub = ctx.Process(target=subscriber, args=(s_child, kinds))
    prod.start()
    raw_eps = p_parent.recv()
    sub.start()
    s_parent.send(raw_eps)
    s_parent.recv()
    p_parent.send("go")
    stats = p_parent.recv()
    s_parent.send("stop")
    lat = s_parent.recv()
    prod.join(10)
    sub.join(10)
    print(report(stats, lat, kinds, args.frames, args.repeat))
    print(f"(wall {time.monotonic() - t0:.0f} s; shared memory on, ipc://, one subscriber)")


if __name__ == "__main__":
    main()
