"""Shared fixtures: every test gets its own private runtime directory and graph name, so tests
(and any graph running on the machine) never see each other's topics."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusion_stream.core import msgs
from fusion_stream.runtime.registry import ENV_GRAPH, ENV_RUNTIME_DIR, Registry
from fusion_stream.runtime.transport import Subscriber

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # short path: ipc socket paths must stay under ~100 bytes
    path = Path(tempfile.mkdtemp(prefix="fst-"))
    monkeypatch.setenv(ENV_RUNTIME_DIR, str(path))
    monkeypatch.setenv(ENV_GRAPH, "test")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def registry(runtime_dir: Path) -> Registry:
    return Registry(runtime_dir, "test")


def run_cli(*args: str, timeout: float = 110) -> subprocess.CompletedProcess[str]:
    """``fusion-stream ARGS...`` to its end, from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "fusion_stream.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_here(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``fusion-stream ARGS...`` run in this process, for commands refused before they start
    anything: the same ``main`` as the console script, without an interpreter start-up (~3 s,
    most of a usage-error test). Environment (``env`` replaces it), working directory, logging
    and signal handlers are put back afterwards."""
    import contextlib
    import io
    import logging

    from fusion_stream.cli.main import main

    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    root = logging.getLogger()
    saved_log = (list(root.handlers), root.level)
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out, err = io.StringIO(), io.StringIO()
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:], root.level = saved_log
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
    return subprocess.CompletedProcess(["fusion-stream", *args], code, out.getvalue(), err.getvalue())


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Procs:
    """Child processes started by a test; all are killed at the end, whatever happens."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def python(self, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        p: subprocess.Popen[str] = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=dict(os.environ),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **kwargs,  # type: ignore[call-overload]
        )
        self.started.append(p)
        return p

    def cli(self, *args: str) -> subprocess.Popen[str]:
        return self.python("-m", "fusion_stream.cli", *args)

    def stop_all(self) -> None:
        """SIGTERM every child; each must exit 0 (its stderr tail is the failure message)."""
        for p in self.started:
            p.send_signal(signal.SIGTERM)
        for p in self.started:
            assert p.wait(timeout=10) == 0, p.communicate()[1][-2000:]

    def close(self) -> None:
        for p in self.started:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=10)


@pytest.fixture
def procs(runtime_dir: Path) -> Iterator[Procs]:
    p = Procs()
    yield p
    p.close()


def collect_topics(sub: Subscriber, topics: list[str], seconds: float) -> dict[str, list[msgs.Message]]:
    """Every message per topic that arrives on ``sub`` within ``seconds`` (after its publishers appear)."""
    got: dict[str, list[msgs.Message]] = {t: [] for t in topics}
    sub.wait_for_publishers(30.0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        env = sub.recv_envelope(timeout=0.5)
        if env is not None:
            got[env.topic].append(env.message)
    return got


def collect_counts(sub: Subscriber, need: dict[str, int], timeout: float = 60.0) -> dict[str, list[msgs.Message]]:
    """Messages per topic until each topic has ``need[topic]`` of them (or ``timeout`` s pass):
    a count, not a rate, so a busy machine makes the test slower, not wrong."""
    got: dict[str, list[msgs.Message]] = {t: [] for t in need}
    sub.wait_for_publishers(30.0)
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(len(got[t]) < n for t, n in need.items()):
        env = sub.recv_envelope(timeout=0.5)
        if env is not None:
            got[env.topic].append(env.message)
    return got


def collect_frames(sub: Subscriber, seconds: float) -> list[msgs.SyncedFrame]:
    """Every SyncedFrame that arrives on ``sub`` within ``seconds``."""
    out: list[msgs.SyncedFrame] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        m = sub.recv(timeout=left)
        if isinstance(m, msgs.SyncedFrame):
            out.append(m)
    return out
