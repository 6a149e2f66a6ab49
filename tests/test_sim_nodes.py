"""The simulated sensors as real processes: grid stamps, calibrated clock offsets, exact samples,
and the same data the library computes for that stamp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusion_stream.core import calib, msgs
from fusion_stream.errors import ParamError
from fusion_stream.nodes import sync as sync_node
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber
from fusion_stream.sim import Scenario, World, lidar

from .conftest import ROOT, Procs, collect_counts

TOPICS = {
    "lidar": "/lidar/top/points",
    "camera": "/camera/front/image",
    "radar": "/radar/front/points",
    "audio": "/audio/array/chunk",
    "ground_truth": "/ground_truth/objects",
}


def _rig_with_camera_offset(tmp_path: Path, offset_ms: float) -> Path:
    text = (ROOT / "calib" / "sim_rig.yaml").read_text()
    marker = "    distortion: [0.0, 0.0, 0.0, 0.0, 0.0]\n    time_offset_ms: 0\n"
    assert marker in text
    path = tmp_path / "rig.yaml"
    path.write_text(text.replace(marker, marker.replace("time_offset_ms: 0", f"time_offset_ms: {offset_ms}")))
    return path


def test_sensor_nodes_publish_on_their_capture_grids(procs: Procs, registry: Registry, tmp_path: Path) -> None:
    rig_path = _rig_with_camera_offset(tmp_path, 25.0)
    common = ["-p", "seed:=3", "-p", f"calib:={rig_path}"]
    for kind in TOPICS:
        procs.python("-m", f"nodes.{kind}", "--name", kind, *common)
    need = {
        TOPICS["lidar"]: 3,
        TOPICS["camera"]: 10,
        TOPICS["audio"]: 100,
        TOPICS["radar"]: 20,
        TOPICS["ground_truth"]: 10,
    }
    with Subscriber(list(need), registry=registry, queue_size=1000) as sub:
        got = collect_counts(sub, need, timeout=90.0)
    procs.stop_all()

    sweeps = [m for m in got[TOPICS["lidar"]] if isinstance(m, msgs.PointCloud)]
    assert len(sweeps) >= 2
    assert all(m.stamp_ns % 100_000_000 == 0 and m.frame_id == "lidar_top" for m in sweeps)
    assert sweeps[0].fields == lidar.FIELDS
    # the process published exactly what the library computes for that stamp
    rig = calib.load(rig_path)
    world = World(Scenario(seed=3))
    s = sweeps[-1]
    expected = lidar.sweep(world, s.stamp_ns / 1e9, rig["lidar_top"].extrinsics, lidar.LidarSpec(), stamp_ns=s.stamp_ns)
    np.testing.assert_array_equal(s.data, expected.data)

    frames = got[TOPICS["camera"]]
    assert len(frames) >= 10 and all(isinstance(f, msgs.Image) and f.data.shape == (384, 640, 3) for f in frames)
    period = round(1e9 / 15)
    # the camera's clock runs 25 ms behind rig time (calibrated offset): stamp + offset is on the grid
    assert all((f.stamp_ns + 25_000_000) % period == 0 for f in frames)

    chunks = [c for c in got[TOPICS["audio"]] if isinstance(c, msgs.AudioChunk)]
    assert len(chunks) >= 100
    firsts = [c.first_sample for c in chunks]
    assert np.all(np.diff(firsts) == 960), "audio chunks must join with no gap or overlap"
    assert all(c.stamp_ns == c.first_sample * 1_000_000_000 // 48_000 and c.channels == 4 for c in chunks)

    scans = [m for m in got[TOPICS["radar"]] if isinstance(m, msgs.RadarScan)]
    assert len(scans) >= 20 and "radial_velocity" in scans[0].fields
    truth = [m.stamp_ns for m in got[TOPICS["ground_truth"]]]
    assert {m.stamp_ns for m in sweeps} & set(truth), "ground truth shares the LiDAR's stamps"


def test_sync_applies_calibrated_time_offsets(tmp_path: Path) -> None:
    rig_path = _rig_with_camera_offset(tmp_path, 25.0)
    p = sync_node.Params(
        calib=str(rig_path),
        inputs=(
            sync_node.InputParams(name="lidar", topic="/lidar/top/points", mode="reference", sensor="lidar_top"),
            sync_node.InputParams(name="camera", topic="/camera/front/image", sensor="camera_front", offset_ms=1.0),
        ),
    )
    config = sync_node.config_from(p)
    assert [i.offset_ns for i in config.inputs] == [0, 26_000_000]
    bad = sync_node.Params(inputs=(sync_node.InputParams(name="x", topic="/x", sensor="nope"),), calib=str(rig_path))
    with pytest.raises(ParamError, match="no sensor 'nope'"):
        sync_node.config_from(bad)
    with pytest.raises(ParamError, match="no calib file"):
        sync_node.config_from(sync_node.Params(inputs=(sync_node.InputParams(name="x", topic="/x", sensor="a"),)))


def test_a_sensor_node_with_a_bad_rig_exits_2_naming_the_key(procs: Procs, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text((ROOT / "calib" / "sim_rig.yaml").read_text().replace("fx: 400.0", "fx: -1"))
    node = procs.python("-m", "fusion_stream.nodes.camera", "-p", f"calib:={broken}")
    _, err = node.communicate(timeout=60)
    assert node.returncode == 2
    assert "fx" in err and str(broken) in err
    wrong = procs.python("-m", "fusion_stream.nodes.lidar", "-p", "sensor:=camera_front")
    _, err = wrong.communicate(timeout=60)
    assert wrong.returncode == 2 and "'camera_front'" in err and "not a lidar" in err
    tiny = procs.python("-m", "fusion_stream.nodes.audio", "-p", "chunk_ms:=0.001")
    _, err = tiny.communicate(timeout=60)
    assert tiny.returncode == 2 and "chunk_ms" in err and "less than one sample" in err
