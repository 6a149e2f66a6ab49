"""Shared memory never hands out a recycled frame, and never reaches another host: a subscriber
process holding views while a publisher process runs flat out, a tcp subscriber of a shared-memory
topic, a descriptor that came over tcp, and the ``topics`` column."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from fusion_stream.core import msgs, wire
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.shm import DEFAULT_SLOTS, DEFAULT_THRESHOLD, SHM_DIR, ShmPool, segment_prefix
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sources import testpattern
from tests.conftest import Procs
from tests.test_shm_transport import mapped, send_until_received, start_pattern

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="no /dev/shm on this machine")

POINTS = 100_000  # 1.6 MB a cloud, well above the threshold
HELD = DEFAULT_SLOTS + 4


@pytest.fixture
def sweeping_procs(procs: Procs, registry: Registry) -> Iterator[Procs]:
    yield procs
    procs.close()
    registry.entries()  # the sweep: no segment of a killed publisher stays in /dev/shm


def intact(msg: msgs.Message) -> bool:
    assert isinstance(msg, msgs.PointCloud)
    return bool(msg == testpattern.point_cloud(msg.stamp_ns, POINTS))


def test_views_held_for_seconds_are_never_rewritten_the_publisher_sends_bytes_instead(
    sweeping_procs: Procs, registry: Registry
) -> None:
    start_pattern(sweeping_procs, "points", "-p", f"points:={POINTS}", "-p", "rate_hz:=100")
    with Subscriber("/lidar/pattern/points", registry=registry, timeout=15.0) as sub:
        sub.wait_for_publishers(20.0)
        held: list[msgs.Message] = []
        while len(held) < HELD:  # keep every view: more than the pool has slots
            msg = sub.recv()
            assert msg is not None, "the publisher stopped"
            held.append(msg)
        in_pool = sum(mapped(m.data) for m in held)  # type: ignore[attr-defined]
        assert 1 <= in_pool <= DEFAULT_SLOTS
        later = {"mapped": 0, "bytes": 0}
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # the publisher runs at full rate meanwhile
            msg = sub.recv()
            assert msg is not None and intact(msg), "a frame changed on the way"
            later["mapped" if mapped(msg.data) else "bytes"] += 1  # type: ignore[attr-defined]
            del msg
        # every slot still held: what came since travelled as bytes, not through a reused slot
        assert later["bytes"] >= 3 and later["mapped"] <= DEFAULT_SLOTS - in_pool, later
        assert all(intact(m) for m in held), "a held view was rewritten"
        held.clear()  # the locks go with the views: the pool is used again
        got_mapped = False
        deadline = time.monotonic() + 10.0  # the bytes queued meanwhile come first
        while not got_mapped and time.monotonic() < deadline:
            msg = sub.recv()
            assert msg is not None
            got_mapped = mapped(msg.data)  # type: ignore[attr-defined]
            del msg
        assert got_mapped
        assert set(sub.stats.malformed) <= {"stale"}, sub.stats.malformed


def image(i: int) -> msgs.Image:
    data = np.full((600, 800, 3), i % 251, dtype=np.uint8)
    return msgs.Image(stamp_ns=i, frame_id="cam", data=data, encoding="rgb8")


def test_a_tcp_subscriber_of_a_shm_topic_gets_bytes_and_topics_shows_shm(procs: Procs, registry: Registry) -> None:
    with Publisher("/both/image", registry=registry, shm=True, remote_endpoint="tcp://127.0.0.1:0") as pub:
        assert pub.remote_endpoint is not None and pub.remote_endpoint.startswith("tcp://")
        with (
            Subscriber("/both/image", registry=registry, timeout=5.0) as local,
            Subscriber("/both/image", endpoints=[pub.remote_endpoint], timeout=5.0) as remote,
        ):
            local.wait_for_publishers(5.0)
            got: dict[str, msgs.Message] = {}
            deadline = time.monotonic() + 10.0
            i = 0
            while len(got) < 2 and time.monotonic() < deadline:
                i += 1
                pub.publish(image(i))
                for name, sub in (("local", local), ("remote", remote)):
                    msg = sub.recv(timeout=0.05)
                    if msg is not None:
                        got[name] = msg
            assert set(got) == {"local", "remote"}
            assert got["local"] == image(got["local"].stamp_ns) and mapped(got["local"].data)  # type: ignore[attr-defined]
            assert got["remote"] == image(got["remote"].stamp_ns) and not mapped(got["remote"].data)  # type: ignore[attr-defined]
            assert not local.stats.malformed and not remote.stats.malformed
        (entry,) = registry.lookup("/both/image")
        assert entry.shm_threshold == DEFAULT_THRESHOLD
        out, _ = procs.cli("topics", "--json").communicate(timeout=30)
        shown = {json.loads(line)["topic"]: json.loads(line) for line in out.splitlines()}
        assert shown["/both/image"]["shm_threshold"] == DEFAULT_THRESHOLD
        out, _ = procs.cli("topics").communicate(timeout=30)
        assert f">= {DEFAULT_THRESHOLD // 1024} KiB" in out
    with Publisher("/plain/image", registry=registry, shm=False) as plain:
        (entry,) = registry.lookup("/plain/image")
        assert entry.shm_threshold == 0 and plain.shm_segment is None


@pytest.fixture
def tcp_pub() -> Iterator[tuple[zmq.Socket[Any], str]]:
    sock = zmq.Context.instance().socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(linger=0)


def test_a_descriptor_that_came_over_tcp_is_refused(
    tcp_pub: tuple[zmq.Socket[Any], str], registry: Registry, runtime_dir: Path
) -> None:
    sock, endpoint = tcp_pub
    pool = ShmPool(segment_prefix(registry.path, 0x4321), slots=2)
    try:
        big = image(7)
        with_descriptor = wire.encode("/tcp/forged", big, seq=1, src=5, pub_ns=0, shm=pool)
        pool.flush()
        assert wire.frames_nbytes(with_descriptor) < 1000  # the image stayed in the pool
        with Subscriber("/tcp/forged", endpoints=[endpoint], timeout=5.0) as sub:
            first = send_until_received(sock, sub, wire.encode("/tcp/forged", big, seq=2, src=5, pub_ns=0))
            assert first == big and not mapped(first.data)  # type: ignore[attr-defined]
            sock.send_multipart(with_descriptor)
            sock.send_multipart(wire.encode("/tcp/forged", image(8), seq=3, src=5, pub_ns=0))
            stamps = []
            while (msg := sub.recv(timeout=5.0)) is not None and msg.stamp_ns != 8:
                stamps.append(msg.stamp_ns)
            assert msg == image(8) and set(stamps) <= {7}  # copies of the first send, if any
            assert dict(sub.stats.malformed) == {"shm-remote": 1}
    finally:
        pool.close()
