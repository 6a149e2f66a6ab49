"""The in-process node harness: real node types' ``setup`` driven without sockets or processes
(relay, sync, pattern, ground_truth), their outputs decoded from the bytes they sent."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_stream.core import msgs
from fusion_stream.errors import ParamError, UsageError
from fusion_stream.nodes import ground_truth, pattern, relay, sync
from fusion_stream.runtime.testing import NodeHarness
from fusion_stream.sources import testpattern

MS = 1_000_000
SYNC_PARAMS = {
    "policy": "reference",
    "deadline_ms": 100,
    "inputs": [
        {"name": "lidar", "topic": "/lidar/top/points", "mode": "reference"},
        {"name": "camera", "topic": "/camera/front/image", "mode": "nearest", "slop_ms": 20},
    ],
}


def test_relay_forwards_what_it_is_fed_and_reports_it() -> None:
    with NodeHarness(relay, params={"input": "/a", "output": "/b"}) as h:
        assert h.subscribed == ["/a"]
        clouds = [testpattern.point_cloud(h.now_ns() + i, 300) for i in range(3)]
        for cloud in clouds:
            h.feed("/a", cloud)
        assert h.published["/b"] == clouds
        assert [e.seq for e in h.envelopes] == [1, 2, 3]
        values = h.diagnostics().values
        assert values["sub./a.received"] == 3
        assert values["pub./b.sent"] == 3
        assert values["errors"] == 0
    stale = h.published["/diagnostics"][-1]
    assert stale.level == msgs.Level.STALE
    assert stale.node == "relay"


def test_relay_remapped_output_and_a_fed_topic_it_does_not_read() -> None:
    with NodeHarness(relay, params={"input": "/a", "output": "/b"}, remap={"/b": "/c"}) as h:
        image = testpattern.image(h.now_ns(), 16, 8)
        h.feed("/a", image)
        assert h.published["/c"] == [image]
        assert "/b" not in h.published
        with pytest.raises(UsageError, match="subscribes to no topic '/x'"):
            h.feed("/x", image)


def test_malformed_bytes_are_counted_and_never_reach_the_callback() -> None:
    with NodeHarness(relay, params={"input": "/a", "output": "/b"}) as h:
        h.feed_frames("/a", [b"/a", b"XXXX not ours"])
        h.feed_frames("/a", [b"/a"])
        assert h.published["/b"] == []
        values = h.diagnostics().values
        assert values["sub./a.malformed.bad-magic"] == 1
        assert values["sub./a.malformed.truncated"] == 1


def test_params_are_checked_as_a_params_file_would_be() -> None:
    with pytest.raises(ParamError, match="latst"):
        NodeHarness(relay, params={"input": "/a", "output": "/b", "latst": True})
    with pytest.raises(ParamError, match="kind"):
        NodeHarness(pattern, params={"kind": "sonar"})
    given = relay.Params(input="/a", output="/b")
    with NodeHarness(relay, params=given) as h:
        assert h.params is given


def test_sync_emits_a_full_set_when_fed_matching_stamps() -> None:
    with NodeHarness(sync, params=SYNC_PARAMS) as h:
        t = h.now_ns()
        cloud = testpattern.point_cloud(t, 64)
        image = testpattern.image(t + 5 * MS, 8, 6)
        h.feed("/lidar/top/points", cloud)
        assert h.published["/sync/frames"] == []  # the camera may still come
        h.feed("/camera/front/image", image)
        [frame] = h.published["/sync/frames"]
        assert isinstance(frame, msgs.SyncedFrame)
        assert frame.stamp_ns == t
        assert frame.members["lidar"] == (cloud,)
        assert frame.members["camera"] == (image,)
        assert frame.missing == ()


def test_sync_emits_a_partial_set_at_the_deadline_on_its_clock() -> None:
    with NodeHarness(sync, params=SYNC_PARAMS) as h:
        t = h.now_ns()
        h.feed("/lidar/top/points", testpattern.point_cloud(t, 64))
        h.advance(0.05)
        assert h.published["/sync/frames"] == []  # before the 100 ms deadline
        h.advance(0.1)
        [frame] = h.published["/sync/frames"]
        assert isinstance(frame, msgs.SyncedFrame)
        assert frame.missing == ("camera",)
        assert set(frame.members) == {"lidar"}
        h.feed("/camera/front/image", testpattern.image(t + 5 * MS, 8, 6))  # too late for its set
        assert len(h.published["/sync/frames"]) == 1
        report = h.diagnostics()
        assert any(k.startswith("sync.") for k in report.values)


def test_pattern_publishes_on_its_timer_as_the_clock_moves() -> None:
    with NodeHarness(pattern, params={"kind": "radar", "rate_hz": 20}) as h:
        start = h.now_ns()
        assert h.advance(1.0) == 20
        scans = h.published["/radar/pattern/points"]
        assert len(scans) == 20
        assert all(isinstance(s, msgs.RadarScan) for s in scans)
        assert [s.stamp_ns - start for s in scans] == [50 * MS * (i + 1) for i in range(20)]
        assert h.tick() == start + 1050 * MS
        assert len(h.published["/radar/pattern/points"]) == 21


def test_audio_pattern_chunks_are_contiguous() -> None:
    with NodeHarness(pattern, params={"kind": "audio", "rate_hz": 50, "channels": 2}) as h:
        h.advance(0.1)
        chunks = h.published["/audio/pattern/chunk"]
        assert len(chunks) == 5
        assert all(isinstance(c, msgs.AudioChunk) for c in chunks)
        firsts = [c.first_sample for c in chunks if isinstance(c, msgs.AudioChunk)]
        assert firsts == [960 * i for i in range(5)]


def test_ground_truth_boxes_fall_on_the_lidar_grid() -> None:
    with NodeHarness(ground_truth, params={"rate_hz": 10.0}) as h:
        h.advance(0.5)
        sets = h.published["/ground_truth/objects"]
        assert len(sets) == 5
        stamps = np.array([d.stamp_ns for d in sets])
        assert set(np.diff(stamps)) == {100 * MS}
        assert all(s % (100 * MS) == 0 for s in stamps)  # epoch_ns 0: the grid is whole 100 ms
        assert all(isinstance(d, msgs.Detections) and len(d) > 0 for d in sets)
        assert {b.label for d in sets if isinstance(d, msgs.Detections) for b in d}


def test_a_failing_callback_reaches_the_test_unless_counted_as_live() -> None:
    bad = msgs.Diagnostics(stamp_ns=1, node="x")
    with NodeHarness(pattern, params={"kind": "points", "points": 10}) as h:
        pub = h.node.publisher("/other", msgs.PointCloud)
        h.node.timer(0.01, lambda: pub.publish(bad))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="PointCloud"):
            h.advance(0.01)
    with NodeHarness(pattern, params={"kind": "points", "points": 10}, strict=False) as h:
        pub = h.node.publisher("/other", msgs.PointCloud)
        h.node.timer(0.01, lambda: pub.publish(bad))  # type: ignore[arg-type]
        h.advance(0.02)
        assert h.diagnostics().values["errors"] == 2
