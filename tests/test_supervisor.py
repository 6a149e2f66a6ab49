"""The launcher and supervisor with real processes: respawn, partial sets meanwhile, giving up,
Ctrl-C, and no orphans when the launcher itself is killed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fusion_stream.graph.supervisor import _Console, process_state
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber

from .conftest import Procs, collect_frames, wait_for

GRAPH = """
graph: sup
nodes:
  - name: lidar
    type: pattern
    params: {kind: points, points: 2000, rate_hz: 10, topic: /lidar/top/points}
  - name: camera
    type: pattern
    params: {kind: image, width: 64, height: 48, rate_hz: 30, topic: /camera/front/image}
    respawn: {max_retries: 3, backoff_s: 0.5}
  - name: sync
    type: sync
    params:
      deadline_ms: 100
      inputs:
        - {name: lidar, topic: /lidar/top/points, mode: reference}
        - {name: camera, topic: /camera/front/image, mode: nearest, slop_ms: 25, period_ms: 30}
"""

CRASHER = """
graph: crash
nodes:
  - name: steady
    type: pattern
    params: {kind: radar, rate_hz: 5}
  - name: crasher
    type: pattern
    params: {kind: radar, topic: /crash, crash_after_s: 0}
    respawn: {max_retries: 3, backoff_s: 0.2, backoff_max_s: 1}
"""


def launcher(procs: Procs, tmp: Path, text: str, *args: str) -> subprocess.Popen[str]:
    f = tmp / "graph.yaml"
    f.write_text(text)
    return procs.cli("launch", str(f), *args)


def node_pids(registry: Registry, node: str) -> set[int]:
    return {e.pid for e in registry.entries() if e.node == node}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_kill_9_of_a_sensor_is_respawned_while_sync_goes_on(procs: Procs, runtime_dir: Path) -> None:
    launch = launcher(procs, runtime_dir, GRAPH)
    registry = Registry(runtime_dir, "sup")
    with Subscriber("/sync/frames", registry=registry, queue_size=200) as sub:
        wait_for(lambda: registry.lookup("/sync/frames"), 30.0, "the graph to start")
        wait_for(lambda: sum(not f.missing for f in collect_frames(sub, 0.5)) >= 3, 20.0, "complete sets")
        [old] = node_pids(registry, "camera")
        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: node_pids(registry, "camera") - {old}, 10.0, "camera to be respawned")
        respawned_after = time.monotonic() - killed
        during = collect_frames(sub, 0.4)
        wait_for(lambda: sum(not f.missing for f in collect_frames(sub, 0.5)) >= 3, 20.0, "complete sets again")
    # respawned, not given up; how fast is a figure of bench/launch.py (~1 s here), not a test
    assert respawned_after < 10.0, f"respawn took {respawned_after:.1f} s"
    assert during, "the synchronizer stopped while the camera was down"
    launch.send_signal(signal.SIGINT)
    out, _ = launch.communicate(timeout=15)
    assert launch.returncode == 0
    assert "camera died (killed by SIGKILL)" in out
    assert "restarting in 0.5 s (attempt 1 of 3)" in out
    assert "[sync]" in out  # node output is forwarded with its name


def test_a_node_that_keeps_crashing_is_given_up_with_a_clear_message(procs: Procs, runtime_dir: Path) -> None:
    t0 = time.monotonic()
    launch = launcher(procs, runtime_dir, CRASHER)
    out, _ = launch.communicate(timeout=60)
    took = time.monotonic() - t0
    assert launch.returncode == 1
    assert out.count("started crasher") == 4  # the first start and 3 retries, no busy loop
    assert "restarting in 0.2 s (attempt 1 of 3)" in out
    assert "restarting in 0.8 s (attempt 3 of 3)" in out
    assert "required node crasher died (exit code 3) and it failed 4 times in a row; stopping the graph" in out
    assert "steady finished" not in out
    assert took > 1.4  # the backoffs were waited: 0.2 + 0.4 + 0.8


def test_ctrl_c_stops_every_child_within_5_s(procs: Procs, runtime_dir: Path) -> None:
    launch = launcher(procs, runtime_dir, GRAPH)
    registry = Registry(runtime_dir, "sup")
    wait_for(lambda: len({e.pid for e in registry.entries()}) == 3, 30.0, "the graph to start")
    pids = {e.pid for e in registry.entries()}
    t0 = time.monotonic()
    launch.send_signal(signal.SIGINT)
    launch.communicate(timeout=15)
    assert time.monotonic() - t0 < 5.0
    assert launch.returncode == 0
    assert not [p for p in pids if alive(p)]
    assert registry.entries() == []


STUBBORN = """
graph: stubborn
nodes:
  - {name: steady, type: pattern, params: {kind: radar, rate_hz: 5}}
  - name: stuck                       # blocks its loop: only SIGKILL ends it
    type: pattern
    params: {kind: radar, topic: /stuck, hang_after_s: 0.3}
  - name: crasher                     # waiting out a 3 s backoff when the signal comes
    type: pattern
    params: {kind: radar, topic: /crash, crash_after_s: 0}
    respawn: {max_retries: 5, backoff_s: 3}
"""


@pytest.mark.parametrize("after_s", [0.3, 2.5])
def test_ctrl_c_at_any_moment_leaves_no_child_after_5_s(procs: Procs, runtime_dir: Path, after_s: float) -> None:
    """While nodes are still starting, or with one stuck and one in its restart backoff."""
    launch = launcher(procs, runtime_dir, STUBBORN)
    first = ""
    if after_s > 1:  # on a loaded machine imports alone can take seconds: wait for the runtimes
        registry = Registry(runtime_dir, "stubborn")
        wait_for(lambda: node_pids(registry, "stuck") and node_pids(registry, "steady"), 30.0, "the nodes to start")
        after_s = 1.5  # their first /diagnostics (after 1 s): the supervisor knows they handle SIGINT
    else:
        # from the launcher's first child on: before it, a Ctrl-C lands in the interpreter's own
        # start-up (imports a library may guard with a bare except), which is not ours to test
        assert launch.stdout is not None
        first = launch.stdout.readline()
        assert first.startswith("[launch] started"), first
    time.sleep(after_s)
    t0 = time.monotonic()
    launch.send_signal(signal.SIGINT)
    out, _ = launch.communicate(timeout=15)
    took = time.monotonic() - t0
    out = first + out
    pids = [int(m) for m in re.findall(r"\(pattern, pid (\d+)\)", out)]
    assert took < 5.0, f"the launcher took {took:.1f} s to stop:\n{out}"
    assert not [p for p in pids if alive(p)], out
    if after_s > 1:  # everything had started: the stuck node needed the last resort
        assert len(pids) >= 3 and "stuck still running: sending SIGTERM" in out
        assert "sending SIGKILL" in out
        assert launch.returncode == 0 and "Traceback" not in out, out


def test_children_never_outlive_a_killed_launcher(procs: Procs, runtime_dir: Path) -> None:
    launch = launcher(procs, runtime_dir, GRAPH)
    registry = Registry(runtime_dir, "sup")
    wait_for(lambda: len({e.pid for e in registry.entries()}) == 3, 30.0, "the graph to start")
    pids = {e.pid for e in registry.entries()}
    launch.kill()  # SIGKILL: no chance to clean up
    launch.communicate(timeout=10)
    wait_for(lambda: not [p for p in pids if alive(p)], 5.0, "orphaned nodes to stop by themselves")


def test_dry_run_and_bad_files(procs: Procs, runtime_dir: Path) -> None:
    p = launcher(procs, runtime_dir, GRAPH, "--dry-run")
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0
    for word in ("lidar", "camera", "sync", "/sync/frames", "/camera/front/image", "3x from 0.5 s"):
        assert word in out
    p = launcher(procs, runtime_dir, GRAPH.replace("type: sync", "type: synk"))
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2
    assert "graph.yaml: nodes[2] (sync).type: unknown node type 'synk'" in err.replace("\n", "")


HANGER = """
graph: hang
supervision: {heartbeat_timeout_s: 2.5, startup_grace_s: 3, hang_timeout_s: 2.5}
nodes:
  - name: hanger
    type: pattern
    params: {kind: radar, topic: /hang, hang_after_s: 1.5}
    respawn: {max_retries: 1, backoff_s: 0.2}
"""


def test_a_node_that_stops_reporting_is_killed_and_restarted(procs: Procs, runtime_dir: Path) -> None:
    launch = launcher(procs, runtime_dir, HANGER, "--duration", "9")
    out, _ = launch.communicate(timeout=60)
    # its watchdog still reports, busy in one timer callback, until hang_timeout_s
    assert "hanger has been busy in one timer callback for" in out, out
    assert "killing it as hung" in out
    assert "hanger died (killed by SIGKILL)" in out
    assert out.count("started hanger") == 2


SLOW = """
graph: slow
supervision: {heartbeat_timeout_s: 3, startup_grace_s: 5}
nodes:
  - name: slowpoke                    # every tick takes 4 s, longer than the heartbeat timeout
    type: pattern
    params: {kind: radar, topic: /slow, rate_hz: 10, tick_cost_s: 4}
"""


def test_a_slow_node_is_kept_and_said_to_be_slow(procs: Procs, runtime_dir: Path) -> None:
    """Callbacks longer than the heartbeat timeout: the watchdog's busy heartbeats keep it alive."""
    launch = launcher(procs, runtime_dir, SLOW, "--duration", "12")
    out, _ = launch.communicate(timeout=60)
    assert launch.returncode == 0, out
    assert "slowpoke is slow, not hung: busy in timer for" in out, out
    assert "killing" not in out, out
    assert out.count("started slowpoke") == 1, out


PAUSED = """
graph: pause
supervision: {heartbeat_timeout_s: 2, startup_grace_s: 4}
nodes:
  - name: paused
    type: pattern
    params: {kind: radar, topic: /paused, rate_hz: 20}
"""


def test_a_stopped_node_is_left_alone_and_continues(procs: Procs, runtime_dir: Path) -> None:
    """SIGSTOP for longer than the heartbeat timeout is a pause, not a hang: the node is neither
    killed nor respawned, resumes on SIGCONT with the same process and gets the whole timeout to
    report again; Ctrl-C while a node is stopped still stops it gracefully (SIGINT, then SIGCONT)."""
    launch = launcher(procs, runtime_dir, PAUSED)
    launched = time.monotonic()
    registry = Registry(runtime_dir, "pause")
    with Subscriber("/paused", registry=registry, queue_size=200) as sub:
        wait_for(lambda: sub.recv(timeout=0.2) is not None, 30.0, "the node to publish")
        [pid] = node_pids(registry, "paused")
        time.sleep(max(0.0, launched + 4.5 - time.monotonic()))  # past the start-up grace
        os.kill(pid, signal.SIGSTOP)
        time.sleep(3.5)  # heartbeat timeout 2 s: a busy node would have been killed by now
        assert process_state(pid) == "T", "the stopped node was killed"
        os.kill(pid, signal.SIGCONT)
        while sub.recv(timeout=0) is not None:  # what was queued before the stop
            pass
        env = sub.recv_envelope(timeout=2.0)
        assert env is not None, "no message within 2 s of SIGCONT"
        time.sleep(2.5)  # longer than the timeout: the heartbeat clock started over at SIGCONT
        assert node_pids(registry, "paused") == {pid} and alive(pid)
        later = sub.recv_envelope(timeout=2.0)
        assert later is not None and later.src == env.src, "the node was respawned after it continued"
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    launch.send_signal(signal.SIGINT)
    out, _ = launch.communicate(timeout=15)
    assert time.monotonic() - t0 < 2.0 + 1.0, f"a stopped node held the launcher up:\n{out}"  # SIGINT grace is 2 s
    assert launch.returncode == 0 and not alive(pid), out
    assert "still running: sending SIGTERM" not in out, out  # SIGCONT let it act on the SIGINT
    assert "paused sent no /diagnostics for" in out and f"but is stopped by a signal (pid {pid}), not hung" in out, out
    assert "paused continues after" in out, out
    assert "killing it" not in out and out.count("started paused") == 1, out


def test_process_state_of_a_stopped_and_a_gone_process(procs: Procs) -> None:
    p = procs.python("-c", "import time; time.sleep(30)")
    wait_for(lambda: process_state(p.pid) in ("S", "R"), 10.0, "the child to run")
    p.send_signal(signal.SIGSTOP)
    wait_for(lambda: process_state(p.pid) == "T", 5.0, "state T")
    p.kill()
    p.wait(timeout=5)
    assert process_state(p.pid) is None


def test_the_default_sim_graph_survives_kill_9_of_each_sensor(procs: Procs, runtime_dir: Path) -> None:
    """launch/sim.yaml as shipped: every simulated sensor in its own process, each killed in turn.
    The LiDAR is the sync's reference: without it the sync node goes on with stand-in stamps."""
    launch = procs.cli("launch", "launch/sim.yaml", "lidar_beams:=16")
    registry = Registry(runtime_dir, "sim")
    respawned_after: dict[str, float] = {}
    with (
        Subscriber("/sync/frames", registry=registry, queue_size=200) as sub,
        Subscriber("/detections", registry=registry, queue_size=200) as dets,
    ):
        wait_for(lambda: registry.lookup("/sync/frames"), 60.0, "the graph to start")
        wait_for(lambda: sum(not f.missing for f in collect_frames(sub, 1.0)) >= 3, 40.0, "complete sets")
        wait_for(lambda: dets.recv(timeout=0.5) is not None, 60.0, "detections from the fusion node")
        for sensor in ("lidar", "camera", "radar", "audio"):
            [old] = node_pids(registry, sensor)
            while dets.recv(timeout=0) is not None:
                pass
            os.kill(old, signal.SIGKILL)
            killed, killed_ns = time.monotonic(), time.time_ns()
            during = collect_frames(sub, 0.8)
            wait_for(lambda s=sensor, o=old: node_pids(registry, s) - {o}, 10.0, f"{sensor} to be respawned")  # type: ignore[misc]
            respawned_after[sensor] = time.monotonic() - killed
            partial = {f.stamp_ns for f in during if sensor in f.missing}
            assert partial, f"no sets without {sensor} while it was down: {[f.missing for f in during]}"
            detected = []
            end = time.monotonic() + 1.0  # the fusion node keeps publishing: take what came meanwhile
            while time.monotonic() < end:
                if (m := dets.recv(timeout=0.2)) is not None:
                    detected.append(m.stamp_ns)
            assert partial & set(detected), f"the fusion node published nothing for the sets without {sensor}"
            assert min(detected) >= killed_ns - 1_000_000_000
            wait_for(
                lambda s=sensor: any(not f.missing and s in f.members for f in collect_frames(sub, 1.0)),  # type: ignore[misc]
                30.0,
                f"complete sets with {sensor} again",
            )
    # every sensor came back; how fast (~1 s: 0.5 s backoff) is bench/launch.py's figure, not a test's
    assert max(respawned_after.values()) < 10.0, f"respawn took {respawned_after} s"
    launch.send_signal(signal.SIGINT)
    out, _ = launch.communicate(timeout=20)
    assert launch.returncode == 0, out[-3000:]
    for sensor in respawned_after:
        assert f"{sensor} died (killed by SIGKILL)" in out


def test_a_slow_or_gone_console_never_holds_the_nodes_output_back() -> None:
    """Lines are queued for a printer thread; past the queue they are dropped and counted, so a
    node writing to its pipe never blocks on a slow terminal or a closed one."""
    printed: list[str] = []

    def slow(line: str) -> None:
        time.sleep(0.01)
        printed.append(line)

    console = _Console(slow, max_lines=100)
    t0 = time.monotonic()
    for i in range(5000):
        console.put("camera", f"[camera] line {i}")
    assert time.monotonic() - t0 < 1.0, "putting lines waited for the console"
    assert console.dropped("camera") >= 4000
    console.put_event("[launch] camera died")  # the supervisor's own lines are never dropped
    [report] = console.take_drop_reports()
    assert report.startswith(f"{console.dropped('camera')} output lines of camera dropped")
    assert console.take_drop_reports() == []  # reported once
    console.close(timeout=5.0)
    assert printed[0] == "[camera] line 0" and len(printed) < 200
    assert printed[-1] == "[launch] camera died"

    def gone(line: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    console = _Console(gone, max_lines=10)
    for i in range(100):
        console.put("lidar", f"{i}")
        time.sleep(0.001)
    console.close(timeout=5.0)
    assert console.dropped("lidar") < 90, "a closed console must keep draining"
