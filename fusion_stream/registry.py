"""Where a running graph says which endpoint serves which topic.

Publishers bind their own socket and write one small JSON file per socket into a private
per-user runtime directory (``$FUSION_STREAM_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/fusion_stream``,
else ``/tmp/fusion_stream-<uid>``), under the graph's name (``$FUSION_STREAM_GRAPH``, default
``default``). Subscribers read the directory, so ``Subscriber("/detections")`` needs no address.
No broker runs: a file is written atomically by its publisher and removed when it closes; files
left by processes that died are ignored and cleaned up by the next reader.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from fusion_stream.errors import TransportError

log = logging.getLogger(__name__)

ENV_RUNTIME_DIR = "FUSION_STREAM_RUNTIME_DIR"
ENV_GRAPH = "FUSION_STREAM_GRAPH"
_MAX_IPC_PATH = 100
_HOSTNAME = socket.gethostname()  # sockaddr_un.sun_path is 108 bytes on Linux, including the NUL


@dataclass(frozen=True, slots=True)
class TopicEntry:
    """One publishing socket: its topic, endpoint and owner."""

    topic: str
    endpoint: str
    type: str
    node: str
    pid: int
    host: str
    src: int
    server_key: str = ""
    """The publisher's CurveZMQ public key (z85) when its endpoint requires CurveZMQ."""

    @property
    def alive(self) -> bool:
        """Whether the owning process still exists (always assumed for other hosts)."""
        if self.host != _HOSTNAME:
            return True
        return _pid_alive(self.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def default_runtime_dir() -> Path:
    """The private per-user directory for sockets and registries (not created here)."""
    explicit = os.environ.get(ENV_RUNTIME_DIR)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "fusion_stream"
    return Path(f"/tmp/fusion_stream-{os.getuid()}")


def _private_dir(path: Path) -> Path:
    """Create ``path`` as 0700, and refuse one owned by someone else or open to others."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as err:
        raise TransportError(f"cannot create runtime directory {path}: {err}") from err
    if st.st_uid != os.getuid():
        raise TransportError(
            f"runtime directory {path} belongs to uid {st.st_uid}, not you ({os.getuid()}); "
            f"set {ENV_RUNTIME_DIR} to a directory of your own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise TransportError(f"runtime directory {path} is writable by others; run `chmod 700 {path}`")
    return path


class Registry:
    """The endpoint registry of one graph in one runtime directory."""

    def __init__(self, runtime_dir: Path | str | None = None, graph: str | None = None) -> None:
        self.runtime_dir = Path(runtime_dir) if runtime_dir is not None else default_runtime_dir()
        self.graph = graph or os.environ.get(ENV_GRAPH) or "default"
        if "/" in self.graph or self.graph.startswith("."):
            raise TransportError(f"invalid graph name {self.graph!r}: no '/' and no leading '.'")
        self.path = self.runtime_dir / self.graph
        self._topics = self.path / "topics"
        self._cache_key: tuple[int, int] | None = None
        self._cache: list[TopicEntry] = []

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    def ensure(self) -> None:
        _private_dir(self.runtime_dir)
        _private_dir(self.path)
        _private_dir(self._topics)

    def ipc_endpoint(self, src: int) -> str | None:
        """A fresh ``ipc://`` endpoint in this graph's directory, or None if the path is too long."""
        self.ensure()
        path = self.path / f"{src:08x}.ipc"
        return f"ipc://{path}" if len(str(path)) <= _MAX_IPC_PATH else None

    def register(self, entry: TopicEntry) -> Path:
        """Publish ``entry``; returns the file to pass to :meth:`unregister`."""
        self.ensure()
        target = self._topics / f"{entry.pid}-{entry.src:08x}.json"
        tmp = target.with_suffix(f".tmp{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(asdict(entry)))
        os.replace(tmp, target)
        return target

    def unregister(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def changed_key(self) -> tuple[int, int] | None:
        """Cheap fingerprint of the directory; differs after any register or unregister."""
        try:
            st = self._topics.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def entries(self, *, include_dead: bool = False) -> list[TopicEntry]:
        """Every registered publisher; entries of dead local processes are removed."""
        key = self.changed_key()
        if key is None:
            return []
        if key != self._cache_key or include_dead:
            self._cache = self._read(include_dead)
            self._cache_key = key if not include_dead else None
        alive = [e for e in self._cache if include_dead or e.alive]
        return sorted(alive, key=lambda e: (e.topic, e.pid, e.src))

    def _read(self, include_dead: bool) -> list[TopicEntry]:
        out: list[TopicEntry] = []
        for path in self._topics.glob("*.json"):
            try:
                entry = TopicEntry(**json.loads(path.read_text()))
            except FileNotFoundError:
                continue  # removed while we listed
            except (OSError, ValueError, TypeError) as err:
                log.warning("ignoring unreadable registry entry %s: %s", path, err)
                continue
            if not include_dead and not entry.alive:
                log.debug("removing registry entry of dead process %d: %s", entry.pid, path)
                path.unlink(missing_ok=True)
                continue
            out.append(entry)
        return out

    def lookup(self, topic: str) -> list[TopicEntry]:
        return [e for e in self.entries() if e.topic == topic]
