"""Run a launch file's nodes as processes: start, watch, restart, and stop them all.

* every node is its own ``python -m fusion_stream.runtime.runner <type>`` process; its output is forwarded line by line
  with a ``[name]`` prefix;
* liveness comes from process exit and from the node's ``/diagnostics`` heartbeat: a node that
  stops reporting is killed and treated as crashed;
* a slow node is not a hung one: while a callback runs long, the node's watchdog thread keeps
  reporting "busy for N s in X" (see :mod:`fusion_stream.runtime.node`); such a node is kept (and said so
  once) until that one callback has run ``hang_timeout_s``, then it is killed as hung;
* but a node that is *stopped* is not a node that is hung: one stopped by a signal (SIGSTOP,
  SIGTSTP: ``kill -STOP``, a job-control stop; state ``T``) or held by a debugger or tracer (state
  ``t``) did not fail, somebody paused it on purpose. It is left alone, neither killed nor sent
  SIGCONT (that would undo the pause and break a debugging session), and reported once as
  stopped; when it continues it is reported again and its heartbeat clock starts over, so it
  gets the whole timeout to report, and its subscribers never see a respawn (a shell treats a
  stopped job the same way). :attr:`Supervisor.states` tells a library user which are stopped;
* a crashed node is restarted after a backoff that doubles with each failure in a row, up to its
  retry limit; then a required node ends the whole graph with a non-zero exit;
* but a node that exits 2 (``EXIT_CONFIG``: it refused its configuration, a file gone since the
  launch file was checked, bad keys) is not restarted, as a retry cannot help: the graph stops at
  once with the node's name and its last error line, and the launcher exits 2;
* stopping sends SIGINT, then SIGTERM, then SIGKILL, with a timeout at each step, each of the
  first two followed by SIGCONT (as systemd.kill(5) does), so a stopped node ends as gracefully
  as a running one; children also stop by themselves if the supervisor dies (they watch their
  parent), so none is orphaned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import yaml

from fusion_stream.core import msgs
from fusion_stream.core.resources import ENV_LAUNCH_DIR
from fusion_stream.errors import LaunchError
from fusion_stream.graph.launch import LOCAL_HOST, LaunchFile, NodeSpec
from fusion_stream.runtime.node import DIAGNOSTICS_TOPIC
from fusion_stream.runtime.registry import ENV_GRAPH, ENV_RUNTIME_DIR, Registry, TopicEntry
from fusion_stream.runtime.runner import ENV_SUPERVISOR_PID, EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from fusion_stream.runtime.security import ENV_HOST, ENV_KEYS, CurveKeys
from fusion_stream.runtime.transport import Subscriber

RUNNER = "fusion_stream.runtime.runner"
"""The module every node process runs: it loads the node type by name (a plugin needs no ``__main__``)."""

log = logging.getLogger(__name__)


class _Console:
    """Prints the nodes' output lines from a thread of its own; the readers never wait for it.

    A node whose stdout pipe is full blocks in its next log call and stops working. So when the
    console falls behind (a slow terminal, ``| less`` paused, a pipe nobody reads any more),
    node lines beyond ``max_lines`` waiting are dropped and counted per node, and the pipes keep
    draining. The supervisor's own events are never dropped."""

    def __init__(self, output: Callable[[str], None], max_lines: int = 10_000) -> None:
        self._output = output
        self._max_lines = max_lines
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()  # safe to put re-entrantly
        self._lock = threading.Lock()
        self._waiting = 0
        self._dropped: Counter[str] = Counter()
        self._reported: Counter[str] = Counter()
        self._broken = False
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()

    def put(self, source: str, line: str) -> None:
        """Queue a node's line, or count it as dropped if too many are waiting."""
        with self._lock:
            if self._waiting >= self._max_lines:
                self._dropped[source] += 1
                return
            self._waiting += 1
        self._queue.put(line)

    def put_event(self, line: str) -> None:
        """Queue a line of the supervisor's own (never dropped; they are few)."""
        with self._lock:
            self._waiting += 1
        self._queue.put(line)

    def dropped(self, source: str) -> int:
        with self._lock:
            return self._dropped[source]

    def take_drop_reports(self) -> list[str]:
        """One line per source whose lines were dropped since the last call."""
        with self._lock:
            news = {src: n - self._reported[src] for src, n in self._dropped.items() if n > self._reported[src]}
            self._reported.update(news)
        return [f"{n} output lines of {src} dropped: the console is not keeping up" for src, n in news.items()]

    def _run(self) -> None:
        while (line := self._queue.get()) is not None:
            with self._lock:
                self._waiting -= 1
            if self._broken:
                continue  # nobody reads our output any more: keep draining
            try:
                self._output(line)
            except OSError:  # BrokenPipeError: `fusion-stream launch ... | head`
                self._broken = True

    def close(self, timeout: float = 2.0) -> None:
        """Print what is queued (for up to ``timeout`` s), then stop."""
        self._queue.put(None)
        self._thread.join(timeout=timeout)


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    """Signal a node and whatever it started (each node leads a session and process group)."""
    with contextlib.suppress(ProcessLookupError):  # gone already: poll() picks its exit up
        os.killpg(proc.pid, sig)


STOPPED_STATES = {"T": "stopped by a signal", "t": "stopped by a debugger or tracer"}
"""Process states (``/proc/PID/stat``) of a node that is paused, not hung: see the module doc."""


def process_state(pid: int) -> str | None:
    """The one-letter state of process ``pid`` (R, S, D, T, t, Z...), or None where unknown
    (gone, or no ``/proc``: then a node is never judged stopped, only silent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ...": comm may hold spaces and parentheses, so split after the last ')'
    fields = stat[stat.rfind(")") + 1 :].split()
    return fields[0] if fields else None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class _Child:
    spec: NodeSpec
    proc: subprocess.Popen[str] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    finished: bool = False
    """Gone for good: exited 0 by itself, or given up on."""
    last_heartbeat: float = 0.0
    reported: bool = False
    """Sent /diagnostics since its last start: its node runtime (and signal handling) is up."""
    stopped_since: float | None = None
    """When it was found stopped (SIGSTOP, a debugger), while it still is."""
    busy: tuple[str, float] | None = None
    """What its last report said it has been busy with, and for how long (its watchdog's)."""
    busy_reported: bool = False
    said_goodbye: bool = False
    """Sent its last report (STALE, "stopped"): its runtime is closed, the process is exiting."""
    readers: list[threading.Thread] = field(default_factory=list)
    last_error: str = ""
    """Its last output line that reported an error: what a configuration failure is told with."""


class Supervisor:
    """Supervise the nodes of ``launch`` that run on ``host``."""

    def __init__(
        self,
        launch: LaunchFile,
        *,
        host: str = LOCAL_HOST,
        registry: Registry | None = None,
        output: Callable[[str], None] | None = None,
    ) -> None:
        self.launch = launch
        self.host = host
        self.registry = registry or Registry(graph=launch.graph)
        self.heartbeat_timeout_s = launch.supervision.heartbeat_timeout_s
        self.hang_timeout_s = launch.supervision.hang_timeout_s
        self.startup_grace_s = launch.supervision.startup_grace_s
        self.stop_grace_s = launch.supervision.stop_grace_s
        self.failure: str | None = None
        self.config_failure = False
        """The failure is a node's refused configuration (exit code 2): run() returns EXIT_CONFIG."""
        self.events: list[str] = []
        self._output = output or (lambda line: print(line, flush=True))
        self._console: _Console | None = None
        self._signalled: int | None = None
        if launch.multi_host and host not in launch.hosts:
            why = (
                "this graph runs on several hosts: start one launcher per machine with --host NAME, NAME one of"
                if host == LOCAL_HOST
                else f"unknown host {host!r}; hosts:"
            )
            raise LaunchError(launch.path, "--host", f"{why} {sorted(launch.hosts)}")
        if not launch.multi_host and host != LOCAL_HOST:
            raise LaunchError(launch.path, "--host", "this graph declares no hosts: run it without --host")
        self._children = [_Child(spec) for spec in launch.on_host(host)]
        if not self._children:
            raise LaunchError(launch.path, "--host", f"no node runs on host {host!r}")
        self._endpoints = launch.endpoints() if launch.multi_host else {}
        self._remote_entries: list[Path] = []
        self._stopping = threading.Event()
        self._params_dir = self.registry.path / "params"
        self._heartbeats: Subscriber | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def children(self) -> dict[str, subprocess.Popen[str] | None]:
        return {c.spec.name: c.proc for c in self._children}

    @property
    def states(self) -> dict[str, str]:
        """Each node's state as the supervisor sees it: starting (not reported yet), running,
        stopped (paused by a signal or a debugger: left alone), restarting, or finished."""
        out = {}
        for c in self._children:
            if c.finished:
                out[c.spec.name] = "finished"
            elif c.proc is None:
                out[c.spec.name] = "restarting"
            elif c.stopped_since is not None:
                out[c.spec.name] = "stopped"
            else:
                out[c.spec.name] = "running" if c.reported else "starting"
        return out

    def _event(self, text: str) -> None:
        self.events.append(text)
        line = f"[launch] {text}"
        if self._console is not None:
            self._console.put_event(line)
        else:
            self._output(line)
        log.debug(text)  # the [launch] line is the user's copy; this one is for library users

    def start(self) -> None:
        self._console = _Console(self._output)
        try:
            self.registry.ensure()
            self._params_dir = self.registry.params_dir()  # params/<pid>: swept if we are killed
            keys = CurveKeys.load(self.launch.keys, self.host) if self.launch.keys else None
            self._register_remote_topics(keys)
            # local nodes report over ipc; with keys, the other hosts' reports are readable too
            self._heartbeats = Subscriber(DIAGNOSTICS_TOPIC, registry=self.registry, queue_size=1000, curve=keys)
            for child in self._children:
                self._spawn(child)
        except BaseException:
            self.shutdown()  # what did start stops again, the console thread too
            raise

    def _register_remote_topics(self, keys: CurveKeys | None) -> None:
        """Put the other hosts' endpoints in the local registry, so local nodes find them."""
        for (node, topic), endpoint in self._endpoints.items():
            spec = self.launch.node(node)
            if spec.host == self.host:
                continue
            server_key = keys.public_key_of(spec.host).decode() if keys else ""
            entry = TopicEntry(topic, endpoint, "", node, 0, spec.host, zlib.crc32(endpoint.encode()), server_key)
            self._remote_entries.append(self.registry.register(entry))

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        params_file = self._params_dir / f"{spec.name}.yaml"
        params_file.write_text(yaml.safe_dump(_plain(spec.params), sort_keys=False))
        argv = [sys.executable, "-m", RUNNER, spec.type, "--name", spec.name, "--params-file", str(params_file)]
        for a, b in spec.remap.items():
            argv += ["--remap", f"{a}:={b}"]
        for (node, topic), endpoint in self._endpoints.items():
            if node == spec.name:
                argv += ["--bind", f"{topic}:={endpoint}"]
        secure = {ENV_KEYS: self.launch.keys, ENV_HOST: self.host} if self.launch.keys else {}
        env = {
            **os.environ,
            **spec.env,
            ENV_GRAPH: self.registry.graph,
            ENV_RUNTIME_DIR: str(self.registry.runtime_dir),
            ENV_SUPERVISOR_PID: str(os.getpid()),
            ENV_LAUNCH_DIR: str(Path(self.launch.path).resolve().parent),
            "PYTHONUNBUFFERED": "1",
            **secure,
        }
        # A session of its own: a Ctrl-C in the terminal reaches only the supervisor, which then
        # stops the nodes in order (see shutdown) instead of interrupting them all mid-import.
        child.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="backslashreplace",  # a node printing bytes must not stop its own forwarding
            start_new_session=True,
        )
        child.started = child.last_heartbeat = time.monotonic()
        child.busy, child.busy_reported, child.said_goodbye = None, False, False
        child.reported = False
        child.stopped_since = None
        child.restart_at = None
        child.last_error = ""
        reader = threading.Thread(target=self._forward, args=(child, child.proc.stdout), daemon=True)
        reader.start()
        child.readers.append(reader)
        self._event(f"started {spec.name} ({spec.type}, pid {child.proc.pid})")

    def _forward(self, child: _Child, stream: IO[str] | None) -> None:
        if stream is None or self._console is None:
            return
        name = child.spec.name
        for line in stream:
            text = line.rstrip()
            if _ERROR_LINE.search(text):
                child.last_error = text
            self._console.put(name, f"[{name}] {text}")
        stream.close()

    # ------------------------------------------------------------------ supervision

    def step(self) -> None:
        """One round of supervision: heartbeats, exits, restarts. Call it often (~20 Hz)."""
        if self._stopping.is_set():
            return
        now = time.monotonic()
        if self._console is not None:
            for report in self._console.take_drop_reports():
                self._event(report)
        self._read_heartbeats(now)
        for child in self._children:
            proc = child.proc
            if child.finished:
                continue
            if proc is None:
                if child.restart_at is not None and now >= child.restart_at:
                    self._spawn(child)
                continue
            code = proc.poll()
            if code is None:
                self._check_heartbeat(child, now)
                continue
            self._on_exit(child, code, now)

    def _read_heartbeats(self, now: float) -> None:
        if self._heartbeats is None:
            return
        while (msg := self._heartbeats.recv(timeout=0)) is not None:
            if isinstance(msg, msgs.Diagnostics):
                for child in self._children:
                    if child.spec.name == msg.node:
                        child.last_heartbeat = now
                        child.reported = True
                        child.said_goodbye = msg.level == msgs.Level.STALE
                        busy_s = msg.values.get("busy_s")
                        if isinstance(busy_s, int | float) and not isinstance(busy_s, bool):
                            child.busy = (str(msg.values.get("busy_in", "?")), float(busy_s))
                        else:
                            child.busy, child.busy_reported = None, False

    def _check_heartbeat(self, child: _Child, now: float) -> None:
        assert child.proc is not None
        name, pid = child.spec.name, child.proc.pid
        if child.stopped_since is not None:  # paused: look each round for it to continue
            if process_state(pid) in STOPPED_STATES:
                return
            self._event(
                f"{name} continues after {now - child.stopped_since:.1f} s stopped; "
                f"its heartbeat is expected within {self.heartbeat_timeout_s:g} s again"
            )
            child.stopped_since = None
            child.last_heartbeat = now  # the whole timeout to report again, not a kill at once
            return
        if child.busy is not None and self._busy_too_long(child):
            return
        silent = now - child.last_heartbeat
        if now - child.started <= self.startup_grace_s or silent <= self.heartbeat_timeout_s:
            return
        state = process_state(pid)
        if state in STOPPED_STATES:
            child.stopped_since = now
            self._event(
                f"{name} sent no /diagnostics for {silent:.1f} s but is {STOPPED_STATES[state]} "
                f"(pid {pid}), not hung: left alone until it continues (kill -CONT {pid})"
            )
            return
        self._event(f"{name} sent no /diagnostics for {silent:.1f} s: killing it")
        _signal_group(child.proc, signal.SIGKILL)

    def _busy_too_long(self, child: _Child) -> bool:
        """Judge a node whose watchdog reports it busy; True when it was killed as hung."""
        assert child.proc is not None and child.busy is not None
        what, busy_s = child.busy
        if busy_s > self.hang_timeout_s:
            self._event(
                f"{child.spec.name} has been busy in one {what} callback for {busy_s:.1f} s, "
                f"past hang_timeout_s ({self.hang_timeout_s:g} s): killing it as hung"
            )
            child.busy = None
            _signal_group(child.proc, signal.SIGKILL)
            return True
        if busy_s > self.heartbeat_timeout_s and not child.busy_reported:
            child.busy_reported = True
            self._event(
                f"{child.spec.name} is slow, not hung: busy in {what} for {busy_s:.1f} s "
                f"(kept; killed only past hang_timeout_s {self.hang_timeout_s:g} s)"
            )
        return False

    def _on_exit(self, child: _Child, code: int, now: float) -> None:
        spec = child.spec
        child.proc = None
        if code == 0:
            self._event(f"{spec.name} finished (exit code 0)")
            child.finished = True
            return
        ran = now - child.started
        if code == EXIT_CONFIG:
            self._config_failure(child, ran)
            return
        if ran >= spec.respawn.stable_s:
            child.failures = 0
        child.failures += 1
        what = _describe_exit(code)
        policy = spec.respawn
        if policy.enabled and child.failures <= policy.max_retries:
            delay = policy.delay(child.failures)
            child.restart_at = now + delay
            self._event(
                f"{spec.name} died ({what}) after {ran:.1f} s; restarting in {delay:.1f} s "
                f"(attempt {child.failures} of {policy.max_retries})"
            )
            return
        child.finished = True
        reason = "respawn is off" if not policy.enabled else f"it failed {child.failures} times in a row"
        if spec.required:
            self.failure = f"required node {spec.name} died ({what}) and {reason}; stopping the graph"
            self._event(self.failure)
        else:
            self._event(f"{spec.name} died ({what}) and {reason}; continuing without it")

    def _config_failure(self, child: _Child, ran: float) -> None:
        """A node refused its configuration: not restarted (it would refuse it again), the graph stops."""
        child.finished = True
        for r in child.readers:  # its last lines may still be in the pipe
            r.join(timeout=2.0)
        m = _ERROR_LINE.search(child.last_error)
        why = m.group(1) if m else "(no error line)"
        self.config_failure = True
        self.failure = (
            f"{child.spec.name} ({child.spec.type}) refused its configuration after {ran:.1f} s (exit code 2): "
            f"{why}; not restarted (a retry cannot help): fix the launch file or its arguments; stopping the graph"
        )
        self._event(self.failure)

    @property
    def done(self) -> bool:
        """A required node failed for good, or every node finished."""
        return self.failure is not None or all(c.finished for c in self._children)

    # ------------------------------------------------------------------ running and stopping

    def request_stop(self) -> None:
        self._stopping.set()

    def run(self, duration_s: float | None = None, tick: Callable[[], None] | None = None) -> int:
        """Start, supervise until stopped (signal, ``duration_s``, or failure), stop; the exit code."""
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # no locks in a handler (it may interrupt this thread holding one): a flag only
            self._signalled = signum

        for s in previous:
            signal.signal(s, on_signal)
        end = None if duration_s is None else time.monotonic() + duration_s
        try:
            self.start()
            while not self._stopping.is_set() and self._signalled is None and not self.done:
                if end is not None and time.monotonic() >= end:
                    self._event(f"--duration {duration_s:g} s elapsed: stopping")
                    break
                self.step()
                if tick is not None:
                    tick()
                else:
                    self._stopping.wait(0.05)
        finally:
            if self._signalled is not None:
                self._event(f"{signal.Signals(self._signalled).name} received: stopping")
            self.shutdown()
            for s, handler in previous.items():
                signal.signal(s, handler)
        if self.failure:
            return EXIT_CONFIG if self.config_failure else EXIT_FAILED
        return EXIT_OK

    def shutdown(self) -> dict[str, int]:
        """Stop every child: SIGINT, SIGTERM, SIGKILL, each after a grace period.

        A node that has not reported yet may still be importing, before its runtime handles
        signals; it gets SIGTERM at once, which ends a bare Python process quietly (SIGINT would
        print a KeyboardInterrupt traceback) and a started runtime as gracefully as SIGINT."""
        self._stopping.set()
        live = [c for c in self._children if c.proc is not None]
        for sig, grace in ((signal.SIGINT, self.stop_grace_s), (signal.SIGTERM, 1.5), (signal.SIGKILL, 5.0)):
            running = [c for c in live if c.proc is not None and c.proc.poll() is None]
            if not running:
                break
            if sig != signal.SIGINT:
                names = ", ".join(c.spec.name for c in running)
                self._event(f"{names} still running: sending {sig.name}")
            for c in running:
                assert c.proc is not None
                _signal_group(c.proc, signal.SIGTERM if sig == signal.SIGINT and not c.reported else sig)
                if sig != signal.SIGKILL:  # a stopped node acts on the signal only once continued
                    _signal_group(c.proc, signal.SIGCONT)
            deadline = time.monotonic() + grace
            # A node that said goodbye has closed its runtime and is only exiting (interpreter and
            # library teardown, slow when the machine is busy): it gets longer before SIGTERM.
            exiting_deadline = deadline + (_EXITING_GRACE_S if sig == signal.SIGINT else 0.0)
            while any(c.proc.poll() is None for c in running if c.proc):
                self._read_heartbeats(time.monotonic())
                now = time.monotonic()
                pending = [c for c in running if c.proc is not None and c.proc.poll() is None]
                if now >= exiting_deadline or (now >= deadline and not all(c.said_goodbye for c in pending)):
                    break
                time.sleep(0.02)
        codes: dict[str, int] = {}
        for c in live:
            assert c.proc is not None
            codes[c.spec.name] = c.proc.wait()
            for r in c.readers:
                r.join(timeout=2.0)
        if self._heartbeats is not None:
            self._heartbeats.close()
            self._heartbeats = None
        for f in self._params_dir.glob("*.yaml"):
            f.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not ours to remove if something else lies there
            self._params_dir.rmdir()
        if self._console is not None:
            for report in self._console.take_drop_reports():
                self._event(report)
            console, self._console = self._console, None
            console.close()
        for entry in self._remote_entries:
            self.registry.unregister(entry)
        self.registry.remove_if_empty()  # no empty graph folders pile up under the runtime dir
        return codes


_EXITING_GRACE_S = 5.0
_ERROR_LINE = re.compile(r"\b(?:ERROR|CRITICAL)\b\s*(?:[\w.]+: )?(.*)")
"""A log line of a node that reports an error (runner.setup_logging's format: level, logger: text)."""


def _plain(value: object) -> object:
    """Mapping proxies and tuples to dicts and lists, for yaml.safe_dump."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}  # type: ignore[attr-defined]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
