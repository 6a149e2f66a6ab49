"""Two launchers on loopback, each with its own runtime directory as if on its own machine:
nodes on host a publish over TCP to nodes on host b, encrypted and authenticated with CurveZMQ;
a subscriber without an authorised key receives nothing; nodes on the same host talk over ipc."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fusion_stream.core import msgs
from fusion_stream.runtime.registry import ENV_RUNTIME_DIR, Registry
from fusion_stream.runtime.security import ENV_HOST, ENV_KEYS, CurveKeys, generate
from fusion_stream.runtime.transport import Subscriber

from .conftest import Procs, wait_for

GRAPH = """
graph: twohost
hosts:
  a: {{address: 127.0.0.1, port_base: {a}}}
  b: {{address: 127.0.0.1, port_base: {b}}}
security: {{keys: keys}}
supervision: {{heartbeat_timeout_s: 1.5, startup_grace_s: 3}}
nodes:
  - {{name: src, type: pattern, host: a, params: {{kind: radar, rate_hz: 20, topic: /a/radar}}}}
  - {{name: near, type: relay, host: a, params: {{input: /a/radar, output: /a/copy}}}}
  - {{name: relay, type: relay, host: b, params: {{input: /a/radar, output: /b/radar}}}}
"""


def start(
    procs: Procs, monkeypatch: pytest.MonkeyPatch, runtime: Path, graph: Path, host: str
) -> subprocess.Popen[str]:
    runtime.mkdir(mode=0o700, exist_ok=True)
    monkeypatch.setenv(ENV_RUNTIME_DIR, str(runtime))
    return procs.cli("launch", str(graph), "--host", host)


def test_two_hosts_over_curve_zmq(procs: Procs, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = random.randrange(20000, 60000, 100)
    graph = runtime_dir / "graph.yaml"
    graph.write_text(GRAPH.format(a=base, b=base + 50))
    keys = runtime_dir / "keys"
    p = procs.cli("keys", "generate", str(keys), "a", "b")
    assert p.wait(timeout=30) == 0
    assert (keys / "a.key_secret").exists() and (keys / "b.key").exists()
    rogue = runtime_dir / "rogue"
    generate(rogue, ["b"])  # a key pair named b, but not the authorised one

    started = time.monotonic()
    host_a = start(procs, monkeypatch, runtime_dir / "machine-a", graph, "a")
    host_b = start(procs, monkeypatch, runtime_dir / "machine-b", graph, "b")
    reg_a = Registry(runtime_dir / "machine-a", "twohost")
    reg_b = Registry(runtime_dir / "machine-b", "twohost")
    wait_for(lambda: [e for e in reg_b.lookup("/b/radar") if e.pid], 30.0, "the relay on host b")
    for topic in ("/a/radar", "/a/copy"):
        wait_for(lambda t=topic: [e for e in reg_a.lookup(t) if e.pid], 30.0, f"{topic} on host a")  # type: ignore[misc]
    # each machine's own nodes are registered at their ipc sockets, the other machine's at its
    # TCP endpoints (numbered in file order from each host's port_base), with its CurveZMQ key
    local_b = {e.topic: e for e in reg_b.entries() if e.pid}
    assert local_b["/b/radar"].endpoint.startswith("ipc://") and not local_b["/b/radar"].server_key
    remote_b = {e.topic: e for e in reg_b.entries() if not e.pid and e.topic != "/diagnostics"}
    assert {t: e.endpoint for t, e in remote_b.items()} == {
        "/a/radar": f"tcp://127.0.0.1:{base}",
        "/a/copy": f"tcp://127.0.0.1:{base + 2}",
    }
    assert all(e.server_key for e in remote_b.values())
    [own] = reg_a.lookup("/a/radar")
    assert own.endpoint.startswith("ipc://") and own.pid
    assert [e.endpoint for e in reg_a.lookup("/b/radar")] == [f"tcp://127.0.0.1:{base + 50}"]

    authorised = CurveKeys.load(keys, "b")
    with (
        Subscriber("/a/radar", registry=reg_b, curve=authorised) as good,
        Subscriber("/a/radar", registry=reg_b, curve=CurveKeys.load(rogue, "b")) as bad,
        Subscriber("/a/radar", registry=reg_b) as plain,
        Subscriber("/b/radar", registry=reg_b) as relayed,
        Subscriber("/a/copy", registry=reg_a) as nearby,
        Subscriber(["/a/radar", "/b/radar"], registry=reg_b, curve=authorised) as both,
    ):
        got = good.recv(timeout=15.0)
        assert isinstance(got, msgs.RadarScan), "nothing crossed from host a to host b"
        # the relay on b received over TCP and republishes on ipc, which needs no key on b
        assert isinstance(relayed.recv(timeout=5.0), msgs.RadarScan)
        # the relay on a read /a/radar over ipc (no TCP endpoint of it is registered on a)
        assert isinstance(nearby.recv(timeout=5.0), msgs.RadarScan)
        # one socket, a CurveZMQ link to host a and a plain ipc link to the local relay
        seen = {e.topic for e in (both.recv_envelope(timeout=5.0) for _ in range(10)) if e is not None}
        assert seen == {"/a/radar", "/b/radar"}
        assert bad.recv(timeout=2.0) is None, "a subscriber with an unauthorised key received data"
        assert plain.recv(timeout=0.5) is None
    # a program of the user's on machine b reads host a's topic with the keys named in its environment
    monkeypatch.setenv(ENV_KEYS, str(keys))
    monkeypatch.setenv(ENV_HOST, "b")
    echo = procs.cli("--graph", "twohost", "echo", "/a/radar", "--count", "1", "--json")
    out, err = echo.communicate(timeout=30)
    assert echo.returncode == 0, err
    record = json.loads(out.splitlines()[0])
    assert record.get("topic") == "/a/radar" and record["message"], err
    # past the start-up grace and a heartbeat timeout: each supervisor hears its own nodes
    time.sleep(max(0.0, started + 6.0 - time.monotonic()))
    for launcher in (host_a, host_b):
        launcher.send_signal(signal.SIGINT)
    for launcher in (host_a, host_b):
        out, _ = launcher.communicate(timeout=15)
        assert launcher.returncode == 0, out
        assert "sent no /diagnostics" not in out and "died" not in out and "requires CurveZMQ" not in out, out


def test_security_needs_hosts_and_known_host(procs: Procs, runtime_dir: Path) -> None:
    graph = runtime_dir / "graph.yaml"
    graph.write_text(GRAPH.format(a=20000, b=20050))
    p = procs.cli("launch", str(graph), "--host", "c", "--duration", "1")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2 and "unknown host 'c'" in err
    p = procs.cli("launch", str(graph), "--duration", "1")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2 and "start one launcher per machine with --host NAME, NAME one of ['a', 'b']" in err
    single = runtime_dir / "single.yaml"
    single.write_text("graph: one\nnodes: [{name: src, type: pattern}]\n")
    p = procs.cli("launch", str(single), "--host", "a", "--duration", "1")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2 and "this graph declares no hosts: run it without --host" in err
    p = procs.cli("launch", str(graph), "--dry-run")
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0 and "tcp://127.0.0.1:20050" in out and "CurveZMQ on TCP: keys in" in out


def test_key_errors_are_clear(procs: Procs, runtime_dir: Path) -> None:
    blocker = runtime_dir / "file"
    blocker.write_text("not a directory")
    p = procs.cli("keys", "generate", str(blocker), "a")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1 and "cannot write keys to" in err
    with pytest.raises(Exception, match="fusion-stream keys generate"):
        CurveKeys.load(runtime_dir, "nobody")
