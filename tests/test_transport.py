"""Publisher / Subscriber / registry inside one process (the cross-process tests are in
test_processes.py)."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from fusion_stream.core import msgs, wire
from fusion_stream.errors import TopicNotFoundError, TransportError
from fusion_stream.runtime.registry import Registry, TopicEntry
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sources import testpattern

from .conftest import wait_for


def connect(pub: Publisher, sub: Subscriber, make: object = None) -> None:
    """Publish probes until the subscriber sees one (ZeroMQ's slow-joiner window)."""
    probe = testpattern.radar_scan(1)

    def seen() -> bool:
        pub.publish(probe)
        return sub.recv(timeout=0.05) is not None

    wait_for(seen, 5.0, "subscription to connect")
    while sub.recv(timeout=0.05) is not None:
        pass


def test_topic_found_by_name_through_the_registry(registry: Registry) -> None:
    with (
        Publisher("/lidar/top/points", registry=registry, node="lidar") as pub,
        Subscriber("/lidar/top/points", registry=registry) as sub,
    ):
        connect(pub, sub)
        msg = testpattern.point_cloud(123, points=1000)
        pub.publish(msg)
        env = sub.recv_envelope(timeout=2.0)
        assert env is not None and env.message == msg and env.topic == "/lidar/top/points"
        [entry] = registry.lookup("/lidar/top/points")
        assert (entry.type, entry.node, entry.pid) == ("RadarScan", "lidar", os.getpid())
        assert entry.endpoint.startswith("ipc://")
    assert registry.lookup("/lidar/top/points") == []
    assert not Path(entry.endpoint[len("ipc://") :]).exists(), "socket file left behind"


def test_a_declared_type_is_registered_at_once_and_enforced(registry: Registry) -> None:
    with Publisher("/lidar/top/points", registry=registry, msg_type=msgs.PointCloud) as pub:
        [entry] = registry.lookup("/lidar/top/points")
        assert entry.type == "PointCloud"  # before any message
        with pytest.raises(TypeError, match="/lidar/top/points publishes PointCloud, not RadarScan"):
            pub.publish(testpattern.radar_scan(1))
        pub.publish(testpattern.point_cloud(1, points=10))


def test_subscriber_started_first_connects_when_the_publisher_appears(registry: Registry) -> None:
    with Subscriber("/late", registry=registry) as sub:
        assert sub.recv(timeout=0.1) is None
        with Publisher("/late", registry=registry) as pub:
            connect(pub, sub)
            pub.publish(testpattern.radar_scan(5))
            got = sub.recv(timeout=2.0)
            assert isinstance(got, msgs.RadarScan) and got.stamp_ns == 5


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:0", "ipc://{dir}/explicit.ipc", "inproc://fs-test"])
def test_explicit_endpoints(registry: Registry, runtime_dir: Path, endpoint: str) -> None:
    endpoint = endpoint.format(dir=runtime_dir)
    with Publisher("/x", endpoint=endpoint, registry=registry, register=False) as pub:
        assert registry.lookup("/x") == []
        bound = pub.endpoint
        if endpoint.endswith(":0"):
            assert not bound.endswith(":0")
        with Subscriber("/x", endpoints=[bound]) as sub:
            connect(pub, sub)
            pub.publish(testpattern.audio_chunk(0))
            assert isinstance(sub.recv(timeout=2.0), msgs.AudioChunk)


def test_subscriber_filters_topics_that_share_a_prefix(registry: Registry, runtime_dir: Path) -> None:
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    ep = f"ipc://{runtime_dir}/shared.ipc"
    raw.bind(ep)
    try:
        with Subscriber("/cam", endpoints=[ep]) as sub:
            ok = testpattern.radar_scan(2)

            def seen() -> bool:
                raw.send_multipart(wire.encode("/cam_raw", ok, seq=1, src=1, pub_ns=1), copy=False)
                raw.send_multipart(wire.encode("/cam", ok, seq=1, src=1, pub_ns=1), copy=False)
                env = sub.recv_envelope(timeout=0.05)
                return env is not None and env.topic == "/cam"

            wait_for(seen, 5.0, "exact topic")
    finally:
        raw.close(0)


def test_iteration_stops_after_the_idle_timeout(registry: Registry) -> None:
    with Publisher("/t", registry=registry) as pub, Subscriber("/t", registry=registry, timeout=0.3) as sub:
        connect(pub, sub)
        for i in range(3):
            pub.publish(testpattern.radar_scan(100 + i))
        t0 = time.monotonic()
        got = [m.stamp_ns for m in sub]
        assert got == [100, 101, 102]
        assert 0.25 < time.monotonic() - t0 < 2.0


def test_latest_mode_returns_only_the_newest(registry: Registry) -> None:
    with (
        Publisher("/t", registry=registry, queue_size=1000) as pub,
        Subscriber("/t", registry=registry, latest=True, queue_size=1000) as sub,
    ):
        connect(pub, sub)
        for i in range(50):
            pub.publish(testpattern.radar_scan(1000 + i))
        time.sleep(0.3)  # all 50 are queued in the subscriber by now
        newest = sub.recv(timeout=1.0)
        assert newest is not None and newest.stamp_ns == 1049
        assert sub.stats.superseded == 49
        assert sub.recv(timeout=0.1) is None


def test_a_subscriber_that_never_reads_does_not_block_or_bloat_the_publisher(registry: Registry) -> None:
    big = testpattern.point_cloud(1, points=262_144)  # ~6 MB with six fields
    with (
        Publisher("/big", registry=registry, queue_size=4) as pub,
        Subscriber("/big", registry=registry, queue_size=4) as sub,
    ):
        connect(pub, sub)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.monotonic()
        worst = 0.0
        for _ in range(300):  # ~1.9 GB offered to a reader that never reads
            t = time.monotonic()
            pub.publish(big)
            worst = max(worst, time.monotonic() - t)
        elapsed = time.monotonic() - t0
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        assert worst < 0.5, f"a publish call blocked for {worst:.3f} s"
        assert elapsed < 20
        assert grown_mb < 400, f"memory grew by {grown_mb:.0f} MB"
        # the reader wakes up: it gets what its bounded queue held and learns about the rest
        got = 0
        while sub.recv(timeout=0.3) is not None:
            got += 1
        pub.publish(big)
        assert sub.recv(timeout=2.0) is not None
        assert got < 100
        assert sub.stats.lost > 150


def test_malformed_messages_are_counted_and_skipped(registry: Registry, runtime_dir: Path) -> None:
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    ep = f"ipc://{runtime_dir}/bad.ipc"
    raw.bind(ep)
    try:
        with Subscriber("/t", endpoints=[ep]) as sub:
            good = wire.encode("/t", testpattern.radar_scan(7), seq=1, src=1, pub_ns=1)

            def seen() -> bool:
                raw.send_multipart(good, copy=False)
                return sub.recv(timeout=0.05) is not None

            wait_for(seen, 5.0, "connection")
            raw.send_multipart([b"/t", b"garbage"])
            raw.send_multipart([b"/t"])
            raw.send_multipart([b"/t", b"FSW\x07rest"])
            raw.send_multipart(wire.encode("/t", testpattern.radar_scan(8), seq=2, src=1, pub_ns=1), copy=False)
            env = sub.recv_envelope(timeout=2.0)
            assert env is not None and env.message.stamp_ns == 8
            assert dict(sub.stats.malformed) == {"bad-magic": 1, "truncated": 1, "version": 1}
    finally:
        raw.close(0)


def test_missing_topic_gives_a_clear_error(registry: Registry) -> None:
    with Subscriber("/nobody", registry=registry) as sub, pytest.raises(TopicNotFoundError) as info:
        sub.wait_for_publishers(0.2)
    assert "/nobody" in str(info.value) and "fusion-stream topics" in str(info.value)


def test_bind_conflict_names_the_endpoint(registry: Registry) -> None:
    with Publisher("/a", endpoint="tcp://127.0.0.1:0", registry=registry) as first:
        with pytest.raises(TransportError) as info:
            Publisher("/b", endpoint=first.endpoint, registry=registry)
        assert info.value.endpoint == first.endpoint
    assert registry.lookup("/b") == []


def test_registry_ignores_dead_processes_and_broken_entries(registry: Registry, runtime_dir: Path) -> None:
    registry.ensure()
    dead = TopicEntry("/ghost", "ipc:///nowhere", "", "ghost", 2**22 + 12345, os.uname().nodename, 1)
    path = registry.register(dead)
    (path.parent / "junk.json").write_text("{not json")
    assert registry.lookup("/ghost") == []
    assert not path.exists()


def test_runtime_dir_of_another_user_or_open_to_all_is_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    open_dir.chmod(0o777)
    with pytest.raises(TransportError, match="writable by others"):
        Publisher("/a", registry=Registry(open_dir, "g"))


def test_decoded_arrays_are_zero_copy_views(registry: Registry) -> None:
    with Publisher("/t", registry=registry) as pub, Subscriber("/t", registry=registry) as sub:
        connect(pub, sub)
        pub.publish(testpattern.point_cloud(1, points=100_000))
        got = sub.recv(timeout=2.0)
        assert isinstance(got, msgs.PointCloud)
        assert not got.data.flags.owndata and not got.data.flags.writeable
        assert np.isfinite(got.data).all()


def test_bad_keys_in_the_environment_skip_curve_publishers_with_a_clear_warning(
    registry: Registry, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A program pointed at a key directory that does not exist still reads local topics."""
    monkeypatch.setenv("FUSION_STREAM_CURVE_KEYS", str(runtime_dir / "no-such-keys"))
    monkeypatch.setenv("FUSION_STREAM_HOST_NAME", "b")
    remote = TopicEntry("/remote", "tcp://127.0.0.1:9", "", "far", 0, "other-host", 7, "x" * 40)
    registry.register(remote)
    with (
        Publisher("/near", registry=registry) as pub,
        Subscriber(["/near", "/remote"], registry=registry) as sub,
    ):
        connect(pub, sub)
        pub.publish(testpattern.radar_scan(5))
        assert isinstance(sub.recv(timeout=2.0), msgs.RadarScan)
    assert "no CurveZMQ key pair for host 'b'" in caplog.text and "CurveZMQ publishers are skipped" in caplog.text
