"""The endpoint registry against a hostile neighbour: another local user's directories, planted
or malformed entry files, and what a killed process leaves behind.

"Another user" is simulated as root does it for real: directories and files chowned to uid 12345
(the tests that need that are skipped when not run as root), symbolic links and mode 0777.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_stream.cli import tools
from fusion_stream.core.wire import check_topic
from fusion_stream.errors import TransportError
from fusion_stream.runtime import registry as registry_mod
from fusion_stream.runtime.registry import ENV_RUNTIME_DIR, Registry, TopicEntry
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sources import testpattern

from .conftest import ROOT, Procs, wait_for

OTHER_UID = 12345
HOST = socket.gethostname()
as_root = pytest.mark.skipif(os.getuid() != 0, reason="only root can make a file belong to another user")


def _fake(topic: str = "/detections", pid: int | None = None) -> dict[str, object]:
    """A plausible entry of a live local process (this one), as an attacker would plant it."""
    return {
        "topic": topic,
        "endpoint": "ipc:///tmp/attacker.ipc",
        "type": "Detections",
        "node": "fusion",
        "pid": os.getpid() if pid is None else pid,
        "host": HOST,
        "src": 1,
    }


def _plant(runtime: Path, graph: str = "g", name: str = "1-00000001.json", entry: object = None) -> Path:
    topics = runtime / graph / "topics"
    topics.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = topics / name
    path.write_text(json.dumps(_fake() if entry is None else entry))
    return path


def _chown_tree(path: Path, uid: int) -> None:
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, uid, uid)
        for f in files:
            os.chown(os.path.join(dirpath, f), uid, uid)


# --------------------------------------------------------------------------- hostile directories


def _foreign_runtime(tmp: Path) -> Path:
    runtime = tmp / "rt"
    _plant(runtime)
    _chown_tree(runtime, OTHER_UID)
    return runtime


def _symlinked_runtime(tmp: Path) -> Path:
    real = tmp / "real"  # a 0700 directory of ours the link points to
    _plant(real)
    real.chmod(0o700)
    (tmp / "rt").symlink_to(real)
    return tmp / "rt"


def _open_runtime(tmp: Path) -> Path:
    runtime = tmp / "rt"
    _plant(runtime)
    runtime.chmod(0o777)
    return runtime


def _symlinked_graph(tmp: Path) -> Path:
    _plant(tmp / "elsewhere")
    (tmp / "rt").mkdir(mode=0o700)
    (tmp / "rt" / "g").symlink_to(tmp / "elsewhere" / "g")
    return tmp / "rt"


def _symlinked_topics(tmp: Path) -> Path:
    _plant(tmp / "elsewhere")
    (tmp / "rt" / "g").mkdir(parents=True, mode=0o700)
    (tmp / "rt" / "g" / "topics").symlink_to(tmp / "elsewhere" / "g" / "topics")
    return tmp / "rt"


def _foreign_graph(tmp: Path) -> Path:
    _plant(tmp / "rt")
    (tmp / "rt").chmod(0o700)
    _chown_tree(tmp / "rt" / "g", OTHER_UID)
    return tmp / "rt"


HOSTILE: dict[str, Callable[[Path], Path]] = {
    "runtime dir of another user": _foreign_runtime,
    "runtime dir is a symlink to a 0700 dir": _symlinked_runtime,
    "runtime dir writable by all": _open_runtime,
    "graph dir is a symlink": _symlinked_graph,
    "topics dir is a symlink": _symlinked_topics,
    "graph dir of another user": _foreign_graph,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_readers_refuse_a_registry_they_cannot_trust(kind: str, tmp_path: Path) -> None:
    if "another user" in kind and os.getuid() != 0:
        pytest.skip("only root can make a directory belong to another user")
    runtime = HOSTILE[kind](tmp_path)
    reg = Registry(runtime, "g")
    with pytest.raises(TransportError, match=ENV_RUNTIME_DIR):
        reg.entries()
    with pytest.raises(TransportError, match="refusing"):
        tools.list_topics(reg)
    with pytest.raises(TransportError):
        Subscriber("/detections", registry=reg)
    with pytest.raises(TransportError):
        Publisher("/detections", registry=reg)


@as_root
def test_cli_topics_and_echo_never_show_a_planted_entry(tmp_path: Path) -> None:
    runtime = _foreign_runtime(tmp_path)
    env = dict(os.environ, **{ENV_RUNTIME_DIR: str(runtime), "FUSION_STREAM_GRAPH": "g"})
    for args in (["topics"], ["echo", "/detections", "-n", "1"]):
        done = subprocess.run(
            [sys.executable, "-m", "fusion_stream.cli", *args],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode != 0, done.stdout
        assert "/detections" not in done.stdout
        assert "belongs to uid 12345" in done.stderr and ENV_RUNTIME_DIR in done.stderr, done.stderr


# --------------------------------------------------------------------------- a taken /tmp fallback


@pytest.fixture
def fallback_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No runtime directory in the environment, /tmp and $HOME moved under tmp_path."""
    monkeypatch.delenv(ENV_RUNTIME_DIR, raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "home").mkdir(mode=0o700)
    monkeypatch.setattr(registry_mod, "_TMP", tmp_path / "tmp")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _take_foreign(tmp: Path, fallback: Path) -> None:
    _plant(fallback, "default")
    _chown_tree(fallback, OTHER_UID)


def _take_symlink(tmp: Path, fallback: Path) -> None:
    _plant(tmp / "mine", "default")
    (tmp / "mine").chmod(0o700)
    fallback.symlink_to(tmp / "mine")


def _take_open(tmp: Path, fallback: Path) -> None:
    _plant(fallback, "default")
    fallback.chmod(0o777)


TAKEN: dict[str, Callable[[Path, Path], None]] = {
    "owned by another user": _take_foreign,
    "a symlink": _take_symlink,
    "writable by others": _take_open,
}


@pytest.mark.parametrize("how", sorted(TAKEN))
def test_a_taken_tmp_fallback_leads_to_a_private_alternative(
    how: str, fallback_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if how == "owned by another user" and os.getuid() != 0:
        pytest.skip("only root can make a directory belong to another user")
    fallback = fallback_env / "tmp" / f"fusion_stream-{os.getuid()}"
    TAKEN[how](fallback_env, fallback)
    with caplog.at_level(logging.WARNING, logger="fusion_stream.runtime.registry"):
        chosen = registry_mod.default_runtime_dir()
    assert chosen == fallback_env / "home" / ".cache" / "fusion_stream" / f"run-{HOST}"
    assert "FUSION_STREAM_RUNTIME_DIR" in caplog.text and str(fallback) in caplog.text
    # publisher and subscriber of the same user agree on it without being told
    with Publisher("/detections") as pub, Subscriber("/detections") as sub:
        sub.wait_for_publishers(5.0)
        wait_for(lambda: (pub.publish(testpattern.radar_scan(1)), sub.recv(timeout=0.1))[1] is not None, 5, "a message")
        [entry] = Registry().lookup("/detections")
        assert entry.endpoint == pub.endpoint != "ipc:///tmp/attacker.ipc"
    assert chosen.stat().st_mode & 0o777 == 0o700


def test_a_free_tmp_fallback_is_claimed_at_once(fallback_env: Path) -> None:
    """The first reader creates it, so nobody can take it later between reads and publishes."""
    chosen = registry_mod.default_runtime_dir()
    assert chosen == fallback_env / "tmp" / f"fusion_stream-{os.getuid()}"
    st = chosen.lstat()
    assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o700
    assert registry_mod.default_runtime_dir() == chosen


def test_no_private_alternative_is_a_clear_error_naming_the_fix(fallback_env: Path) -> None:
    fallback = fallback_env / "tmp" / f"fusion_stream-{os.getuid()}"
    _take_open(fallback_env, fallback)
    home = fallback_env / "home"
    home.rmdir()
    home.write_text("not a directory")
    with pytest.raises(TransportError, match="set FUSION_STREAM_RUNTIME_DIR") as info:
        registry_mod.default_runtime_dir()
    assert str(fallback) in str(info.value) and "XDG_RUNTIME_DIR" in str(info.value)


# --------------------------------------------------------------------------- entry files


def _good(registry: Registry) -> Path:
    return registry.register(TopicEntry("/good", "ipc:///nowhere", "", "n", os.getpid(), HOST, 2))


def _symlink_entry(topics: Path, tmp: Path) -> str:
    (tmp / "outside.json").write_text(json.dumps(_fake()))
    (topics / "9-00000009.json").symlink_to(tmp / "outside.json")
    return "9-00000009.json"


def _foreign_entry(topics: Path, tmp: Path) -> str:
    path = _plant(topics.parent.parent, topics.parent.name, "9-0000000a.json")
    os.chown(path, OTHER_UID, OTHER_UID)
    return path.name


def _fifo_entry(topics: Path, tmp: Path) -> str:
    os.mkfifo(topics / "9-0000000b.json")
    return "9-0000000b.json"


def _huge_entry(topics: Path, tmp: Path) -> str:
    entry = {**_fake(), "node": "n" * 100_000}
    (topics / "9-0000000c.json").write_text(json.dumps(entry))
    return "9-0000000c.json"


def _dir_entry(topics: Path, tmp: Path) -> str:
    (topics / "9-0000000d.json").mkdir()
    return "9-0000000d.json"


ENTRY_FILES: dict[str, Callable[[Path, Path], str]] = {
    "symlink": _symlink_entry,
    "fifo": _fifo_entry,
    "huge": _huge_entry,
    "directory": _dir_entry,
}
if os.getuid() == 0:
    ENTRY_FILES["another user's"] = _foreign_entry

BAD_CONTENT: dict[str, object] = {
    "invalid topic": {**_fake(), "topic": "bad topic!"},
    "empty topic": {**_fake(), "topic": ""},
    "topic not a string": {**_fake(), "topic": 42},
    "pid a string": {**_fake(), "pid": str(os.getpid())},
    "pid a bool": {**_fake(), "pid": True},
    "pid negative": {**_fake(), "pid": -1},
    "local pid 0": {**_fake(), "pid": 0},
    "pid huge": {**_fake(), "pid": 2**70},
    "src a float": {**_fake(), "src": 1.5},
    "src beyond 32 bits": {**_fake(), "src": 2**33},
    "endpoint of another scheme": {**_fake(), "endpoint": "inproc://x"},
    "endpoint not a string": {**_fake(), "endpoint": ["ipc://a"]},
    "unknown key": {**_fake(), "extra": 1},
    "missing key": {k: v for k, v in _fake().items() if k != "host"},
    "not an object": [1, 2, 3],
    "null": None,
}


def _bad_registry(registry: Registry, tmp: Path) -> list[str]:
    registry.ensure()
    topics = registry.path / "topics"
    names = [make(topics, tmp) for make in ENTRY_FILES.values()]
    for i, content in enumerate(BAD_CONTENT.values()):
        (topics / f"8-{i:08x}.json").write_text(json.dumps(content))
        names.append(f"8-{i:08x}.json")
    (topics / "7-00000001.json").write_bytes(b"\xff\xfe{not json")
    (topics / "7-00000002.json").write_text("[" * 50_000 + "]" * 50_000)
    names += ["7-00000001.json", "7-00000002.json"]
    return names


def test_bad_entry_files_are_skipped_and_reported_once_each(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = _bad_registry(registry, tmp_path)
    _good(registry)
    with caplog.at_level(logging.WARNING, logger="fusion_stream.runtime.registry"):
        t0 = time.monotonic()
        assert [e.topic for e in registry.entries()] == ["/good"]
        assert time.monotonic() - t0 < 2.0  # a FIFO does not block the reader
        _good(registry)  # the directory changes: everything is read again
        assert [e.topic for e in registry.entries()] == ["/good"]
        assert [e.topic for e in Registry(registry.runtime_dir, registry.graph).entries()] == ["/good"]
    for name in names:
        reported = [r for r in caplog.records if name in r.getMessage()]
        assert len(reported) == 2, (name, [r.getMessage() for r in reported])  # once per Registry
    assert "attacker" not in caplog.text  # the content of a bad file is not echoed
    assert (tmp_path / "outside.json").exists()  # a symlinked entry is not followed, nor deleted


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(
        st.sampled_from([*_fake(), "server_key", "x"]),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.lists(st.integers()),
    )
)
def test_any_json_object_is_an_entry_that_holds_or_is_skipped(registry: Registry, content: dict[str, object]) -> None:
    registry.ensure()
    path = registry.path / "topics" / "5-00000005.json"
    path.write_text(json.dumps({**_fake(), **content}))
    for entry in Registry(registry.runtime_dir, registry.graph).entries(include_dead=True):
        assert check_topic(entry.topic) == entry.topic
        assert isinstance(entry.pid, int) and not isinstance(entry.pid, bool) and 0 <= entry.pid < 2**31
        assert entry.endpoint.startswith(("ipc://", "tcp://"))
    path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- what a killed process leaves

_PUBLISHER = """
import sys, time
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Publisher
pub = Publisher("/kill/me", registry=Registry(sys.argv[1], "test"))
print(pub.endpoint, flush=True)
time.sleep(60)
"""


def test_kill_9_leaves_no_entry_and_no_socket_file(registry: Registry, runtime_dir: Path, procs: Procs) -> None:
    p = procs.python("-c", _PUBLISHER, str(runtime_dir))
    assert p.stdout is not None
    endpoint = p.stdout.readline().strip()
    sock = Path(endpoint.removeprefix("ipc://"))
    assert endpoint.startswith("ipc://") and sock.parent == registry.path and sock.exists()
    wait_for(lambda: registry.lookup("/kill/me"), 5, "the publisher's entry")
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=5)
    assert registry.lookup("/kill/me") == []
    assert not sock.exists()
    assert list(registry.path.glob("*.ipc")) == []


def test_the_sweep_deletes_nothing_outside_the_graph_directory(registry: Registry, tmp_path: Path) -> None:
    registry.ensure()
    dead = 2**22 + 4321
    outside = tmp_path / "outside.ipc"
    outside.write_text("precious")
    inside_not_socket = registry.path / "00000003.ipc"
    inside_not_socket.write_text("not a socket")
    endpoints = (f"ipc://{outside}", f"ipc://{registry.path}/../../{outside.name}", f"ipc://{inside_not_socket}")
    for src, endpoint in enumerate(endpoints, start=1):
        registry.register(TopicEntry("/x", endpoint, "", "n", dead, HOST, src))
    assert registry.lookup("/x") == []
    assert list((registry.path / "topics").iterdir()) == []
    assert outside.read_text() == "precious" and inside_not_socket.exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_params_of_a_dead_launcher_are_swept(registry: Registry, tmp_path: Path) -> None:
    mine = registry.params_dir()
    assert mine == registry.path / "params" / str(os.getpid()) and mine.is_dir()
    (mine / "fusion.yaml").write_text("a: 1\n")
    dead = registry.path / "params" / str(_dead_pid())
    dead.mkdir(mode=0o700)
    (dead / "fusion.yaml").write_text("a: 1\n")
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "x.yaml").write_text("a: 1\n")
    linked = registry.path / "params" / str(_dead_pid())
    linked.symlink_to(tmp_path / "keep")
    _good(registry)
    registry.entries()
    assert not dead.exists()
    assert (mine / "fusion.yaml").exists()  # a live launcher's files stay
    assert (tmp_path / "keep" / "x.yaml").exists()  # a link is not followed
    assert linked.is_symlink()


# --------------------------------------------------------------------------- tools survive a bad entry


def _plant_bad_topic(registry: Registry) -> None:
    registry.ensure()
    (registry.path / "topics" / "6-00000006.json").write_text(json.dumps({**_fake(), "topic": "bad topic!"}))


def test_record_all_records_the_good_topics_next_to_a_bad_entry(
    registry: Registry, procs: Procs, tmp_path: Path
) -> None:
    _plant_bad_topic(registry)
    procs.python("tests/publish_samples.py", "-p", "period_s:=0.05")
    wait_for(lambda: registry.lookup("/lidar/top/points"), 15, "the sample publisher")
    out = tmp_path / "all.mcap"
    rec = procs.cli("record", "--all", "-o", str(out), "--duration", "1.5")
    _, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err[-2000:]
    assert "6-00000006.json" in err and "topic" in err
    info = subprocess.run(
        [sys.executable, "-m", "fusion_stream.cli", "bag", "info", str(out), "--json"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "/lidar/top/points" in info.stdout, info.stderr


def test_viewer_watcher_and_foxglove_bridge_survive_a_bad_entry(registry: Registry) -> None:
    from fusion_stream.viewer.live import GraphWatcher

    _plant_bad_topic(registry)
    watcher = GraphWatcher(registry).start()
    bridge = None
    if _has_foxglove():
        from fusion_stream.viewer.foxglove_bridge import FoxgloveBridge

        bridge = FoxgloveBridge(registry, port=0).start()
    try:
        with Publisher("/lidar/top/points", registry=registry) as pub:
            wait_for(
                lambda: (pub.publish(testpattern.point_cloud(1, points=10)), watcher.received)[1] > 0,
                10,
                "the watcher to receive",
            )
            if bridge is not None:
                wait_for(lambda: (pub.publish(testpattern.point_cloud(1, points=10)), bridge.relayed)[1] > 0, 10)
        assert watcher.tap._thread.is_alive()
    finally:
        watcher.stop()
        if bridge is not None:
            bridge.stop()


def _has_foxglove() -> bool:
    try:
        import foxglove  # noqa: F401
    except ImportError:
        return False
    return True


def test_viewer_watcher_reports_a_refused_registry_and_keeps_running(tmp_path: Path) -> None:
    from fusion_stream.viewer.live import GraphWatcher

    runtime = _open_runtime(tmp_path)
    watcher = GraphWatcher(Registry(runtime, "g")).start()
    try:
        wait_for(lambda: any("refusing" in s for s in watcher.status()), 5, "the refusal in the status")
        assert watcher.tap._thread.is_alive()
        runtime.chmod(0o700)  # the user fixes it: the watcher picks the graph up
        wait_for(lambda: not any("refusing" in s for s in watcher.status()), 5, "the refusal to clear")
    finally:
        watcher.stop()
