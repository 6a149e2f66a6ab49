"""Golden wire bytes (docs/wire.md): the encoder still writes exactly the bytes in tests/golden/,
and each file decodes to the message it was made from, with the layout the spec documents."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from fusion_stream.core import msgs, wire

from .golden import make_golden

GOLDEN = make_golden.golden()
MESSAGES = make_golden.messages()
CHANGED = (
    "the bytes on the wire changed; a decoder in another language (docs/wire.md) would misread them. "
    "If on purpose: bump WIRE_VERSION in fusion_stream/core/wire.py, update docs/wire.md, then regenerate "
    "with `python tests/golden/make_golden.py` and commit the new files"
)


def _frames(name: str) -> list[bytes]:
    return make_golden.unpack((make_golden.HERE / name).read_bytes())


def test_every_message_type_has_a_golden_file() -> None:
    kinds = {type(msg) for _, msg in MESSAGES.values()}
    assert kinds == set(msgs.MESSAGE_TYPES)
    assert sorted(p.name for p in make_golden.HERE.glob("*.bin")) == sorted(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_encoder_writes_the_golden_bytes(name: str) -> None:
    assert (make_golden.HERE / name).read_bytes() == GOLDEN[name], f"{name}: {CHANGED}"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_golden_file_decodes_to_its_message(name: str) -> None:
    topic, msg = MESSAGES[name.removesuffix(".bin")]
    env = wire.decode(_frames(name))
    assert env.topic == topic
    assert (env.seq, env.src, env.pub_ns) == (make_golden.SEQ, make_golden.SRC, make_golden.PUB_NS)
    assert type(env.message) is type(msg)
    assert env.message == msg  # every field; arrays by dtype, shape and value
    assert (env.message.stamp_ns, env.message.frame_id) == (msg.stamp_ns, msg.frame_id)
    assert env.nbytes == sum(len(f) for f in _frames(name))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_header_has_the_documented_layout(name: str) -> None:
    frames = _frames(name)
    topic, msg = MESSAGES[name.removesuffix(".bin")]
    assert frames[0] == topic.encode()
    assert frames[1][:4] == b"FSW" + bytes([wire.WIRE_VERSION])
    seq, src, pub_ns, stamp_ns, frame_id, body, arrays = msgspec.msgpack.decode(frames[1][4:])
    assert (seq, src, pub_ns, stamp_ns, frame_id) == (
        make_golden.SEQ,
        make_golden.SRC,
        make_golden.PUB_NS,
        msg.stamp_ns,
        msg.frame_id,
    )
    assert body[0] == {"ClockTick": "Clock"}.get(type(msg).__name__, type(msg).__name__)
    out_of_band = [spec for spec in arrays if spec[2] is None]
    assert len(frames) == 2 + len(out_of_band)  # topic, header, one frame per array not inline
    for spec, frame in zip(out_of_band, frames[2:], strict=True):
        dtype, shape, _ = spec
        assert len(frame) == np.dtype(dtype).itemsize * int(np.prod(shape))
    for dtype, shape, inline in arrays:
        assert dtype in {"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8"}
        assert len(shape) <= wire.MAX_NDIM
        if inline is not None:
            assert len(inline) == np.dtype(dtype).itemsize * int(np.prod(shape)) <= wire.INLINE_MAX_BYTES


def test_detections_table_and_synced_members_as_documented() -> None:
    _, dets = MESSAGES["detections"]
    assert isinstance(dets, msgs.Detections)
    header = msgspec.msgpack.decode(_frames("detections.bin")[1][4:])
    tag, labels, track_ids, attributes = header[5]
    assert (tag, labels, track_ids) == ("Detections", ["car", "ambulance"], [7, -1])
    assert attributes[1] == {"siren": True, "lane": 2, "note": "golden", "bearing_deg": 12.5}
    [(dtype, shape, inline)] = header[6]
    table = np.frombuffer(inline, dtype=dtype).reshape(shape)
    first = dets.boxes[0]
    assert table[0].tolist() == [*first.center, *first.size, first.yaw, *first.velocity, first.score]

    frames = _frames("synced_frame.bin")
    header = msgspec.msgpack.decode(frames[1][4:])
    tag, members, missing = header[5]
    assert (tag, missing) == ("SyncedFrame", ["radar"])
    assert [(m[0], m[3][0], m[4]) for m in members] == [
        ("lidar", "PointCloud", 1),
        ("camera", "Image", 1),
        ("audio", "AudioChunk", 1),
        ("audio", "AudioChunk", 1),
    ]
    assert len(header[6]) == 4 and len(frames) == 3  # four arrays, only the cloud's out of band


def test_a_bumped_version_is_refused_with_its_reason() -> None:
    frames = _frames("clock_tick.bin")
    frames[1] = b"FSW" + bytes([wire.WIRE_VERSION + 1]) + frames[1][4:]
    with pytest.raises(wire.WireError) as err:
        wire.decode(frames)
    assert err.value.reason == "version"


def test_the_check_mode_agrees_with_the_files() -> None:
    assert make_golden.main(["--check"]) == 0
