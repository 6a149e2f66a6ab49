"""Two launchers on loopback, each with its own runtime directory as if on its own machine:
nodes on host a publish over TCP to nodes on host b, encrypted and authenticated with CurveZMQ;
a subscriber without an authorised key receives nothing."""

from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path

import pytest

from fusion_stream import msgs
from fusion_stream.registry import ENV_RUNTIME_DIR, Registry
from fusion_stream.security import CurveKeys, generate
from fusion_stream.transport import Subscriber

from .conftest import Procs, wait_for

GRAPH = """
graph: twohost
hosts:
  a: {{address: 127.0.0.1, port_base: {a}}}
  b: {{address: 127.0.0.1, port_base: {b}}}
security: {{keys: keys}}
nodes:
  - {{name: src, type: pattern, host: a, params: {{kind: radar, rate_hz: 20, topic: /a/radar}}}}
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

    host_a = start(procs, monkeypatch, runtime_dir / "machine-a", graph, "a")
    host_b = start(procs, monkeypatch, runtime_dir / "machine-b", graph, "b")
    reg_b = Registry(runtime_dir / "machine-b", "twohost")
    wait_for(lambda: [e for e in reg_b.lookup("/b/radar") if e.pid], 30.0, "the relay on host b")
    [entry] = [e for e in reg_b.lookup("/b/radar") if e.pid]
    assert entry.endpoint == f"tcp://127.0.0.1:{base + 50}" and entry.server_key
    # host b's registry also lists host a's topic, at host a's TCP endpoint
    assert [e.endpoint for e in reg_b.lookup("/a/radar")] == [f"tcp://127.0.0.1:{base}"]

    authorised = CurveKeys.load(keys, "b")
    with (
        Subscriber("/b/radar", registry=reg_b, curve=authorised) as good,
        Subscriber("/b/radar", registry=reg_b, curve=CurveKeys.load(rogue, "b")) as bad,
        Subscriber("/b/radar", registry=reg_b) as plain,
    ):
        got = good.recv(timeout=15.0)
        assert isinstance(got, msgs.RadarScan), "nothing crossed from host a to host b"
        assert bad.recv(timeout=2.0) is None, "a subscriber with an unauthorised key received data"
        assert plain.recv(timeout=0.5) is None
    for launcher in (host_a, host_b):
        launcher.send_signal(signal.SIGINT)
    for launcher in (host_a, host_b):
        out, _ = launcher.communicate(timeout=15)
        assert launcher.returncode == 0, out


def test_security_needs_hosts_and_known_host(procs: Procs, runtime_dir: Path) -> None:
    graph = runtime_dir / "graph.yaml"
    graph.write_text(GRAPH.format(a=20000, b=20050))
    p = procs.cli("launch", str(graph), "--host", "c", "--duration", "1")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2 and "unknown host 'c'" in err
    p = procs.cli("launch", str(graph), "--dry-run")
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0 and "tcp://127.0.0.1:20050" in out and "CurveZMQ: keys in" in out


def test_key_errors_are_clear(procs: Procs, runtime_dir: Path) -> None:
    blocker = runtime_dir / "file"
    blocker.write_text("not a directory")
    p = procs.cli("keys", "generate", str(blocker), "a")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1 and "cannot write keys to" in err
    with pytest.raises(Exception, match="fusion-stream keys generate"):
        CurveKeys.load(runtime_dir, "nobody")
