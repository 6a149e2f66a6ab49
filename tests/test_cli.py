"""The `fusion-stream` tools against real running nodes."""

from __future__ import annotations

import json
import signal
import subprocess

from fusion_stream.runtime.registry import Registry

from .conftest import Procs, wait_for


def start_radar(procs: Procs, registry: Registry, topic: str = "/radar/front/points") -> subprocess.Popen[str]:
    node = procs.python(
        "-m", "fusion_stream.nodes.pattern",
        "--name", "radar", "-p", "kind:=radar", "-p", f"topic:={topic}", "-p", "rate_hz:=20"
    )
    wait_for(lambda: registry.lookup(topic), 15.0, "radar node to register")
    return node


def finish(p: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{err}"
    return out, err


def test_echo_finds_a_running_publisher_by_topic_name_alone(procs: Procs, registry: Registry) -> None:
    node = start_radar(procs, registry)
    out, _ = finish(procs.cli("echo", "/radar/front/points", "--count", "3", "--json"))
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert line["topic"] == "/radar/front/points"
        msg = line["message"]
        assert msg["type"] == "RadarScan"
        assert msg["fields"] == ["x", "y", "z", "radial_velocity", "rcs"]
        assert msg["data"]["shape"] == [64, 5] and msg["data"]["dtype"] == "float32"
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(seqs)
    out, _ = finish(procs.cli("echo", "/radar/front/points", "-n", "1", "--array-limit", "1000"))
    assert out.startswith("--- /radar/front/points #") and "RadarScan 64 points" in out
    assert "radial_velocity" in out and "data:" in out
    node.send_signal(signal.SIGINT)
    assert node.wait(timeout=5) == 0


def test_topics_hz_and_status(procs: Procs, registry: Registry) -> None:
    start_radar(procs, registry)
    out, _ = finish(procs.cli("topics", "--json"))
    topics = {json.loads(line)["topic"]: json.loads(line) for line in out.splitlines()}
    assert set(topics) == {"/radar/front/points", "/diagnostics"}
    # nodes declare their topics' types, so they are known before the first message
    assert {t: e["type"] for t, e in topics.items()} == {
        "/radar/front/points": "RadarScan",
        "/diagnostics": "Diagnostics",
    }
    out, _ = finish(procs.cli("topics"))
    assert "/radar/front/points" in out and "RadarScan" in out

    out, _ = finish(procs.cli("hz", "/radar/front/points", "--duration", "2.2"))
    rates = [float(line.split(":")[1]) for line in out.splitlines() if line.startswith("average rate")]
    assert rates and all(15 < r < 25 for r in rates), out

    out, _ = finish(procs.cli("status", "--json", "--listen", "1.5"))
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["node"] == "radar" and row["publishes"] == ["/radar/front/points"]
    assert row["report"]["level"] == "OK"
    assert 15 < row["report"]["values"]["pub./radar/front/points.rate_hz"] < 25
    assert row["report"]["values"]["cpu_pct"] >= 0 and row["report"]["values"]["rss_mb"] > 10
    assert row["report"]["values"]["pub./radar/front/points.nominal_hz"] == 20.0
    out, _ = finish(procs.cli("status"))
    assert "radar" in out and "OK" in out
    assert "CPU %" in out and "RSS MB" in out


def test_echo_without_a_publisher_says_so(procs: Procs) -> None:
    p = procs.cli("echo", "/nobody/home", "--wait", "0.3")
    _, err = p.communicate(timeout=20)
    assert p.returncode == 1
    assert "no publisher for topic '/nobody/home'" in err


def test_invalid_topic_name_is_a_usage_error(procs: Procs) -> None:
    p = procs.cli("hz", "no-slash")
    _, err = p.communicate(timeout=20)
    assert p.returncode == 2 and "invalid topic name" in err


def test_empty_graph(procs: Procs) -> None:
    _, err = finish(procs.cli("topics"))
    assert "no topics" in err
    _, err = finish(procs.cli("status", "--listen", "0.2"))
    assert "no nodes" in err
