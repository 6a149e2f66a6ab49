"""Finding the running graph without being told: real launched graphs, the real CLI, no
FUSION_STREAM_GRAPH for the program under test (each test has its own runtime directory)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
from mcap.reader import make_reader

from fusion_stream import Publisher, Subscriber
from fusion_stream.cli.common import complete_graphs, complete_topics
from fusion_stream.cli.demo import choose_graph_name
from fusion_stream.cli.main import main
from fusion_stream.core import msgs
from fusion_stream.errors import GraphAmbiguousError, GraphNotFoundError, ParamError, UsageError
from fusion_stream.runtime.registry import ENV_GRAPH, Registry, find_graph, running_graphs, similar_topics

from .conftest import ROOT, Procs, wait_for

RADAR = "/radar/front/points"
REAR = "/radar/rear/points"


def graph_file(tmp_path: Path, name: str, topic: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"graph: {name}\nnodes:\n"
        f"  - {{name: radar, type: pattern, params: {{kind: radar, rate_hz: 20, topic: {topic}}}}}\n"
    )
    return path


def launch(procs: Procs, tmp_path: Path, *graphs: tuple[str, str]) -> list[subprocess.Popen[str]]:
    """`fusion-stream launch` of one-node graphs (name, topic) side by side, once each topic is registered."""
    started = [procs.cli("launch", str(graph_file(tmp_path, name, topic))) for name, topic in graphs]
    wait_for(
        lambda: all(any(g.name == n and t in g.topics for g in running_graphs()) for n, t in graphs), 30.0, "graphs"
    )
    return started


def run(procs: Procs, *args: str, timeout: float = 30) -> tuple[int, str, str]:
    [result] = run_all(procs, args, timeout=timeout)
    return result


def run_all(procs: Procs, *commands: tuple[str, ...], timeout: float = 30) -> list[tuple[int, str, str]]:
    """CLI commands run at the same time (start-up is most of their time); exit code, stdout, stderr."""
    started = [procs.cli(*args) for args in commands]
    results = []
    for p in started:
        out, err = p.communicate(timeout=timeout)
        results.append((p.returncode, out, err))
    return results


def stop(p: subprocess.Popen[str]) -> None:
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=15) == 0, p.communicate()[1][-2000:]


def recorded_topics(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with path.open("rb") as f:
        for _, channel, _ in make_reader(f).iter_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
    return counts


@pytest.fixture
def no_graph(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The runtime directory, with no graph named: what a user's shell has."""
    monkeypatch.delenv(ENV_GRAPH)
    return runtime_dir


def test_one_running_graph_is_used_by_every_tool_and_the_library(procs: Procs, no_graph: Path, tmp_path: Path) -> None:
    # started before the graph: record waits for its publishers (--wait), then records them
    recorder = procs.cli("record", "--all", "-o", str(tmp_path / "run.mcap"), "--duration", "2", "--wait", "60")
    early = Subscriber(RADAR, timeout=30.0)  # before any graph runs: it finds the graph when it starts
    assert early.registry is None
    [launcher] = launch(procs, tmp_path, ("alpha", RADAR))
    assert isinstance(early.recv(), msgs.RadarScan) and early.registry is not None
    assert early.registry.graph == "alpha"
    early.close()

    topics, echo, graphs = run_all(
        procs, ("topics", "--json"), ("echo", "/radar/front/point", "--wait", "0.5"), ("graphs",)
    )
    code, out, err = topics
    assert code == 0, err
    assert {json.loads(line)["topic"] for line in out.splitlines()} == {RADAR, "/diagnostics"}
    code, out, err = echo  # a typo
    assert code == 1
    assert "'/radar/front/point'" in err and f"did you mean {RADAR}?" in err and str(no_graph / "alpha") in err
    code, out, err = graphs
    assert code == 0 and re.search(r"alpha\s+radar(, recorder)?\s+/diagnostics", out)  # the recorder joins alpha, out

    with Subscriber(RADAR, timeout=10.0) as sub:
        assert sub.registry is not None and sub.registry.graph == "alpha"
        assert isinstance(sub.recv(), msgs.RadarScan)
    with Publisher("/mine/points") as pub:
        assert [e.topic for e in Registry(graph="alpha").lookup("/mine/points")] == ["/mine/points"]
        assert pub.topic == "/mine/points"

    out, err = recorder.communicate(timeout=60)
    assert recorder.returncode == 0, err
    assert "recording graph 'alpha'" in err
    assert recorded_topics(tmp_path / "run.mcap").get(RADAR, 0) >= 10
    stop(launcher)


def test_two_running_graphs_make_tools_and_subscribers_ask_which(
    procs: Procs, no_graph: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    launchers = launch(procs, tmp_path, ("alpha", RADAR), ("beta", REAR))
    # each launcher's node registered in its launcher's graph, not in the other one running
    assert {g.name: g.topics for g in running_graphs()} == {
        "alpha": ["/diagnostics", RADAR],
        "beta": ["/diagnostics", REAR],
    }

    # --graph after the subcommand, and before it
    topics, after, before = run_all(
        procs, ("topics",), ("echo", "--graph", "beta", REAR, "-n", "1", "--json"), ("--graph", "alpha", "topics")
    )
    code, out, err = topics
    assert code == 2 and out == ""
    assert "2 graphs are running" in err and "alpha (1 node, 2 topics)" in err and "beta (1 node" in err
    assert "--graph NAME" in err
    code, out, err = after
    assert code == 0 and json.loads(out)["topic"] == REAR, err
    code, out, err = before
    assert code == 0 and RADAR in out and REAR not in out, err

    with pytest.raises(GraphAmbiguousError, match=r"alpha .* beta .*graph=NAME"):
        Subscriber(RADAR)
    with pytest.raises(GraphAmbiguousError):
        Publisher("/mine/points")
    with Subscriber(REAR, graph="beta", timeout=10.0) as sub:
        assert isinstance(sub.recv(), msgs.RadarScan)
    with pytest.raises(ParamError, match="not both"):
        Subscriber(REAR, graph="beta", registry=Registry(graph="beta"))

    # shell completion (argcomplete calls these; they are plain functions)
    assert complete_graphs("") == ["alpha", "beta"] and complete_graphs("b") == ["beta"]
    assert complete_topics("/radar/") == [RADAR, REAR]
    graph_alpha = type("Args", (), {"graph": "alpha"})()
    assert complete_topics("/radar/", graph_alpha) == [RADAR]
    assert main(["completion", "bash"]) == 0
    assert 'eval "$(register-python-argcomplete fusion-stream)"' in capsys.readouterr().out
    for p in launchers:
        stop(p)


def test_no_running_graph_is_said_with_where_it_looked(procs: Procs, no_graph: Path, tmp_path: Path) -> None:
    topics, record = run_all(procs, ("topics",), ("record", "--all", "-o", str(tmp_path / "run.mcap"), "--wait", "0.5"))
    code, _, err = topics
    assert code == 0 and "no graph is running" in err and str(no_graph) in err
    code, _, err = record
    assert code == 1
    assert "no graph is running" in err and str(no_graph) in err and "waited 0.5 s" in err
    assert not (tmp_path / "run.mcap").exists()
    assert find_graph() is None
    with pytest.raises(GraphNotFoundError, match=re.escape(str(no_graph))):
        Subscriber(RADAR).wait_for_publishers(0.2)
    with Publisher("/mine/points") as pub:  # a publisher with nothing running starts the graph `default`
        assert [g.name for g in running_graphs()] == ["default"] and pub.topic == "/mine/points"


def test_record_of_a_topic_nobody_publishes_fails_with_what_is_published(
    procs: Procs, no_graph: Path, tmp_path: Path
) -> None:
    [launcher] = launch(procs, tmp_path, ("alpha", RADAR))
    code, _, err = run(procs, "record", "/radar/front/pionts", "-o", str(tmp_path / "r.mcap"), "--wait", "0.5")
    assert code == 1
    assert f"did you mean {RADAR}?" in err and f"published there: /diagnostics, {RADAR}" in err
    assert not (tmp_path / "r.mcap").exists()
    stop(launcher)


def test_the_readme_subscriber_snippet_runs_as_written(procs: Procs, no_graph: Path, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Subscribing from your own program") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S)
    assert snippet is not None
    topic = re.search(r'Subscriber\("(/[^"]+)"', snippet.group(1))
    assert topic is not None
    # a one-node graph that publishes that topic with the message the README means
    nodes = {
        "/lidar/top/points": "{name: lidar, type: pattern, params: {kind: points, points: 2000, rate_hz: 10}, "
        "remap: {/lidar/pattern/points: /lidar/top/points}}",
        "/detections": "{name: gt, type: ground_truth, params: {rate_hz: 10}, "
        "remap: {/ground_truth/objects: /detections}}",
    }
    assert topic.group(1) in nodes, f"the README subscribes to {topic.group(1)}: add a node for it here"
    graph = tmp_path / "readme.yaml"
    graph.write_text(f"graph: readme\nnodes:\n  - {nodes[topic.group(1)]}\n")
    launcher = procs.cli("launch", str(graph))
    wait_for(lambda: any(topic.group(1) in g.topics for g in running_graphs()), 30.0, "the graph")

    program = procs.python("-c", snippet.group(1))
    assert program.stdout is not None
    lines = [program.stdout.readline() for _ in range(3)]
    assert all(line.strip() for line in lines), program.communicate(timeout=30)[1]
    stop(launcher)
    _, err = program.communicate(timeout=30)  # it stops by itself, 5 s after the graph
    assert program.returncode == 0, err


def test_demo_runs_the_graph_as_sim_and_is_recorded_without_flags(procs: Procs, no_graph: Path, tmp_path: Path) -> None:
    demo = procs.cli("demo", "--duration", "8")
    assert demo.stdout is not None
    first = demo.stdout.readline()
    assert first.startswith("demo graph sim:") and "fusion-stream record --all -o run.mcap" in first, first
    with Subscriber("/lidar/top/points", graph="sim", timeout=90) as sub:  # the slowest sensor to start
        assert sub.recv() is not None
    code, _, err = run(procs, "record", "--all", "-o", str(tmp_path / "run.mcap"), "--duration", "2", timeout=90)
    assert code == 0, err
    assert "recording graph 'sim'" in err
    counts = recorded_topics(tmp_path / "run.mcap")
    assert counts.get("/lidar/top/points", 0) > 0 and counts.get("/camera/front/image", 0) > 0, counts
    rest, err = demo.communicate(timeout=120)
    assert demo.returncode == 0, err
    assert "every node stopped cleanly" in rest
    for topic in ("/camera/front/image", "/lidar/top/points", "/radar/front/points", "/audio/array/chunk"):
        assert topic in rest
    assert "/sync/frames" in rest and "/ground_truth/objects" in rest and "/detections" in rest
    # the fusion node synchronizes in its own process (sim.yaml has no sync node)
    assert "lidar=0, camera=0, radar=0, audio=0, ground_truth=0, fusion=0" in rest
    assert "CPU % mean / max" in rest and "CPU of the whole graph" in rest
    assert list(no_graph.iterdir()) == []  # no empty folder of the graph left behind


def test_demo_graph_naming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_GRAPH, raising=False)
    assert choose_graph_name("sim", set()) == "sim"
    assert choose_graph_name("sim", {"sim", "sim-2", "other"}) == "sim-3"
    monkeypatch.setenv(ENV_GRAPH, "mine")
    assert choose_graph_name("sim", {"sim"}) == "mine"
    with pytest.raises(UsageError, match="'mine' is already running"):
        choose_graph_name("sim", {"mine"})


def test_nearest_topic_names() -> None:
    known = ["/diagnostics", "/detections", "/lidar/top/points", "/radar/front/points"]
    assert similar_topics("/detection", known)[0] == "/detections"
    assert similar_topics("/lidar/top/point", known) == ["/lidar/top/points"]
    assert similar_topics("/nothing/like/it/at/all", known) == []
