"""Shared memory for large arrays (on by default for ipc://): real processes, real segments in /dev/shm, forged
descriptors from a raw socket, kill -9 and the registry's sweep."""

from __future__ import annotations

import logging
import mmap
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from fusion_stream.core import msgs, wire
from fusion_stream.errors import WireError
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.shm import ENV_SHM, SHM_DIR, ShmPool, remove_orphans, segment_prefix
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sources import testpattern
from tests import shm_publisher
from tests.conftest import Procs, wait_for

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="no /dev/shm on this machine")

POINTS = 200_000  # 200000 x 6 float32 = 4.8 MB
WIDTH, HEIGHT = 1280, 960  # 3.7 MB


def segments(registry: Registry, src: int) -> list[str]:
    prefix = segment_prefix(registry.path, src)
    return [n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]


def mapped(arr: np.ndarray) -> bool:
    """Whether ``arr`` is a view of a memory mapping (not of a ZeroMQ frame or a copy)."""
    base: Any = arr
    while isinstance(base, np.ndarray | memoryview):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return isinstance(base, mmap.mmap)


def publish_until_received(pub: Publisher, sub: Subscriber, msg: msgs.Message) -> msgs.Message | None:
    """Publish ``msg`` until ``sub`` has a message (a new subscription joins a little later)."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        pub.publish(msg)
        if (got := sub.recv(timeout=0.1)) is not None:
            return got
    return None


@pytest.fixture
def sweeping_procs(procs: Procs, registry: Registry) -> Iterator[Procs]:
    """``procs``, then a registry sweep before the runtime directory goes: a test that fails with
    its publishers still running (killed at teardown) must not leave segments in /dev/shm."""
    yield procs
    procs.close()
    registry.entries()


def start_pattern(procs: Procs, kind: str, *extra: str) -> Any:
    return procs.python(
        "-m", "fusion_stream.runtime.runner", "pattern", "--name", f"pattern_{kind}",
        "-p", f"kind:={kind}", "-p", "rate_hz:=20", "-p", "shm:=true", *extra,
    )  # fmt: skip


def test_point_cloud_and_image_round_trip_through_shm_between_processes(
    sweeping_procs: Procs, registry: Registry
) -> None:
    procs = sweeping_procs
    start_pattern(procs, "points", "-p", f"points:={POINTS}")
    start_pattern(procs, "image", "-p", f"width:={WIDTH}", "-p", f"height:={HEIGHT}")
    topics = ["/lidar/pattern/points", "/camera/pattern/image"]
    got: dict[str, int] = {}
    # latest=True: each view is of the newest frame, valid for slots - 1 = 7 more publishes (350 ms)
    with Subscriber(topics, registry=registry, timeout=15.0, latest=True) as sub:
        sub.wait_for_publishers(20.0)
        for env in sub.envelopes():
            msg = env.message
            if isinstance(msg, msgs.PointCloud):
                expected: msgs.Message = testpattern.point_cloud(msg.stamp_ns, POINTS)
                assert mapped(msg.data) and not msg.data.flags.writeable
            else:
                assert isinstance(msg, msgs.Image)
                expected = testpattern.image(msg.stamp_ns, WIDTH, HEIGHT)
                assert mapped(msg.data) and not msg.data.flags.writeable
            assert msg == expected, f"{env.topic} changed on the way"
            assert env.shm_bytes == msg.data.nbytes and env.nbytes < 1000  # the payload never on the wire
            got[env.topic] = got.get(env.topic, 0) + 1
            if len(got) == 2 and min(got.values()) >= 3:
                break
        assert set(sub.stats.malformed) <= {"stale"}  # only frames that waited in the queue while starting
    for entry in registry.entries():
        if entry.topic in topics:
            assert len(segments(registry, entry.src)) == 1, entry
    procs.stop_all()
    assert not [e for e in registry.entries() if e.topic in topics]


@pytest.fixture
def raw_pub(runtime_dir: Path) -> Iterator[tuple[zmq.Socket[Any], str]]:
    sock = zmq.Context.instance().socket(zmq.PUB)
    endpoint = f"ipc://{runtime_dir}/forger.ipc"
    sock.bind(endpoint)
    yield sock, endpoint
    sock.close(linger=0)


def send_until_received(sock: zmq.Socket[Any], sub: Subscriber, frames: list[Any]) -> msgs.Message:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        sock.send_multipart(frames)
        got = sub.recv(timeout=0.05)
        if got is not None:
            return got
    raise AssertionError("the subscriber received nothing")


def test_forged_descriptors_are_refused_with_a_reason_and_the_subscriber_keeps_going(
    raw_pub: tuple[zmq.Socket[Any], str], registry: Registry, runtime_dir: Path
) -> None:
    sock, endpoint = raw_pub
    pool = ShmPool(segment_prefix(registry.path, 0x1234), slots=2)
    foreign = SHM_DIR / f"{segment_prefix(registry.path, 0x5678)}0"
    try:
        data = np.arange(70_000 * 4, dtype=np.float32).reshape(70_000, 4)
        cloud = msgs.PointCloud(stamp_ns=1, frame_id="f", data=data)
        topic, header, descriptor = wire.encode("/forged", cloud, seq=1, src=9, pub_ns=0, shm=pool)
        pool.flush()
        assert isinstance(descriptor, bytes) and len(descriptor) < 100  # the 1.1 MB stayed in the pool
        good = wire.decode_descriptor(memoryview(descriptor), 0)
        assert good.segment == pool.segment and good.nbytes == data.nbytes
        fd = os.open(foreign, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        os.ftruncate(fd, 1 << 20)
        os.fchmod(fd, 0o644)
        os.close(fd)

        def forged(**changes: Any) -> bytes:
            fields = {
                "segment": good.segment,
                "offset": good.offset,
                "nbytes": good.nbytes,
                "generation": good.generation,
            }
            return wire.encode_descriptor(wire.ShmRef(**{**fields, **changes}))

        cases = {
            "shm-bounds": [forged(offset=10**12), forged(offset=good.offset + 8)],
            "size-mismatch": [forged(nbytes=good.nbytes - 4)],
            "stale": [forged(generation=good.generation + 100)],
            "shm-segment": [
                forged(segment="fusion_stream-000000000000-00000000-0"),
                forged(segment="../../etc/passwd"),
            ],
            "shm-foreign": [forged(segment=foreign.name)],
            "bad-descriptor": [wire.SHM_PREFIX + b"\xc1\xff"],
            "version": [wire.SHM_MAGIC + b"\x09" + bytes(8)],
        }
        with pytest.raises(WireError) as no_resolver:
            wire.decode([topic, header, descriptor])
        assert no_resolver.value.reason == "shm-unavailable"
        with Subscriber("/forged", endpoints=[endpoint], timeout=5.0) as sub:
            first = send_until_received(sock, sub, [topic, header, descriptor])  # connected now
            assert isinstance(first, msgs.PointCloud)
            assert first == cloud and mapped(first.data)
            for bad_frames in cases.values():
                for bad in bad_frames:
                    sock.send_multipart([topic, header, bad])
            again = send_until_received(sock, sub, [topic, header, descriptor])
            assert again == cloud
            assert dict(sub.stats.malformed) == {reason: len(v) for reason, v in cases.items()}
            del first, again  # their views held slot 0: the pool could not have reused it

            # a slot really reused while the message waited: stale, not a changed frame
            msgs3 = [msgs.PointCloud(stamp_ns=10 + i, frame_id="f", data=data + i) for i in range(3)]
            for i, m in enumerate(msgs3):
                sock.send_multipart(wire.encode("/forged", m, seq=100 + i, src=9, pub_ns=0, shm=pool))
                pool.flush()
            seen = [sub.recv(timeout=2.0) for _ in range(2)]
            assert seen == msgs3[1:]  # two slots: the third message reused the first one's slot
            assert sub.stats.malformed["stale"] == 2
    finally:
        pool.close()
        foreign.unlink(missing_ok=True)
    assert not [n for n in os.listdir(SHM_DIR) if n.startswith(segment_prefix(registry.path, 0x1234))]


def test_kill_9_of_a_shm_publisher_then_the_registry_sweep_leaves_no_segment(procs: Procs, registry: Registry) -> None:
    pub = start_pattern(procs, "points", "-p", "points:=100000")  # 1.6 MB: above the threshold
    wait_for(lambda: registry.lookup("/lidar/pattern/points"), 15.0, "the publisher's registry entry")
    (entry,) = registry.lookup("/lidar/pattern/points")
    wait_for(lambda: segments(registry, entry.src), 10.0, "its shared-memory segment")
    pub.send_signal(signal.SIGKILL)
    pub.wait(timeout=5)
    assert segments(registry, entry.src), "kill -9 cannot have removed it"
    assert not registry.lookup("/lidar/pattern/points")  # the sweep
    assert not segments(registry, entry.src)


def test_tcp_endpoint_with_shm_keeps_sending_bytes_and_env_turns_shm_on(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = np.random.default_rng(3).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    image = msgs.Image(stamp_ns=5, frame_id="cam", data=data, encoding="rgb8")
    with Publisher("/tcp/image", endpoint="tcp://127.0.0.1:0", registry=registry, shm=True) as pub:
        with Subscriber("/tcp/image", registry=registry, timeout=5.0) as sub:
            sub.wait_for_publishers(5.0)
            got = publish_until_received(pub, sub, image)
            assert isinstance(got, msgs.Image)
            assert got == image and not mapped(got.data)
        assert pub.shm_segment is None
    monkeypatch.setenv(ENV_SHM, "1")
    with Publisher("/env/image", registry=registry) as pub:
        pub.publish(image)
        assert pub.shm_segment and (SHM_DIR / pub.shm_segment).exists()
        name = pub.shm_segment
    assert not (SHM_DIR / name).exists()


def test_shm_is_on_by_default_for_ipc_and_off_with_env_0(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = testpattern.point_cloud(1, POINTS)
    monkeypatch.delenv(ENV_SHM, raising=False)
    with Publisher("/default/points", registry=registry) as pub:
        pub.publish(cloud)
        assert pub.endpoint.startswith("ipc://") and pub.shm_segment
        assert (entry := registry.lookup("/default/points")) and entry[0].shm_threshold > 0
    monkeypatch.setenv(ENV_SHM, "0")
    with Publisher("/off/points", registry=registry) as pub:
        pub.publish(cloud)
        assert pub.shm_segment is None
    with Publisher("/forced/points", registry=registry, shm=True) as pub:  # the argument wins
        pub.publish(cloud)
        assert pub.shm_segment


def test_no_room_for_a_segment_sends_bytes_says_why_once_and_keeps_publishing(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from fusion_stream.runtime import shm

    monkeypatch.setattr(shm, "SHM_DIR", tmp_path / "absent")  # as on a machine without /dev/shm
    cloud = testpattern.point_cloud(7, POINTS)
    with (
        caplog.at_level(logging.WARNING, logger="fusion_stream.runtime.shm"),
        Publisher("/full/points", registry=registry, shm=True) as pub,
    ):
        with Subscriber("/full/points", registry=registry, timeout=5.0) as sub:
            sub.wait_for_publishers(5.0)
            got = publish_until_received(pub, sub, cloud)
            assert got == cloud and not mapped(got.data)
        loan = pub.loan((10, 6), np.float32)  # a plain array: the same producer code works
        assert not mapped(loan)
        assert pub.shm_segment == "" and pub.stats.shm_fallback >= 2
    warnings = [r for r in caplog.records if "cannot create shared memory" in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path / "absent") in warnings[0].getMessage()


UNCLOSED = """
import sys
from fusion_stream.runtime.transport import Publisher
from fusion_stream.sources import testpattern
pub = Publisher("/unclosed/points", graph=sys.argv[1], shm=True)
pub.publish(testpattern.point_cloud(1, 200_000))
print(pub.shm_segment, flush=True)
"""


def test_a_script_that_never_closes_its_publisher_leaves_no_segment(registry: Registry) -> None:
    env = {**os.environ, "FUSION_STREAM_RUNTIME_DIR": str(registry.runtime_dir)}
    cmd = [sys.executable, "-c", UNCLOSED, registry.graph]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    name = out.stdout.strip()
    assert name.startswith("fusion_stream-")
    assert not (SHM_DIR / name).exists()


def test_a_message_with_more_big_arrays_than_slots_sends_the_rest_as_bytes(registry: Registry) -> None:
    """Each array's slot stays write-locked until the message is sent: a later array of the same
    message must not take a slot an earlier one is still waiting to be copied into."""
    clouds = tuple(testpattern.point_cloud(i + 1, 70_000) for i in range(3))  # 1.7 MB each
    frame = msgs.SyncedFrame(stamp_ns=1, frame_id="f", members={"lidar": clouds})
    with (
        Publisher("/synced", registry=registry, shm=True, shm_slots=2) as pub,
        Subscriber("/synced", registry=registry, timeout=5.0) as sub,
    ):
        sub.wait_for_publishers(5.0)
        got = publish_until_received(pub, sub, frame)
        assert isinstance(got, msgs.SyncedFrame) and got == frame
        assert [mapped(m.data) for m in got.members["lidar"]] == [True, True, False]
        assert pub.stats.shm_fallback >= 1


KILLED = """
import os, signal, sys
from fusion_stream.runtime.transport import Publisher
from fusion_stream.sources import testpattern
pub = Publisher("/killed/points", graph=sys.argv[1], shm=True)
pub.publish(testpattern.point_cloud(1, 200_000))
print(pub.shm_segment, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_segment_whose_publisher_was_killed_unseen_by_any_registry_is_removed_by_the_next_pool(
    registry: Registry,
) -> None:
    env = {**os.environ, "FUSION_STREAM_RUNTIME_DIR": str(registry.runtime_dir)}
    cmd = [sys.executable, "-c", KILLED, registry.graph]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == -signal.SIGKILL
    orphan = SHM_DIR / out.stdout.strip()
    with Publisher("/alive/points", registry=registry, shm=True) as alive:
        alive.publish(testpattern.point_cloud(2, 200_000))
        living = SHM_DIR / str(alive.shm_segment)
        old = time.time() - 60  # past the age below which a segment may be one being made
        for path in (orphan, living):
            os.utime(path, (old, old))
        assert orphan.exists() and remove_orphans() >= 1
        assert not orphan.exists(), "nothing holds it: an orphan"
        assert living.exists(), "its publisher holds it"


def test_every_message_type_round_trips_through_shm_between_processes(procs: Procs, registry: Registry) -> None:
    expected = testpattern.sample_messages(shm_publisher.SEED)
    child = procs.python("-m", "tests.shm_publisher", stdin=-1)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    through_shm: dict[str, int] = {}
    with Subscriber(list(expected), registry=registry, timeout=10.0) as sub:
        sub.wait_for_publishers(10.0)
        deadline = time.monotonic() + 20.0
        while len(through_shm) < len(expected) and time.monotonic() < deadline:
            env = sub.recv_envelope(timeout=0.1)
            if env is None:
                continue
            assert env.message == expected[env.topic], f"{env.topic} changed on the way"
            through_shm[env.topic] = env.shm_bytes
        assert not sub.stats.malformed
    child.communicate("stop\n", timeout=20)
    assert set(through_shm) == set(expected)
    for topic, msg in expected.items():  # each array too big to go inline in the header went through the pool
        big = sum(a.nbytes for a in wire_arrays(msg) if a.nbytes > wire.INLINE_MAX_BYTES)
        assert through_shm[topic] == big, topic
    assert sum(through_shm.values()) > 0


def wire_arrays(msg: msgs.Message) -> list[np.ndarray]:
    """The arrays a message travels as (what ``wire.encode`` sends in frames or the pool)."""
    return wire._body(msg)[1]


def test_a_reader_waits_for_its_own_copy_and_not_for_a_slot_lent_or_reused(
    raw_pub: tuple[zmq.Socket[Any], str], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The descriptor travels before the copy: its reader waits for the slot's write lock. A
    descriptor whose slot is write-locked for something else is stale at once, without waiting."""
    from fusion_stream.runtime import shm

    monkeypatch.setattr(shm, "WRITE_WAIT_S", 30.0)  # the copy below is late on purpose; never flaky
    sock, endpoint = raw_pub
    pool = ShmPool(segment_prefix(registry.path, 0x2468), slots=2)
    cloud = testpattern.point_cloud(3, 70_000)
    try:
        with Subscriber("/late", endpoints=[endpoint], timeout=5.0) as sub:
            warm = wire.encode("/late", testpattern.point_cloud(1, 10), seq=1, src=7, pub_ns=0)
            send_until_received(sock, sub, warm)
            sock.send_multipart(wire.encode("/late", cloud, seq=2, src=7, pub_ns=0, shm=pool))
            threading.Timer(0.2, pool.flush).start()  # the copy, after the descriptor has gone
            got = sub.recv(timeout=10.0)
            assert got == cloud and isinstance(got, msgs.PointCloud) and mapped(got.data)
            del got
            lent = pool.loan(cloud.data.shape, cloud.data.dtype)  # write-locked, not being copied into
            assert lent is not None
            stale = wire.encode_descriptor(wire.ShmRef(pool.segment, lent.ctypes.data - base(pool), lent.nbytes, 1))
            header = wire.encode("/late", cloud, seq=3, src=7, pub_ns=0)[1]
            slept: list[float] = []
            monkeypatch.setattr(shm.time, "sleep", slept.append)
            sock.send_multipart([b"/late", header, stale])
            wait_for(lambda: sub.recv(timeout=0.1) is None and sub.stats.malformed["stale"] == 1, 10.0, "the drop")
            assert slept == [], "a lent slot is not waited for"
    finally:
        pool.close()


def base(pool: ShmPool) -> int:
    """Address of the start of ``pool``'s segment (to turn a loan into its descriptor's offset)."""
    return int(np.frombuffer(pool._map, np.uint8, 1).ctypes.data)  # type: ignore[arg-type]
