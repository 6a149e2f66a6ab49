"""SyncStage: messages in by topic, SyncedFrame out, for both policies."""

from __future__ import annotations

import pytest

from fusion_stream.core import msgs
from fusion_stream.sources import testpattern
from fusion_stream.sync.stage import SyncConfig, SyncInput, SyncStage

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def inputs() -> tuple[SyncInput, ...]:
    return (
        SyncInput("lidar", "reference", topic="/lidar/top/points"),
        SyncInput("radar", "nearest", slop_ns=40 * MS, topic="/radar/front/points"),
    )


def feed(stage: SyncStage) -> list[msgs.SyncedFrame]:
    out = []
    for k in range(10):
        t = T0 + k * 100 * MS
        out += [e.frame for e in stage.offer("/radar/front/points", testpattern.radar_scan(t + 3 * MS), t + 5 * MS)]
        out += [e.frame for e in stage.offer("/lidar/top/points", testpattern.point_cloud(t, points=64), t + 6 * MS)]
        out += [e.frame for e in stage.poll(t + 99 * MS)]
    return out


@pytest.mark.parametrize("policy", ["reference", "approximate"])
def test_both_policies_pair_lidar_with_radar(policy: str) -> None:
    stage = SyncStage(SyncConfig(inputs(), policy=policy))  # type: ignore[arg-type]
    frames = feed(stage)
    assert len(frames) >= 9
    for f in frames:
        lidar, radar = f.first("lidar"), f.first("radar")
        assert isinstance(lidar, msgs.PointCloud) and isinstance(radar, msgs.RadarScan)
        assert radar.stamp_ns - lidar.stamp_ns == 3 * MS
        assert f.frame_id == "base_link" and not f.missing
    values = stage.diagnostics()
    assert values["sync.sets"] == len(frames)
    assert values["sync.in.lidar.received"] == 10


def test_unknown_topic_and_bad_config() -> None:
    stage = SyncStage(SyncConfig(inputs()))
    with pytest.raises(KeyError, match="not an input"):
        stage.offer("/elsewhere", testpattern.radar_scan(1), 1)
    with pytest.raises(ValueError, match="at least 2"):
        SyncConfig(inputs()[:1])
    with pytest.raises(ValueError, match="own topic"):
        SyncConfig((inputs()[0], SyncInput("b", topic="/lidar/top/points")))
