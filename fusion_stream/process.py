"""Start node processes and stop them without leaving orphans.

Stopping escalates SIGINT → SIGTERM → SIGKILL with a timeout at each step, the order a node's
clean-shutdown path expects. (The full supervisor, with respawn and liveness, builds on this.)
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class NodeProcess:
    name: str
    popen: subprocess.Popen[bytes]

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()


def spawn_node(
    module: str,
    name: str,
    params: Mapping[str, object] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> NodeProcess:
    """Run ``python -m <module> --name NAME -p k:=v ...`` as a child process."""
    argv = [sys.executable, "-m", module, "--name", name, *extra_args]
    for key, value in (params or {}).items():
        argv += ["-p", f"{key}:={value}"]
    full_env = {**os.environ, **(env or {})}
    log.debug("starting %s: %s", name, " ".join(argv))
    return NodeProcess(name, subprocess.Popen(argv, env=full_env))


def stop_all(procs: Sequence[NodeProcess], *, grace_s: float = 2.0) -> dict[str, int]:
    """Stop every process (SIGINT, then SIGTERM, then SIGKILL); their exit codes by name."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.returncode is None]
        if not alive:
            break
        for p in alive:
            if sig != signal.SIGINT:
                log.warning("%s did not stop in %.1f s; sending %s", p.name, grace_s, sig.name)
            p.popen.send_signal(sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(p.returncode is None for p in alive):
            time.sleep(0.02)
    for p in procs:
        p.popen.wait()
    return {p.name: int(p.popen.returncode) for p in procs}
