"""Hostile bytes on the wire: every path from bytes to a message ends in a message or a WireError,
what a subscriber can be made to hold is bounded, and no message stops a node or the launcher."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_stream.core import msgs, wire
from fusion_stream.errors import WireError
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.registry import Registry, TopicEntry
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sources import testpattern

from .conftest import ROOT, Procs, wait_for

CLOUD = testpattern.point_cloud(1, points=64)


def header_with(arrays: list[list[Any]], body: list[Any] | None = None) -> bytes:
    """A header frame written field by field, so it may say anything."""
    doc = [1, 7, 1, 1, "lidar", body or ["PointCloud", ["x", "y", "z", "intensity"]], arrays]
    return wire.PREFIX + msgspec.msgpack.encode(doc)


# ------------------------------------------------------------------ shapes and dtypes

EDGE_SHAPES = [
    [0, 2**64 - 1],  # the 58-byte message that stopped a whole graph
    [2**64 - 1, 0],
    [0, 2**63 - 1],
    [2**63 - 1, 255, 0],
    [2**31 - 1, 2**31 - 1, 2**31 - 1, 0],
    [0, 0, 0, 0, 0],
    [-1, 0],
    [2**31, 1],
    [1] * 40,
]


@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ["<f4", "|u1", "<f8"])
@pytest.mark.parametrize("inline", [True, False])
def test_absurd_shapes_are_refused_as_wire_errors(shape: list[int], dtype: str, inline: bool) -> None:
    spec: list[Any] = [dtype, shape, b""] if inline else [dtype, shape]
    frames = [b"/t", header_with([spec])] + ([] if inline else [b""])
    with pytest.raises(WireError) as err:
        wire.decode(frames)
    assert err.value.reason in {"bad-shape", "oversized"}  # oversized: bytes over the limit


def test_the_58_byte_message_is_a_wire_error() -> None:
    frames = [b"/t", header_with([["<f4", [0, 2**64 - 1], b""]])]
    assert len(frames[0]) + len(frames[1]) < 80
    with pytest.raises(WireError, match="bad-shape"):
        wire.decode(frames)


def test_empty_arrays_with_sane_shapes_still_decode() -> None:
    empty = msgs.PointCloud(stamp_ns=1, data=np.zeros((0, 4), np.float32))
    frames = [f if isinstance(f, bytes) else bytes(f) for f in wire.encode("/t", empty, seq=1, src=1, pub_ns=1)]
    assert wire.decode(frames).message == empty


def test_a_negative_member_count_cannot_shift_a_synced_frames_arrays() -> None:
    """Counts [1, -1] sum to 0 = no arrays; the first member would then read a missing array."""
    radar = ["RadarScan", ["x", "y", "z", "radial_velocity", "rcs"]]
    body = ["SyncedFrame", [["a", 1, "r", radar, 1], ["b", 1, "r", radar, -1]], []]
    with pytest.raises(WireError, match="bad-body"):
        wire.decode([b"/t", header_with([], body)])


def test_too_many_frames_are_refused_before_any_is_read() -> None:
    frames = [b"/t", header_with([]), *([b"x"] * (wire.MAX_FRAMES + 5))]
    with pytest.raises(WireError, match="oversized"):
        wire.decode(frames)


# ------------------------------------------------------------------ fuzzing

_INTS = st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**64 - 1]))
_ANY = st.one_of(_INTS, st.text(max_size=8), st.floats(), st.none(), st.booleans(), st.binary(max_size=8))
_SPEC = st.lists(
    st.one_of(
        st.sampled_from([*wire._DTYPES, "|O", ">f4", "<c8"]), st.lists(_INTS, max_size=5), st.binary(max_size=64), _ANY
    ),
    min_size=0,
    max_size=4,
)
_BODY = st.one_of(
    st.tuples(
        st.sampled_from(["PointCloud", "RadarScan"]), st.lists(st.sampled_from(["x", "y", "z", "intensity", "rcs"]))
    ),
    st.tuples(st.sampled_from(["Image", "CompressedImage"]), st.sampled_from(["rgb8", "mono8", "jpeg", "", "png"])),
    st.tuples(st.just("AudioChunk"), _INTS, _INTS),
    st.tuples(st.just("Diagnostics"), st.text(max_size=4), _INTS, st.text(max_size=4), st.just({})),
    st.tuples(
        st.just("Detections"), st.lists(st.text(max_size=3), max_size=2), st.lists(_INTS, max_size=2), st.just([])
    ),
    st.lists(_ANY, max_size=4),
).map(list)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    head=st.tuples(_INTS, _INTS, _INTS, _INTS, st.text(max_size=6)),
    body=_BODY,
    specs=st.lists(_SPEC, max_size=3),
    payloads=st.lists(st.binary(max_size=300), max_size=3),
)
def test_schema_shaped_headers_with_edge_values_end_in_a_message_or_wire_error(
    head: tuple[Any, ...], body: list[Any], specs: list[list[Any]], payloads: list[bytes]
) -> None:
    frames = [b"/t", wire.PREFIX + msgspec.msgpack.encode([*head, body, specs]), *payloads]
    try:
        env = wire.decode(frames)
    except WireError as err:
        assert err.reason != "unexpected", err  # the last-resort guard hides a hole in the checks
    else:
        assert isinstance(env.message, msgs.MESSAGE_TYPES)


def test_fuzz_campaign_finds_nothing_but_wire_errors() -> None:
    """The campaign of bench/fuzz_wire.py, smaller (the README's figure runs 100,000 messages)."""
    seed = int(os.environ.get("FUSION_STREAM_FUZZ_SEED", "0"))
    out = subprocess.run(
        [sys.executable, "bench/fuzz_wire.py", "--frames", "20000", "--seed", str(seed), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    doc = json.loads(out.stdout)
    assert doc["frames"] == 20000
    assert doc["unexpected_count"] == 0, doc["unexpected"]
    assert out.returncode == 0
    # the campaign reaches deep: valid messages and every kind of refusal
    assert doc["decoded"] > 100
    assert {"bad-shape", "bad-dtype", "size-mismatch", "bad-body", "invalid-message"} <= set(doc["refused"])


# ------------------------------------------------------------------ bounded receive


@pytest.fixture
def raw_pub(registry: Registry, runtime_dir: Path) -> Any:
    """A PUB socket that sends whatever bytes a test wants, registered like a publisher of /in."""
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    ep = f"ipc://{runtime_dir}/hostile.ipc"
    sock.bind(ep)
    registry.register(TopicEntry("/in", ep, "PointCloud", "hostile", os.getpid(), socket.gethostname(), 1))
    yield sock
    sock.close(0)


def _good(seq: int, src: int = 1, points: int = 2000) -> list[Any]:
    return wire.encode("/in", testpattern.point_cloud(seq, points=points), seq=seq, src=src, pub_ns=time.time_ns())


def _connected(sub: Subscriber, raw: zmq.Socket[Any]) -> None:
    def got() -> bool:
        raw.send_multipart(_good(1), copy=False)
        return sub.recv(timeout=0.05) is not None

    wait_for(got, 10, "subscriber to connect")


@pytest.mark.parametrize("latest", [False, True])
def test_a_subscriber_refuses_a_message_too_big_in_all_even_if_each_frame_is_small(
    raw_pub: zmq.Socket[Any], registry: Registry, latest: bool
) -> None:
    limit = 1 << 20
    with Subscriber("/in", registry=registry, max_bytes=limit, latest=latest) as sub:
        _connected(sub, raw_pub)
        good = _good(5)
        chunk = b"\0" * (600 * 1024)  # each frame under the limit, six of them far over
        raw_pub.send_multipart([b"/in", bytes(good[1]), *([chunk] * 6)])
        raw_pub.send_multipart([b"/in", bytes(good[1]), *([b"x"] * (wire.MAX_FRAMES + 10))])
        time.sleep(0.2)
        raw_pub.send_multipart(_good(9), copy=False)
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and 9 not in seen:
            msg = sub.recv(timeout=0.2)
            if msg is not None:
                seen.append(msg.stamp_ns)
        assert 9 in seen, "a valid message after the oversized ones was not received"
        assert sub.stats.malformed["oversized"] == 2


def test_zeromq_disconnects_a_peer_whose_single_frame_is_over_the_limit(
    raw_pub: zmq.Socket[Any], registry: Registry
) -> None:
    with Subscriber("/in", registry=registry, max_bytes=1 << 20) as sub:
        _connected(sub, raw_pub)
        raw_pub.send_multipart([b"/in", b"FSW\x01", b"\0" * (4 << 20)])
        time.sleep(0.3)
        received = sub.recv(timeout=0.3)
        assert received is None or received.stamp_ns == 1  # never the 4 MiB frame


def test_latest_mode_does_not_count_superseded_messages_as_lost(registry: Registry) -> None:
    # queues big enough that ZeroMQ drops nothing: every gap the subscriber sees is its own skipping
    with (
        Publisher("/in", registry=registry, queue_size=1000) as pub,
        Subscriber("/in", registry=registry, latest=True, queue_size=1000) as sub,
    ):
        sub.wait_for_publishers(5)

        def connected() -> bool:
            pub.publish(testpattern.radar_scan(1))
            return sub.recv(timeout=0.05) is not None

        wait_for(connected, 10, "subscriber to connect")
        for i in range(400):
            pub.publish(testpattern.radar_scan(i + 10))
            if i % 50 == 0:
                sub.recv(timeout=0.01)
        time.sleep(0.3)
        last = None
        while (msg := sub.recv(timeout=0.2)) is not None:
            last = msg
        assert last is not None and last.stamp_ns == 409
        assert sub.stats.superseded > 100
        assert sub.stats.lost == 0, sub.stats


def test_latest_mode_still_counts_real_gaps_as_lost(raw_pub: zmq.Socket[Any], registry: Registry) -> None:
    with Subscriber("/in", registry=registry, latest=True) as sub:
        _connected(sub, raw_pub)
        raw_pub.send_multipart(_good(2), copy=False)
        assert sub.recv(timeout=2) is not None
        raw_pub.send_multipart(_good(10), copy=False)  # 3..9 never sent: lost in transport
        assert sub.recv(timeout=2) is not None
        assert sub.stats.lost == 7


def test_a_decoder_bug_is_counted_and_dropped_not_raised(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: if decoding ever raised something else than WireError, the receiver goes on."""
    with Publisher("/in", registry=registry) as pub, Subscriber("/in", registry=registry) as sub:
        sub.wait_for_publishers(5)

        def boom(frames: Any, max_bytes: int = 0) -> wire.Envelope:
            raise RuntimeError("a decoder bug")

        monkeypatch.setattr(wire, "decode", boom)
        for _ in range(20):
            pub.publish(testpattern.radar_scan(1))
            assert sub.recv(timeout=0.05) is None
        assert sub.stats.malformed["decoder-bug"] > 0


def test_a_node_survives_a_failing_receive_path(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: whatever the receive path raises is counted in diagnostics, not fatal."""
    node = Node("victim", registry=registry, handle_signals=False)
    try:
        sub = node.subscribe("/in", lambda env: None)

        def broken(timeout: float | None = -1.0) -> wire.Envelope | None:
            raise OSError("registry unreadable")

        monkeypatch.setattr(sub, "recv_envelope", broken)
        with Publisher("/in", registry=registry) as pub:
            sub.wait_for_publishers(5)
            deadline = time.monotonic() + 10
            while node.errors < 3 and time.monotonic() < deadline:
                pub.publish(testpattern.radar_scan(1))
                node.spin_once(0.05)
        report = node.diagnostics()
        assert report.values["sub./in.receive_errors"] >= 3
        assert node.errors >= 3
    finally:
        node.close()


# ------------------------------------------------------------------ real processes

GRAPH = """
graph: test
external_topics: [/in]
nodes:
  - name: source
    type: pattern
    params: {kind: points, points: 500, rate_hz: 20, topic: /points}
  - name: relay
    type: relay
    params: {input: /in, output: /out}
"""


def test_hostile_messages_to_the_launcher_and_a_relay_stop_nothing(
    procs: Procs, registry: Registry, runtime_dir: Path, raw_pub: zmq.Socket[Any]
) -> None:
    """The 58-byte message killed the launcher (on /diagnostics) and any node reading it."""
    diag = zmq.Context.instance().socket(zmq.PUB)
    ep = f"ipc://{runtime_dir}/hostile-diag.ipc"
    diag.bind(ep)
    registry.register(TopicEntry("/diagnostics", ep, "Diagnostics", "hostile", os.getpid(), socket.gethostname(), 2))
    launch_file = runtime_dir / "hostile.yaml"
    launch_file.write_text(GRAPH)
    launcher = procs.cli("launch", str(launch_file))
    bomb = [b"", header_with([["<f4", [0, 2**64 - 1], b""]])]
    try:
        with Subscriber(["/points", "/out", "/diagnostics"], registry=registry) as sub:
            wait_for(lambda: {"/points", "/out"} <= {e.topic for e in registry.entries()}, 30, "graph to start")
            for _ in range(20):
                diag.send_multipart([b"/diagnostics", *bomb[1:]])
                raw_pub.send_multipart([b"/in", *bomb[1:]])
                raw_pub.send_multipart([b"/in", b"FSW\x01" + b"\xff" * 40])
                time.sleep(0.05)
            time.sleep(1.5)
            assert launcher.poll() is None, "the launcher died"
            raw_pub.send_multipart(_good(777), copy=False)
            seen: set[str] = set()
            relayed = False
            malformed = 0
            deadline = time.monotonic() + 15
            next_send = 0.0
            while time.monotonic() < deadline and not (relayed and malformed >= 40 and "/points" in seen):
                if time.monotonic() >= next_send:
                    raw_pub.send_multipart(_good(777), copy=False)
                    # more hostile ones: the first burst may have gone before the relay had connected
                    raw_pub.send_multipart([b"/in", b"FSW\x01" + b"\xff" * 40])
                    next_send = time.monotonic() + 0.2
                env = sub.recv_envelope(timeout=0.2)
                if env is None:
                    continue
                seen.add(env.topic)
                relayed |= env.topic == "/out" and env.message.stamp_ns == 777
                m = env.message
                if isinstance(m, msgs.Diagnostics) and m.node == "relay":
                    malformed = int(m.values.get("sub./in.malformed", 0))
            assert relayed, f"the relay stopped forwarding (saw {seen}, relay counted {malformed} malformed)"
            assert "/points" in seen, "the sensor stopped"
            assert malformed >= 40, "the relay did not count the hostile messages"
            assert launcher.poll() is None, "the launcher died"
    finally:
        diag.close(0)
        launcher.send_signal(signal.SIGINT)
        out, err = launcher.communicate(timeout=15)
    assert launcher.returncode == 0, (out + err)[-3000:]
    assert "relay died" not in out + err


@pytest.mark.parametrize("latest", [False, True])
def test_a_registry_that_turns_untrusted_while_running_keeps_the_links_it_has(
    registry: Registry, caplog: pytest.LogCaptureFixture, latest: bool
) -> None:
    with Publisher("/in", registry=registry) as pub, Subscriber("/in", registry=registry, latest=latest) as sub:
        sub.wait_for_publishers(5)

        def received() -> bool:
            pub.publish(testpattern.radar_scan(1))
            return sub.recv(timeout=0.05) is not None

        wait_for(received, 10, "subscriber to connect")
        registry.path.chmod(0o777)  # now writable by others: the registry is refused
        try:
            time.sleep(0.3)  # a few refreshes
            wait_for(received, 5, "messages over the existing link")
            assert "cannot refresh publishers" in caplog.text
        finally:
            registry.path.chmod(0o700)
