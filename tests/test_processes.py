"""Integration: real node processes talking over real ZeroMQ sockets."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import zmq

from fusion_stream.core import msgs, wire
from fusion_stream.runtime.registry import Registry, TopicEntry
from fusion_stream.runtime.transport import Subscriber
from fusion_stream.sources import testpattern

from .conftest import Procs, wait_for


def registered(registry: Registry, topic: str) -> bool:
    return bool(registry.lookup(topic))


def test_every_message_type_round_trips_between_processes(procs: Procs, registry: Registry) -> None:
    seed = 11
    expected = testpattern.sample_messages(seed)
    expected["/samples/diagnostics"] = expected.pop("/diagnostics")
    pub = procs.python("tests/publish_samples.py", "-p", f"seed:={seed}")
    with Subscriber(list(expected), registry=registry, timeout=10.0) as sub:
        sub.wait_for_publishers(15.0)
        got: dict[str, msgs.Message] = {}
        for env in sub.envelopes():
            got.setdefault(env.topic, env.message)
            if len(got) == len(expected):
                break
    assert set(got) == set(expected)
    for topic, msg in expected.items():
        assert type(got[topic]) is type(msg), topic
        assert got[topic] == msg, f"{topic} changed on the way"
        assert got[topic].stamp_ns == msg.stamp_ns
    pub.send_signal(signal.SIGTERM)
    assert pub.wait(timeout=5) == 0


def test_sigterm_stops_a_node_cleanly_within_two_seconds(procs: Procs, registry: Registry) -> None:
    node = procs.python(
        "-m", "fusion_stream.nodes.pattern",
        "--name", "lidar", "-p", "kind:=points", "-p", "points:=50000",
    )
    wait_for(lambda: registered(registry, "/lidar/pattern/points"), 15.0, "node to register")
    endpoints = [e.endpoint for e in registry.entries()]
    with Subscriber("/diagnostics", registry=registry, timeout=5.0) as diag:
        diag.wait_for_publishers(5.0)
        wait_for(lambda: diag.recv(timeout=0.5) is not None, 5.0, "a diagnostics report")
        t0 = time.monotonic()
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 2.0
        # its last words: a STALE report saying why it stopped
        last = None
        while (m := diag.recv(timeout=0.5)) is not None:
            last = m
        assert isinstance(last, msgs.Diagnostics) and last.level == msgs.Level.STALE
        assert "SIGTERM" in last.message
    assert registry.entries() == []
    for ep in endpoints:
        assert not Path(ep.removeprefix("ipc://")).exists()
    _, err = node.communicate()
    assert "stopped (SIGTERM)" in err


def test_malformed_frames_are_counted_in_diagnostics_and_survived(
    procs: Procs, registry: Registry, runtime_dir: Path
) -> None:
    """A relay node reads /in from a hostile publisher: garbage is dropped, real data goes on."""
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    ep = f"ipc://{runtime_dir}/hostile.ipc"
    raw.bind(ep)
    registry.register(TopicEntry("/in", ep, "RadarScan", "hostile", os.getpid(), socket.gethostname(), 1))
    relay = procs.python("-m", "fusion_stream.nodes.relay", "-p", "input:=/in", "-p", "output:=/out")
    seq = 0

    def send(stamp: int) -> None:
        nonlocal seq
        seq += 1
        raw.send_multipart(
            wire.encode("/in", testpattern.radar_scan(stamp), seq=seq, src=1, pub_ns=time.time_ns()), copy=False
        )

    try:
        with Subscriber(["/out", "/diagnostics"], registry=registry) as sub:
            wait_for(lambda: registered(registry, "/out"), 15.0, "relay to start")

            def relayed() -> bool:
                send(1)
                env = sub.recv_envelope(timeout=0.1)
                return env is not None and env.topic == "/out"

            wait_for(relayed, 10.0, "relay to forward")
            # big enough for its array to travel in a frame of its own
            good = frames_bytes(wire.encode("/in", testpattern.point_cloud(2, points=2000), seq=1, src=1, pub_ns=1))
            assert len(good) == 3
            hostile = [
                [b"/in", b"\x80\x04\x95 pickle-looking garbage"],
                [b"/in"],
                [b"/in", wire.MAGIC + b"\x02" + good[1][4:], *good[2:]],
                [b"/in", good[1]],  # array frame missing
                [b"/in", good[1], b"\x00" * 10],  # wrong array size
            ]
            for frames in hostile:
                raw.send_multipart(frames)
            send(424242)
            stamps: list[int] = []
            report: msgs.Diagnostics | None = None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                env = sub.recv_envelope(timeout=0.5)
                if env is None:
                    continue
                if env.topic == "/out":
                    stamps.append(env.message.stamp_ns)
                elif (
                    isinstance(env.message, msgs.Diagnostics)
                    and env.message.node == "relay"
                    and env.message.values.get("sub./in.malformed") == len(hostile)
                ):
                    report = env.message
                    if 424242 in stamps:
                        break
            assert 424242 in stamps, "a valid message after the garbage was not relayed"
            assert report is not None, "diagnostics never counted the malformed messages"
            assert report.values["sub./in.malformed.bad-magic"] == 1
            assert report.values["sub./in.malformed.truncated"] == 2
            assert report.values["sub./in.malformed.version"] == 1
            assert report.values["sub./in.malformed.size-mismatch"] == 1
        assert relay.poll() is None, "relay died"
        relay.send_signal(signal.SIGINT)
        assert relay.wait(timeout=5) == 0
        _, err = relay.communicate()
        assert err.count("dropping malformed message") == 4, err  # once per reason, not per message
    finally:
        raw.close(0)


def frames_bytes(frames: list[wire.Frame]) -> list[bytes]:
    return [f if isinstance(f, bytes) else memoryview(f).tobytes() for f in frames]


def test_slow_subscriber_process_does_not_stall_the_publisher(procs: Procs, registry: Registry) -> None:
    """A 100 Hz 1-MB publisher keeps its rate while subscribers read one message per second.

    The plain subscriber's bounded queue holds old messages and it learns of the gap; the
    keep-latest subscriber always gets a fresh one."""
    pub = procs.python(
        "-m",
        "fusion_stream.nodes.pattern",
        "--name",
        "fast",
        "-p",
        "kind:=points",
        "-p",
        "points:=40000",
        "-p",
        "rate_hz:=100",
        "-p",
        "topic:=/fast",
    )
    with (
        Subscriber("/fast", registry=registry, queue_size=2) as slow,
        Subscriber("/fast", registry=registry, latest=True) as latest,
        Subscriber("/diagnostics", registry=registry) as diag,
    ):
        slow.wait_for_publishers(15.0)
        diag.wait_for_publishers(5.0)
        rates: list[float] = []
        ages_ms: list[float] = []
        t_end = time.monotonic() + 4.0
        while time.monotonic() < t_end:
            slow.recv(timeout=0.1)
            fresh = latest.recv(timeout=0.1)
            if fresh is not None:
                ages_ms.append((time.time_ns() - fresh.stamp_ns) / 1e6)
            time.sleep(1.0)  # the slow consumer
            while (m := diag.recv(timeout=0)) is not None:
                if isinstance(m, msgs.Diagnostics) and m.node == "fast":
                    rates.append(float(m.values["pub./fast.rate_hz"]))
        assert rates, "no diagnostics from the publisher"
        assert min(rates[1:] or rates) > 70, f"publisher slowed down: {rates}"
        # without latest mode the age grows by ~1 s per read; allow for a loaded 2-core machine
        assert len(ages_ms) >= 3 and sorted(ages_ms)[len(ages_ms) // 2] < 100, f"stale data: {ages_ms}"
        assert latest.stats.superseded > 100
        # catch up: the bounded queue held old messages; the first new one reveals the gap
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            slow.recv(timeout=0.1)
        assert slow.stats.lost > 200, slow.stats  # ~400 were sent during the slow phase
        pub.send_signal(signal.SIGINT)
        assert pub.wait(timeout=5) == 0


def test_bad_parameter_exits_2_naming_the_key(procs: Procs) -> None:
    p = procs.python("-m", "fusion_stream.nodes.pattern", "-p", "rate_hz:=fast")
    _, err = p.communicate(timeout=20)
    assert p.returncode == 2
    assert "rate_hz" in err and "float" in err
    p = procs.python("-m", "fusion_stream.nodes.pattern", "-p", "kind:=sonar")
    _, err = p.communicate(timeout=20)
    assert p.returncode == 2 and "kind" in err and "sonar" in err


def test_params_file_and_overrides(procs: Procs, registry: Registry, runtime_dir: Path) -> None:
    cfg = runtime_dir / "radar.yaml"
    cfg.write_text("kind: radar\ntopic: /radar/from_file\nrate_hz: 20\n")
    p = procs.python(
        "-m", "fusion_stream.nodes.pattern",
        "--params-file", str(cfg), "-p", "topic:=/radar/override", "--duration", "1"
    )
    wait_for(lambda: registered(registry, "/radar/override"), 15.0, "overridden topic")
    assert p.wait(timeout=10) == 0
