from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_stream.core import msgs, wire
from fusion_stream.errors import WireError
from fusion_stream.sources.testpattern import sample_messages

SAMPLES = sample_messages(3)


def frames_of(topic: str, msg: msgs.Message) -> list[bytes]:
    """What a subscriber receives: every frame as bytes."""
    return [
        f if isinstance(f, bytes) else np.asarray(f).tobytes()
        for f in wire.encode(topic, msg, seq=9, src=77, pub_ns=123)
    ]


@pytest.mark.parametrize("topic", list(SAMPLES))
def test_every_message_type_round_trips(topic: str) -> None:
    env = wire.decode(frames_of(topic, SAMPLES[topic]))
    assert env.message == SAMPLES[topic]
    assert (env.topic, env.seq, env.src, env.pub_ns) == (topic, 9, 77, 123)
    assert type(env.message) is type(SAMPLES[topic])


def test_arrays_are_sent_and_received_without_copy() -> None:
    cloud = SAMPLES["/lidar/top/points"]
    assert isinstance(cloud, msgs.PointCloud)
    frames = wire.encode("/x", cloud, seq=1, src=1, pub_ns=1)
    assert frames[2] is cloud.data  # the array object itself goes to the socket
    buf = bytearray(memoryview(cloud.data).cast("B"))
    env = wire.decode([b"/x", bytes(memoryview(frames[1])), buf])
    decoded = env.message
    assert isinstance(decoded, msgs.PointCloud)
    assert np.shares_memory(decoded.data, np.frombuffer(buf, np.uint8))


def header_of(msg: msgs.Message) -> wire.Header:
    raw = frames_of("/t", msg)[1]
    return msgspec.msgpack.decode(raw[4:], type=wire.Header)


def with_header(header: object, arrays: list[bytes]) -> list[bytes]:
    return [b"/t", wire.PREFIX + msgspec.msgpack.encode(header), *arrays]


def malformed_cases() -> dict[str, tuple[list[bytes], str]]:
    cloud = SAMPLES["/lidar/top/points"]
    good = frames_of("/t", cloud)
    h = header_of(cloud)
    huge = msgspec.structs.replace(h, arrays=(wire.ArraySpec("<f4", (100_000_000_000, 6)),))
    bad_dtype = msgspec.structs.replace(h, arrays=(wire.ArraySpec("|O", (512, 6)),))
    neg = msgspec.structs.replace(h, arrays=(wire.ArraySpec("<f4", (-512, -6)),))
    wrong_shape = msgspec.structs.replace(h, arrays=(wire.ArraySpec("<f4", (512, 5)),))
    as_image = msgspec.structs.replace(h, body=wire.ImageBody("rgb8"))
    unknown_type = [b"/t", wire.PREFIX + msgspec.msgpack.encode([1, 2, 3, 4, "", {"type": "Pickle"}, []])]
    return {
        "garbage": ([b"/t", b"\x80\x04\x95garbage"], "bad-magic"),
        "only topic": ([b"/t"], "truncated"),
        "missing array frame": (good[:2], "truncated"),
        "extra frame": ([*good, b"x"], "truncated"),
        "wrong version": ([b"/t", wire.MAGIC + b"\x09" + good[1][4:], *good[2:]], "version"),
        "truncated header": ([b"/t", good[1][:12], *good[2:]], "bad-header"),
        "unknown type": (unknown_type, "bad-header"),
        "100 GB array": (with_header(huge, good[2:]), "oversized"),
        "object dtype": (with_header(bad_dtype, good[2:]), "bad-dtype"),
        "negative shape": (with_header(neg, good[2:]), "bad-shape"),
        "short array frame": ([*good[:2], good[2][:-4]], "size-mismatch"),
        "shape vs bytes": (with_header(wrong_shape, good[2:]), "size-mismatch"),
        "body vs array": (with_header(as_image, good[2:]), "invalid-message"),
        "bad topic utf8": ([b"\xff\xfe", *good[1:]], "bad-topic"),
    }


@pytest.mark.parametrize("case", list(malformed_cases()))
def test_malformed_messages_raise_wire_error_with_reason(case: str) -> None:
    frames, reason = malformed_cases()[case]
    with pytest.raises(WireError) as info:
        wire.decode(frames)
    assert info.value.reason == reason, info.value
    assert info.value.detail


def test_small_arrays_travel_inside_the_header() -> None:
    radar = SAMPLES["/radar/front/points"]
    assert isinstance(radar, msgs.RadarScan) and radar.data.nbytes <= wire.INLINE_MAX_BYTES
    frames = frames_of("/r", radar)
    assert len(frames) == 2
    assert wire.decode(frames).message == radar
    h = header_of(radar)
    short = msgspec.structs.replace(h, arrays=(msgspec.structs.replace(h.arrays[0], inline=b"\x00" * 10),))
    with pytest.raises(WireError) as info:
        wire.decode(with_header(short, []))
    assert info.value.reason == "size-mismatch"


def test_byte_limit_is_enforced_before_allocation() -> None:
    frames = frames_of("/t", SAMPLES["/camera/front/image"])
    with pytest.raises(WireError, match="limit is 100"):
        wire.decode(frames, max_bytes=100)


def test_synced_frame_with_inconsistent_member_arrays() -> None:
    synced = SAMPLES["/sync/frames"]
    frames = frames_of("/t", synced)
    with pytest.raises(WireError) as info:
        wire.decode(frames[:-1])
    assert info.value.reason == "truncated"
    h = header_of(synced)
    assert isinstance(h.body, wire.SyncedFrameBody)
    members = list(h.body.members)
    members[0] = msgspec.structs.replace(members[0], n_arrays=2)
    bad = msgspec.structs.replace(h, body=msgspec.structs.replace(h.body, members=tuple(members)))
    with pytest.raises(WireError, match="declare"):
        wire.decode(with_header(bad, frames[2:]))


@pytest.mark.parametrize("topic", ["", "lidar", "/a b", "/a//b", "/ä", "/" + "a" * 300])
def test_invalid_topics_are_refused(topic: str) -> None:
    with pytest.raises(ValueError, match="invalid topic"):
        wire.check_topic(topic)


# ------------------------------------------------------------------ property tests

ALL_FRAMES = [frames_of(t, m) for t, m in SAMPLES.items()]


def _decode_or_wire_error(frames: list[bytes]) -> None:
    try:
        env = wire.decode(frames)
    except WireError as err:
        assert err.reason
    else:
        assert isinstance(env.message, msgs.MESSAGE_TYPES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_random_frames_never_crash(frames: list[bytes]) -> None:
    _decode_or_wire_error(frames)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_random_bodies_behind_a_valid_prefix_never_crash(tail: list[bytes]) -> None:
    _decode_or_wire_error([b"/t", wire.PREFIX + (tail[0] if tail else b""), *tail[1:]])


@settings(max_examples=400, deadline=None)
@given(
    which=st.integers(0, len(ALL_FRAMES) - 1),
    part=st.integers(0, 50),
    pos=st.integers(0, 10_000),
    byte=st.integers(0, 255),
    cut=st.booleans(),
)
def test_mutated_valid_frames_never_crash(which: int, part: int, pos: int, byte: int, cut: bool) -> None:
    frames = list(ALL_FRAMES[which])
    i = part % len(frames)
    buf = bytearray(frames[i])
    if buf:
        if cut:
            del buf[pos % len(buf) :]
        else:
            buf[pos % len(buf)] = byte
    frames[i] = bytes(buf)
    _decode_or_wire_error(frames)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 50),
    stamp=st.integers(0, 2**63 - 1),
    frame_id=st.text(max_size=20),
    extra=st.lists(st.sampled_from(["ring", "time_offset", "ambient"]), unique=True),
)
def test_point_cloud_round_trip_property(n: int, stamp: int, frame_id: str, extra: list[str]) -> None:
    fields = ("x", "y", "z", "intensity", *extra)
    data = np.random.default_rng(n).normal(size=(n, len(fields))).astype(np.float32)
    msg = msgs.PointCloud(stamp_ns=stamp, frame_id=frame_id, data=data, fields=fields)
    assert wire.decode(frames_of("/p", msg)).message == msg
