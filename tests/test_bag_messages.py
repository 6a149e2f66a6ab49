"""What the bag commands say: the way out of a damaged bag, whole names off a terminal, rates
computed alike for every format, and a record summary that matches the file."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from fusion_stream.runtime.registry import Registry

from .conftest import ROOT, Procs, wait_for
from .test_bag import cli, write_samples

SHARED = ROOT.parent / "shared" / "data"
ROS1_BAG = SHARED / "rosbag1_luminar" / "test.bag"


def cut_bag(tmp_path: Path) -> Path:
    """A bag whose recorder died mid-write: several chunks, the file cut inside the last one."""
    whole = tmp_path / "whole.mcap"
    write_samples(whole, repeats=12, chunk_size=64 << 10)
    data = whole.read_bytes()
    cut = tmp_path / "crashed.mcap"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    return cut


@pytest.mark.parametrize(
    "command",
    [["replay", "FILE"], ["bag", "convert", "FILE", "-o", "OUT"], ["eval", "FILE", "-o", "OUT"]],
    ids=["replay", "convert", "eval"],
)
def test_a_damaged_bag_names_bag_recover(command: list[str], runtime_dir: Path, tmp_path: Path) -> None:
    cut = cut_bag(tmp_path)
    args = [str(cut) if a == "FILE" else str(tmp_path / "out.mcap") if a == "OUT" else a for a in command]
    r = cli(*args)
    assert r.returncode == 2, (r.stdout[-1000:], r.stderr[-2000:])
    err = " ".join(r.stderr.split())
    assert "truncated" in err and f"fusion-stream bag recover {cut}" in err, err
    assert "Traceback" not in r.stderr and "RecordLengthLimitExceeded" not in r.stderr
    fixed = cli("bag", "recover", str(cut))  # and the way out works
    assert fixed.returncode == 0, fixed.stderr
    assert cli("bag", "info", str(cut.with_name("crashed.recovered.mcap"))).returncode == 0


def test_bag_info_piped_shows_whole_type_names_and_how_rates_are_computed(tmp_path: Path) -> None:
    bag = tmp_path / "samples.mcap"
    write_samples(bag, repeats=3)
    r = cli("bag", "info", str(bag))  # stdout is a pipe
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout
    for name in ("fusion_stream_msgs/msg/AudioChunk", "vision_msgs/msg/Detection3DArray"):
        assert name in r.stdout
    assert "(messages - 1) / (last - first log time) of each topic" in r.stdout
    assert all(len(line) < 300 for line in r.stdout.splitlines())  # whole, not padded to a huge width


@pytest.mark.skipif(not ROS1_BAG.exists(), reason="shared data not present (../shared/data)")
def test_a_ros1_bag_and_its_mcap_conversion_have_the_same_rates(tmp_path: Path) -> None:
    out = tmp_path / "luminar.mcap"
    r = cli("bag", "convert", str(ROS1_BAG), "-o", str(out))
    assert r.returncode == 0, r.stderr
    infos = []
    for f in (ROS1_BAG, out):
        r = cli("bag", "info", "--json", str(f))
        assert r.returncode == 0, r.stderr
        infos.append({t["topic"]: t for t in json.loads(r.stdout)["topics"]})
    ros1, mcap = infos
    assert set(ros1) == set(mcap) and len(ros1) == 3
    for topic, t in ros1.items():
        assert t["count"] == mcap[topic]["count"]
        assert t["rate_hz"] is not None and t["rate_hz"] > 5  # 5 messages 0.4 s apart, not the bag's 7.6 s
        assert mcap[topic]["rate_hz"] == pytest.approx(t["rate_hz"], rel=1e-9), topic


def test_record_summary_counts_what_is_in_the_file_and_names_what_it_added(
    procs: Procs, runtime_dir: Path, tmp_path: Path
) -> None:
    registry = Registry(runtime_dir, "test")
    pub = procs.python("tests/publish_samples.py", "-p", "period_s:=0.05")
    wait_for(lambda: registry.lookup("/detections"), 20, "the sample publisher")
    out = tmp_path / "rec.mcap"
    rec = procs.cli("record", "/detections", "/radar/front/points", "--calib", "calib/sim_rig.yaml", "-o", str(out))
    wait_for(lambda: out.exists() and out.stat().st_size > 5_000, 20, "the recorder writing")
    rec.send_signal(signal.SIGINT)
    stdout, stderr = rec.communicate(timeout=20)
    assert rec.returncode == 0, stderr
    pub.send_signal(signal.SIGTERM)
    pub.wait(timeout=10)
    info = json.loads(cli("bag", "info", "--json", str(out)).stdout)
    counts = {t["topic"]: t["count"] for t in info["topics"]}
    assert set(counts) == {"/detections", "/detections/markers", "/radar/front/points", "/tf_static"}
    assert f"recorded {info['messages']} messages on 4 topics" in stdout, stdout
    added = f"added for viewers: /detections/markers ({counts['/detections/markers']}), /tf_static (1)"
    assert added in stdout, stdout
    received = counts["/detections"] + counts["/radar/front/points"]
    assert f"received from the graph: {received} messages on 2 topics" in stdout, stdout
