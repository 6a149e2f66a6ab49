from __future__ import annotations

import numpy as np
import pytest

from fusion_stream.core import msgs
from fusion_stream.errors import FusionStreamError, MessageError
from fusion_stream.sources.testpattern import sample_messages


def cloud(n: int = 4) -> msgs.PointCloud:
    return msgs.PointCloud(stamp_ns=1, data=np.arange(n * 4, dtype=np.float32).reshape(n, 4))


def test_valid_messages_construct_and_compare_by_value() -> None:
    a, b = sample_messages(1), sample_messages(1)
    for topic in a:
        assert a[topic] == b[topic], topic
    assert sample_messages(1)["/lidar/top/points"] != sample_messages(2)["/lidar/top/points"]


def test_arrays_are_kept_without_copy() -> None:
    data = np.zeros((10, 4), np.float32)
    assert msgs.PointCloud(stamp_ns=0, data=data).data is data


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: msgs.Image(stamp_ns=-1, data=np.zeros((2, 2, 3), np.uint8)), "stamp_ns"),
        (lambda: msgs.Image(stamp_ns=1.5, data=np.zeros((2, 2, 3), np.uint8)), "stamp_ns"),  # type: ignore[arg-type]
        (lambda: msgs.Image(stamp_ns=True, data=np.zeros((2, 2, 3), np.uint8)), "stamp_ns"),
        (lambda: msgs.Image(stamp_ns=1, data=np.zeros((2, 2, 3), np.float32)), "data"),
        (lambda: msgs.Image(stamp_ns=1, data=np.zeros((2, 2), np.uint8)), "data"),
        (lambda: msgs.Image(stamp_ns=1, data=np.zeros((2, 2, 3), np.uint8), encoding="mono8"), "data"),
        (lambda: msgs.Image(stamp_ns=1, data=np.zeros((2, 2, 3), np.uint8), encoding="yuv"), "encoding"),
        (lambda: msgs.CompressedImage(stamp_ns=1, data=b"not a jpeg"), "data"),
        (lambda: msgs.CompressedImage(stamp_ns=1, data=b"\xff\xd8", format="gif"), "format"),
        (lambda: msgs.PointCloud(stamp_ns=1, data=np.zeros((3, 3), np.float32)), "data"),
        (lambda: msgs.PointCloud(stamp_ns=1, data=np.zeros((3, 4), np.float64)), "data"),
        (lambda: msgs.PointCloud(stamp_ns=1, data=np.zeros((3, 4), np.float32), fields=("x", "y", "z", "z")), "fields"),
        (lambda: msgs.PointCloud(stamp_ns=1, data=np.zeros((3, 4), np.float32), fields=("x", "y", "z", "i")), "fields"),
        (
            lambda: msgs.RadarScan(stamp_ns=1, data=np.zeros((3, 4), np.float32), fields=("x", "y", "z", "rcs")),
            "fields",
        ),
        (lambda: msgs.AudioChunk(stamp_ns=1, data=np.zeros((2, 10), np.float32), sample_rate=0), "sample_rate"),
        (lambda: msgs.AudioChunk(stamp_ns=1, data=np.zeros(10, np.float32), sample_rate=48000), "data"),
        (
            lambda: msgs.AudioChunk(stamp_ns=1, data=np.zeros((1, 10), np.float32), sample_rate=8000, first_sample=-1),
            "first_sample",
        ),
        (lambda: msgs.Box3D(center=(0, 0), size=(1, 1, 1)), "center"),
        (lambda: msgs.Box3D(center=(0, 0, float("nan")), size=(1, 1, 1)), "center"),
        (lambda: msgs.Box3D(center=(0, 0, 0), size=(1, -1, 1)), "size"),
        (lambda: msgs.Box3D(center=(0, 0, 0), size=(1, 1, 1), score=1.5), "score"),
        (lambda: msgs.Box3D(center=(0, 0, 0), size=(1, 1, 1), attributes={"a": [1]}), "attributes"),
        (lambda: msgs.Detections(stamp_ns=1, boxes=("car",)), "boxes"),  # type: ignore[arg-type]
        (lambda: msgs.Diagnostics(stamp_ns=1, node=""), "node"),
        (lambda: msgs.Diagnostics(stamp_ns=1, node="n", level=7), "level"),  # type: ignore[arg-type]
        (lambda: msgs.SyncedFrame(stamp_ns=1, members={"a": "x"}), "members"),  # type: ignore[dict-item]
        (lambda: msgs.SyncedFrame(stamp_ns=1, members={"a": cloud()}, missing=("a",)), "missing"),
    ],
)
def test_invalid_fields_are_refused_with_the_field_named(build: object, field: str) -> None:
    with pytest.raises(MessageError) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, FusionStreamError)


def test_messages_are_frozen() -> None:
    c = cloud()
    with pytest.raises(AttributeError):
        c.stamp_ns = 5  # type: ignore[misc]
    d = msgs.Diagnostics(stamp_ns=1, node="n", values={"a": 1})
    with pytest.raises(TypeError):
        d.values["b"] = 2  # type: ignore[index]


def test_point_cloud_field_access() -> None:
    c = msgs.PointCloud.from_fields(stamp_ns=5, intensity=[1, 2], x=[0, 1], y=[2, 3], z=[4, 5], ring=[0, 1])
    assert isinstance(c, msgs.PointCloud)
    assert len(c) == 2
    np.testing.assert_array_equal(c.xyz, [[0, 2, 4], [1, 3, 5]])
    np.testing.assert_array_equal(c.field("ring"), [0, 1])
    with pytest.raises(KeyError, match="no field 'rcs'"):
        c.field("rcs")


def test_synced_frame_members_and_missing() -> None:
    c = cloud()
    s = msgs.SyncedFrame(stamp_ns=1, members={"lidar": c}, missing=("camera",))
    assert s.first("lidar") is c
    assert s.first("camera") is None
    assert s.members["lidar"] == (c,)


def test_audio_duration() -> None:
    a = msgs.AudioChunk(stamp_ns=0, data=np.zeros((4, 960), np.float32), sample_rate=48_000)
    assert (a.channels, a.samples, a.duration_ns) == (4, 960, 20_000_000)
