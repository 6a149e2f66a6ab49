"""Where a running graph says which endpoint serves which topic.

Publishers bind their own socket and write one small JSON file per socket into a private
per-user runtime directory, under the graph's name (``$FUSION_STREAM_GRAPH``, default
``default``). Subscribers read the directory, so ``Subscriber("/detections")`` needs no address.
No broker runs: a file is written atomically by its publisher and removed when it closes; files
left by processes that died are removed by the next reader, with the dead publisher's ``ipc://``
socket file (only inside the graph directory), its shared-memory segments (``/dev/shm``, named
after the graph and the publisher: :mod:`fusion_stream.runtime.shm`) and the ``params/<pid>``
directory of a dead launcher (:meth:`Registry.params_dir`).

The runtime directory is ``$FUSION_STREAM_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/fusion_stream``,
else ``/tmp/fusion_stream-<uid>``. Whoever owns that directory decides which endpoints a
subscriber connects to, so writers *and readers* trust it only if it is a real directory (not a
symbolic link), owned by the user and writable by nobody else; the same holds for the graph and
``topics`` directories below it (opened with ``O_NOFOLLOW``, checked with ``fstat``, read through
the open descriptors). Anything else is refused with a :class:`TransportError` that names the
fix. Entry files are opened without following links; one that is not a regular file of the user,
is over 64 KiB or does not hold a valid entry (topic name, field types) is skipped and reported
once.

``/tmp`` is shared, so another local user can create ``/tmp/fusion_stream-<uid>`` first. The
fallback is therefore claimed (created 0700) by the first fusion_stream program of the user that
looks for it, and if it is taken (someone else's, a link, or writable by others) every program of
the user moves, with a warning, to ``~/.cache/fusion_stream/run-<hostname>``: a place only the
user can create, found the same way by publishers and subscribers, so they still meet. If that
is not usable either, the error says to set ``FUSION_STREAM_RUNTIME_DIR`` or ``XDG_RUNTIME_DIR``.
"""

from __future__ import annotations

import difflib
import errno
import json
import logging
import os
import secrets
import socket
import stat
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from fusion_stream.core.wire import check_topic
from fusion_stream.errors import WHOLE_FILE, FileKeyError, GraphAmbiguousError, TopicNameError, TransportError
from fusion_stream.runtime.shm import remove_segments

log = logging.getLogger(__name__)

ENV_RUNTIME_DIR = "FUSION_STREAM_RUNTIME_DIR"
ENV_GRAPH = "FUSION_STREAM_GRAPH"
DEFAULT_GRAPH = "default"
"""The graph of a program that names none while no graph runs (publishers create it)."""
MAX_ENTRY_BYTES = 64 * 1024
"""An entry is ~300 bytes; a bigger file is not one of ours and is not read."""
_MAX_IPC_PATH = 100  # sockaddr_un.sun_path is 108 bytes on Linux, including the NUL
_MAX_PID = 2**31 - 1  # pid_t
_HOSTNAME = socket.gethostname()
_TMP = Path("/tmp")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not block
_WARNED: set[Path] = set()
_FIX = f"set {ENV_RUNTIME_DIR} (or XDG_RUNTIME_DIR) to a directory of your own"


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
    shm_threshold: int = 0
    """Arrays of this many bytes or more reach this endpoint through shared memory; 0: none do."""

    @property
    def alive(self) -> bool:
        """Whether the owning process still exists (always assumed for other hosts)."""
        if self.host != _HOSTNAME:
            return True
        return _pid_alive(self.pid)


_FIELDS = frozenset(f.name for f in fields(TopicEntry))
_REQUIRED = frozenset(f.name for f in fields(TopicEntry) if f.default is MISSING)


def entry_from_json(data: object, path: str = "<registry entry>") -> TopicEntry:
    """A :class:`TopicEntry` from the parsed entry file ``path``; a FileKeyError names the field.

    Strict, because a reader acts on every field: the topic is matched and subscribed, the
    endpoint connected, the pid signalled (0 or a negative pid would address process groups)."""
    if not isinstance(data, dict):
        raise FileKeyError(path, WHOLE_FILE, f"not a JSON object but {type(data).__name__}")
    unknown = sorted(str(k)[:40] for k in data if k not in _FIELDS)
    if unknown:
        raise FileKeyError(path, WHOLE_FILE, f"unknown keys {unknown}")
    missing = sorted(_REQUIRED - set(data))
    if missing:
        raise FileKeyError(path, WHOLE_FILE, f"missing keys {missing}")
    for key in ("topic", "endpoint", "type", "node", "host", "server_key"):
        if key in data and not isinstance(data[key], str):
            raise FileKeyError(path, key, f"a string is needed, not {type(data[key]).__name__}")
    for key, top in (("pid", _MAX_PID), ("src", 2**32 - 1), ("shm_threshold", 2**63 - 1)):
        if key not in data:
            continue
        value = data[key]
        if type(value) is not int or not 0 <= value <= top:
            raise FileKeyError(path, key, f"an integer in 0..{top} is needed")
    try:
        check_topic(data["topic"])
    except TopicNameError:
        raise FileKeyError(path, "topic", f"{data['topic'][:80]!r} is not a valid topic name") from None
    if not data["endpoint"].startswith(("ipc://", "tcp://")):
        raise FileKeyError(path, "endpoint", "an ipc:// or tcp:// address is needed")
    if data["host"] == _HOSTNAME and data["pid"] == 0:
        raise FileKeyError(path, "pid", "0 is not a process")
    return TopicEntry(**data)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # kill(0 or -n) signals process groups: never a publisher's pid
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def _untrusted(st: os.stat_result) -> str | None:
    """Why a directory (from lstat/fstat) must not be trusted, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.getuid():
        return f"belongs to uid {st.st_uid}, not you ({os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is writable by others"
    return None


def default_runtime_dir() -> Path:
    """The private per-user directory for sockets and registries.

    The ``/tmp`` fallback is created here (so it is ours from the first look on) and replaced by
    ``~/.cache/fusion_stream/run-<hostname>`` when someone else holds it (module docstring)."""
    explicit = os.environ.get(ENV_RUNTIME_DIR)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "fusion_stream"
    fallback = _TMP / f"fusion_stream-{os.getuid()}"
    try:
        os.mkdir(fallback, 0o700)
    except OSError as err:  # it exists (whose? the lstat below says), or a read-only /tmp
        if not isinstance(err, FileExistsError):
            log.debug("cannot create %s: %s", fallback, err.strerror)
    try:
        problem = _untrusted(os.lstat(fallback)) or ""
    except OSError as err:
        problem = f"cannot be created ({err.strerror})"
    if not problem:
        return fallback
    try:
        alternative = Path.home() / ".cache" / "fusion_stream" / f"run-{_HOSTNAME}"
        _private_dir(alternative)
    except (RuntimeError, KeyError, TransportError) as err:
        raise TransportError(
            f"the runtime directory {fallback} {problem} (another user may have created it), "
            f"and no private alternative in your home directory: {err}; {_FIX}"
        ) from err
    if fallback not in _WARNED:  # once per process, not at every Registry()
        _WARNED.add(fallback)
        log.warning(
            "the runtime directory %s %s (another user may have created it); using %s instead (%s to choose another)",
            fallback,
            problem,
            alternative,
            ENV_RUNTIME_DIR,
        )
    return alternative


def _private_dir(path: Path) -> Path:
    """Create ``path`` as 0700, and refuse a link or one owned by someone else or open to others."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as err:
        raise TransportError(f"cannot create runtime directory {path}: {err}") from err
    problem = _untrusted(st)
    if problem is not None:
        raise TransportError(f"refusing runtime directory {path}: it {problem}; {_fix(problem, path)}")
    return path


def _fix(problem: str, path: Path) -> str:
    if problem == "is writable by others":
        return f"run `chmod 700 {path}` if it is yours, or {_FIX}"
    return _FIX


def _open_dir(path: Path, name: str | Path, dir_fd: int | None = None) -> int | None:
    """Open a directory without following a link, check it is private; None if it is absent."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise TransportError(f"cannot read the registry directory {path}: {err.strerror}") from err
        try:
            link = _untrusted(os.lstat(name, dir_fd=dir_fd)) or "is not a directory"
        except OSError:
            link = "is not a directory"
        raise TransportError(f"refusing registry directory {path}: it {link}; {_fix(link, path)}") from None
    problem = _untrusted(os.fstat(fd))
    if problem is not None:
        os.close(fd)
        raise TransportError(f"refusing registry directory {path}: it {problem}; {_fix(problem, path)}")
    return fd


class Registry:
    """The endpoint registry of one graph in one runtime directory."""

    def __init__(self, runtime_dir: Path | str | None = None, graph: str | None = None) -> None:
        self.runtime_dir = Path(runtime_dir) if runtime_dir is not None else default_runtime_dir()
        self.graph = graph or os.environ.get(ENV_GRAPH) or DEFAULT_GRAPH
        if not valid_graph_name(self.graph):
            raise TransportError(f"invalid graph name {self.graph!r}: no '/' and no leading '.'")
        self.path = self.runtime_dir / self.graph
        self._topics = self.path / "topics"
        self._cache_key: tuple[int, int] | None = None
        self._cache: list[TopicEntry] = []
        self._reported: dict[str, int] = {}  # bad entry file -> its inode, warned about once

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

    def params_dir(self) -> Path:
        """A private directory for this launcher's parameter files, ``params/<pid>``.

        Named by the launcher's pid so a reader's sweep can remove it once that process is gone
        (kill -9 leaves no chance to clean up)."""
        self.ensure()
        _private_dir(self.path / "params")
        return _private_dir(self.path / "params" / str(os.getpid()))

    def register(self, entry: TopicEntry) -> Path:
        """Publish ``entry``; returns the file to pass to :meth:`unregister`."""
        target = self._topics / f"{entry.pid}-{entry.src:08x}.json"
        tmp = target.with_suffix(f".tmp{secrets.token_hex(4)}")
        for attempt in (1, 2):
            self.ensure()
            try:
                tmp.write_text(json.dumps(asdict(entry)))
                break
            except FileNotFoundError:  # the folder of a graph that had ended was just removed
                if attempt == 2:
                    raise
        os.replace(tmp, target)
        return target

    def remove_if_empty(self) -> bool:
        """Remove this graph's folder if nothing is left in it; True if it is gone.

        For a launcher whose graph has ended (every child exited), so that no empty folders pile
        up: its own ``params/<pid>`` goes, dead entries are swept, then each folder is removed
        only if empty (whatever a live process still has there stays)."""
        self.entries()  # sweeps dead entries, their sockets and dead launchers' params
        own = self.path / "params" / str(os.getpid())
        if own.is_dir() and not own.is_symlink():
            for child in own.iterdir():
                if child.is_file() and not child.is_symlink():
                    child.unlink(missing_ok=True)
        for folder in (own, self.path / "params", self._topics, self.path):
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError as err:  # not empty: something of a live process
                log.debug("keeping %s: %s", folder, err.strerror)
                return False
        return True

    def unregister(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def _open(self) -> tuple[int, int] | None:
        """(graph dir fd, topics dir fd), each checked; None while there is no registry yet."""
        root = _open_dir(self.runtime_dir, self.runtime_dir)
        if root is None:
            return None
        try:
            graph = _open_dir(self.path, self.graph, root)
        finally:
            os.close(root)
        if graph is None:
            return None
        try:
            topics = _open_dir(self._topics, "topics", graph)
        except BaseException:
            os.close(graph)
            raise
        if topics is None:
            os.close(graph)
            return None
        return graph, topics

    def changed_key(self) -> tuple[int, int] | None:
        """Cheap fingerprint of the directory; differs after any register or unregister."""
        fds = self._open()
        if fds is None:
            return None
        try:
            st = os.fstat(fds[1])
        finally:
            os.close(fds[0])
            os.close(fds[1])
        return (st.st_mtime_ns, st.st_ino)

    def entries(self, *, include_dead: bool = False) -> list[TopicEntry]:
        """Every registered publisher; entries of dead local processes are removed (a cached
        entry found dead makes the directory be read, and swept, again).

        Raises TransportError when the directories cannot be trusted (module docstring)."""
        fds = self._open()
        if fds is None:
            return []
        graph_fd, topics_fd = fds
        try:
            st = os.fstat(topics_fd)
            key = (st.st_mtime_ns, st.st_ino)
            if key != self._cache_key or include_dead or not all(e.alive for e in self._cache):
                self._cache = self._read(graph_fd, topics_fd, include_dead)
                self._cache_key = key if not include_dead else None
                if not include_dead:
                    self._sweep_params(graph_fd)
        finally:
            os.close(graph_fd)
            os.close(topics_fd)
        return sorted(self._cache, key=lambda e: (e.topic, e.pid, e.src))

    def _skip(self, name: str, ino: int, reason: str) -> None:
        """Report a bad entry file once (per file and inode), not at every read."""
        if self._reported.get(name) != ino:
            self._reported[name] = ino
            log.warning("ignoring registry entry %s: %s", self._topics / name, reason)

    def _load(self, name: str, topics_fd: int) -> TopicEntry | None:
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=topics_fd)
        except FileNotFoundError:
            return None  # removed while we listed
        except OSError as err:
            try:
                ino = os.lstat(name, dir_fd=topics_fd).st_ino
            except OSError:
                return None
            why = "a symbolic link" if err.errno == errno.ELOOP else (err.strerror or str(err))
            self._skip(name, ino, f"cannot open it: {why}")
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self._skip(name, st.st_ino, "not a regular file")
                return None
            if st.st_uid != os.getuid():
                self._skip(name, st.st_ino, f"it belongs to uid {st.st_uid}, not you ({os.getuid()})")
                return None
            if st.st_size > MAX_ENTRY_BYTES:
                self._skip(name, st.st_ino, f"{st.st_size} bytes, more than an entry may have ({MAX_ENTRY_BYTES})")
                return None
            raw = os.read(fd, MAX_ENTRY_BYTES + 1)
        finally:
            os.close(fd)
        try:
            return entry_from_json(json.loads(raw), str(self._topics / name))
        except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError too
            self._skip(name, st.st_ino, _short(err))
            return None

    def _read(self, graph_fd: int, topics_fd: int, include_dead: bool) -> list[TopicEntry]:
        out: list[TopicEntry] = []
        names = [n for n in os.listdir(topics_fd) if n.endswith(".json")]
        for gone in set(self._reported) - set(names):
            del self._reported[gone]
        for name in names:
            entry = self._load(name, topics_fd)
            if entry is None:
                continue
            if not include_dead and not entry.alive:
                log.debug("removing registry entry of dead process %d: %s", entry.pid, name)
                _unlink(name, topics_fd)
                self._remove_socket(entry, graph_fd)
                remove_segments(self.path, entry.src)
                continue
            out.append(entry)
        return out

    def _remove_socket(self, entry: TopicEntry, graph_fd: int) -> None:
        """The ipc socket file of a dead publisher, only if it is this graph's own."""
        name = f"{entry.src:08x}.ipc"
        if entry.endpoint != f"ipc://{self.path / name}":
            return
        try:
            if stat.S_ISSOCK(os.lstat(name, dir_fd=graph_fd).st_mode):
                _unlink(name, graph_fd)
        except FileNotFoundError:
            return

    def _sweep_params(self, graph_fd: int) -> None:
        """Remove ``params/<pid>`` directories of launchers that are gone."""
        try:
            params = _open_dir(self.path / "params", "params", graph_fd)
        except TransportError as err:
            log.warning("not sweeping parameter files: %s", err)
            return
        if params is None:
            return
        try:
            for name in os.listdir(params):
                if name.isascii() and name.isdigit() and not _pid_alive(int(name)):
                    self._remove_params(name, params)
        finally:
            os.close(params)

    def _remove_params(self, name: str, params_fd: int) -> None:
        try:
            fd = _open_dir(self.path / "params" / name, name, params_fd)
        except TransportError as err:  # a link or not ours: leave it alone
            log.debug("not sweeping %s", err)
            return
        if fd is None:
            return
        try:
            for child in os.listdir(fd):
                if stat.S_ISREG(os.lstat(child, dir_fd=fd).st_mode):
                    _unlink(child, fd)
        finally:
            os.close(fd)
        try:
            os.rmdir(name, dir_fd=params_fd)
        except OSError as err:  # something else in it: leave it
            log.debug("cannot remove %s: %s", self.path / "params" / name, err.strerror)
        else:
            log.debug("removed the parameter files of launcher %s, gone", name)

    def lookup(self, topic: str) -> list[TopicEntry]:
        return [e for e in self.entries() if e.topic == topic]


def _short(err: BaseException) -> str:
    """A reason that names what is wrong without echoing the file's content."""
    if isinstance(err, json.JSONDecodeError):
        return f"not JSON ({err.msg} at line {err.lineno} column {err.colno})"
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text (byte {err.start})"
    if isinstance(err, RecursionError):
        return "not JSON we can read (nested too deeply)"
    if isinstance(err, FileKeyError):  # the log line names the file already
        return err.reason if err.key == WHOLE_FILE else f"{err.key}: {err.reason}"
    return str(err)


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return


# --------------------------------------------------------------------------- finding the graph


@dataclass(frozen=True, slots=True)
class GraphInfo:
    """One running graph: its name, folder and live publishers."""

    name: str
    path: Path
    entries: tuple[TopicEntry, ...]

    @property
    def nodes(self) -> list[str]:
        return sorted({e.node or f"pid {e.pid}" for e in self.entries})

    @property
    def topics(self) -> list[str]:
        return sorted({e.topic for e in self.entries})

    def describe(self) -> str:
        """``sim (6 nodes, 9 topics)``: one item of a list of graphs in a message."""
        nodes, topics = len(self.nodes), len(self.topics)
        return f"{self.name} ({nodes} node{'' if nodes == 1 else 's'}, {topics} topic{'' if topics == 1 else 's'})"


def valid_graph_name(name: str) -> bool:
    return bool(name) and "/" not in name and not name.startswith(".") and "\0" not in name


def running_graphs(runtime_dir: Path | str | None = None) -> list[GraphInfo]:
    """The graphs with a live publisher of this host in ``runtime_dir``, sorted by name.

    Reading a graph sweeps its dead entries (as every reader does). A folder left by graphs that
    are gone, or holding only entries of other hosts (a multi-host graph whose local launcher
    died), is not running. Untrusted folders are skipped with a warning (module docstring)."""
    root = Path(runtime_dir) if runtime_dir is not None else default_runtime_dir()
    fd = _open_dir(root, root)
    if fd is None:
        return []
    try:
        names = sorted(n for n in os.listdir(fd) if valid_graph_name(n) and _is_dir(n, fd))
    finally:
        os.close(fd)
    out: list[GraphInfo] = []
    for name in names:
        registry = Registry(root, name)
        try:
            entries = registry.entries()
        except TransportError as err:
            if registry.path not in _WARNED:
                _WARNED.add(registry.path)
                log.warning("skipping graph %s: %s", name, err)
            continue
        if any(e.host == _HOSTNAME for e in entries):
            out.append(GraphInfo(name, registry.path, tuple(entries)))
    return out


def _is_dir(name: str, dir_fd: int) -> bool:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)  # a link is refused with a warning


def explicit_graph(graph: str | None = None) -> str | None:
    """The graph a program was told to use: ``graph``, else ``$FUSION_STREAM_GRAPH``, else None."""
    return graph or os.environ.get(ENV_GRAPH) or None


def find_graph(graph: str | None = None, runtime_dir: Path | str | None = None) -> Registry | None:
    """The registry to talk to: the named graph, ``$FUSION_STREAM_GRAPH``, else the one graph
    running here; None while none runs. Several running: :class:`GraphAmbiguousError` naming them,
    since guessing would show one graph's topics as if they were all there is."""
    name = explicit_graph(graph)
    if name is not None:
        return Registry(runtime_dir, name)
    root = Path(runtime_dir) if runtime_dir is not None else default_runtime_dir()
    running = running_graphs(root)
    if len(running) > 1:
        raise GraphAmbiguousError([g.describe() for g in running], str(root))
    return Registry(root, running[0].name) if running else None


def similar_topics(topic: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The names in ``known`` closest to a mistyped ``topic``, best first."""
    return difflib.get_close_matches(topic, sorted(set(known)), n=n, cutoff=0.75)
