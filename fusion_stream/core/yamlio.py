"""Reading the YAML files users write (launch files, calibration, parameters, topic maps, radar
detection lists): the one bounded way the package reads YAML.

A hostile file must fail fast with a clear error, not hang or exhaust memory. So, before parsing,
only regular files are read (``/dev/zero`` or a FIFO would be read forever) and their size is
bounded; while composing, nesting depth and the number of nodes, counting every alias as the
nodes it stands for, are bounded (a 500-byte "billion laughs" file expands to 10^9 nodes in any
code that walks it). Parse errors give the line, column and problem but never the offending
line's text, which may hold a secret.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, NodeEvent
from yaml.nodes import Node
from yaml.resolver import Resolver

Fail = Callable[[str], Exception]
"""Builds the caller's error from a reason (the caller knows the file and says ``<file>``)."""


@dataclass(frozen=True)
class Limits:
    """What one YAML stream may cost."""

    max_bytes: int = 256 << 10
    """Size of the file (a launch file or calibration is a few KB)."""
    max_depth: int = 40
    """Nesting of collections (ours are < 8 deep; deeper would recurse in every consumer)."""
    max_nodes: int = 50_000
    """Nodes of the whole stream with every alias expanded: what a consumer walking it visits."""
    max_alias_nodes: int = 10_000
    """Nodes reached through aliases (hand-written files share a few small blocks at most)."""
    max_number_chars: int = 256
    """Characters of one int or float scalar (``1:2:3...`` sexagesimal ints cost quadratic time)."""


CONFIG = Limits()
"""Launch files, calibration, parameter files and topic maps."""
ARGUMENT = Limits(max_bytes=64 << 10, max_depth=20, max_nodes=10_000, max_alias_nodes=2_000)
"""One ``key:=value`` from the command line."""
DATA = Limits(max_bytes=32 << 20, max_nodes=4_000_000)
"""Recorded data written by tools (radar detection lists: ~200 KB a scan)."""


class BoundsError(yaml.MarkedYAMLError):
    """The stream is over one of its :class:`Limits` (a YAML error, so it is reported like one)."""


def _guarded(tag: str) -> Callable[[SafeConstructor, Node], Any]:
    """PyYAML's constructor for ``tag``, with a length bound and its ValueError (an int over
    Python's 4300-digit limit, a timestamp with month 13) turned into a YAML error."""
    base = SafeConstructor.yaml_constructors[tag]
    kind = tag.rsplit(":", 1)[-1]

    def construct(loader: SafeConstructor, node: Node) -> Any:
        limit = getattr(loader, "limits", CONFIG).max_number_chars
        if kind in ("int", "float") and isinstance(node.value, str) and len(node.value) > limit:
            raise ConstructorError(None, None, f"{kind} longer than {limit} characters", node.start_mark)
        try:
            return base(loader, node)
        except (ValueError, OverflowError) as err:
            raise ConstructorError(None, None, f"{kind} out of range ({err})", node.start_mark) from err

    return construct


class _BoundedComposer(Composer):
    """Composer that counts depth and nodes (aliases as the size of what they point to) and
    refuses recursive aliases, before the consumer ever sees the data."""

    limits: Limits = CONFIG
    peek_event: Callable[[], Any]  # the parser's (Python or libyaml), next in the class's bases

    def _start_bounds(self) -> None:
        self._nodes = 0
        self._aliased = 0
        self._depth = 0
        self._sizes: dict[str, int] = {}
        self._open: set[str] = set()

    def compose_document(self) -> Node | None:
        self._sizes.clear()  # anchors are per document
        self._open.clear()
        return super().compose_document()  # type: ignore[no-any-return]

    def _refuse(self, problem: str, event: Any) -> BoundsError:
        return BoundsError(None, None, problem, event.start_mark)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        lim = self.limits
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            if event.anchor in self._open:
                raise self._refuse(f"alias *{event.anchor} refers to a node that contains it", event)
            size = self._sizes.get(str(event.anchor), 1)
            self._aliased += size
            self._nodes += size
            if self._aliased > lim.max_alias_nodes:
                raise self._refuse(f"aliases expand to more than {lim.max_alias_nodes} nodes", event)
            if self._nodes > lim.max_nodes:
                raise self._refuse(f"more than {lim.max_nodes} nodes (aliases expanded)", event)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > lim.max_depth:
            raise self._refuse(f"nested more than {lim.max_depth} levels deep", event)
        self._nodes += 1
        if self._nodes > lim.max_nodes:
            raise self._refuse(f"more than {lim.max_nodes} nodes (aliases expanded)", event)
        anchor = event.anchor if isinstance(event, NodeEvent) else None
        before = self._nodes
        if anchor is not None:
            self._open.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open.discard(anchor)
            self._sizes[anchor] = self._nodes - before + 1
        self._depth -= 1
        return node


def _loader_class(libyaml: bool = True) -> Any:
    """libyaml's parser when PyYAML has it (C speed for the radar's large files), else PyYAML's
    own; composing (where the bounds are counted) and constructing are PyYAML's safe ones."""
    try:
        if not libyaml:
            raise ImportError("PyYAML's own parser asked for")
        from yaml._yaml import CParser  # type: ignore[import-not-found]
    except ImportError:
        from yaml.parser import Parser
        from yaml.reader import Reader
        from yaml.scanner import Scanner

        class PyBoundedLoader(Reader, Scanner, Parser, _BoundedComposer, SafeConstructor, Resolver):  # type: ignore[misc]
            def __init__(self, stream: str) -> None:
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                Parser.__init__(self)
                _BoundedComposer.__init__(self)
                SafeConstructor.__init__(self)
                Resolver.__init__(self)

        return _guard_constructors(PyBoundedLoader)

    class CBoundedLoader(_BoundedComposer, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return _guard_constructors(CBoundedLoader)


def _guard_constructors(cls: Any) -> Any:
    for tag in ("int", "float", "timestamp"):
        cls.add_constructor(f"tag:yaml.org,2002:{tag}", _guarded(f"tag:yaml.org,2002:{tag}"))
    return cls


BoundedLoader: Any = _loader_class()


def _loader(text: str, limits: Limits) -> Any:
    loader = BoundedLoader(text)
    loader.limits = limits
    loader._start_bounds()
    return loader


_QUOTED = re.compile(r"'[^']{4,}'|\"[^\"]{4,}\"")


def describe(err: yaml.YAMLError) -> str:
    """What is wrong and where (line, column), without the text of the line: PyYAML's own message
    quotes it, and a line of a config file may hold a password or a key."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = err.problem or err.context or "invalid YAML"
        if err.context and err.problem:
            problem = f"{problem} ({err.context})"
        # a quoted tag or anchor name is file content too: keep single characters only
        what = "refused" if isinstance(err, BoundsError) else "not valid YAML"
        return f"{what}{where}: {_QUOTED.sub('(...)', problem)}"
    if isinstance(err, yaml.reader.ReaderError):
        return f"not valid YAML: unacceptable character #x{err.character:04x} at position {err.position}"
    return f"not valid YAML ({type(err).__name__})"


def load(text: str, fail: Fail, limits: Limits = CONFIG) -> Any:
    """The single YAML document in ``text`` (None if empty), within ``limits``."""
    if len(text) > limits.max_bytes:
        raise fail(f"is {len(text)} characters, more than the {limits.max_bytes} allowed")
    loader = _loader(text, limits)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise fail(describe(err)) from None
    finally:
        loader.dispose()


def load_all(text: str, fail: Fail, limits: Limits = CONFIG) -> Iterator[Any]:
    """Each YAML document in ``text`` in turn; the limits hold for the whole stream."""
    if len(text) > limits.max_bytes:
        raise fail(f"is {len(text)} characters, more than the {limits.max_bytes} allowed")
    loader = _loader(text, limits)
    try:
        while loader.check_data():
            yield loader.get_data()
    except yaml.YAMLError as err:
        raise fail(describe(err)) from None
    finally:
        loader.dispose()


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def _check(st: os.stat_result, fail: Fail, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise fail(f"is a {_kind(st.st_mode)}, not a regular file: give the path of a file")
    if st.st_size > max_bytes:
        raise fail(f"is {st.st_size} bytes, more than the {max_bytes} allowed")


def open_regular(path: Path | str, fail: Fail, *, max_bytes: int, missing: str) -> IO[bytes]:
    """``path`` opened for reading if it is a regular file of at most ``max_bytes``.

    A device (``/dev/zero``), FIFO or directory is refused before it is opened (opening a FIFO
    blocks; reading a device never ends), and checked again on the open file (it may have been
    swapped in between)."""
    try:
        _check(os.stat(path), fail, max_bytes)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise fail(missing) from None
    except OSError as err:
        raise fail(f"cannot read: {err.strerror}") from None
    try:
        _check(os.fstat(fd), fail, max_bytes)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text(path: Path | str, fail: Fail, *, max_bytes: int, missing: str) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``max_bytes`` long."""
    with open_regular(path, fail, max_bytes=max_bytes, missing=missing) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since it was checked
        raise fail(f"is more than the {max_bytes} bytes allowed")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise fail(f"is not UTF-8 text (byte {err.start})") from None


def read(path: Path | str, fail: Fail, *, missing: str, limits: Limits = CONFIG) -> Any:
    """The single YAML document of the file ``path``, within ``limits``."""
    text = read_text(path, fail, max_bytes=limits.max_bytes, missing=missing)
    return load(text, lambda reason: fail(f"cannot read: {reason}"), limits)


def read_mapping(
    path: Path, fail: Fail, *, missing: str, expected: str, empty_ok: bool = False, limits: Limits = CONFIG
) -> Mapping[str, Any]:
    """The mapping at the top of the YAML file ``path``; ``fail(reason)`` for anything else."""
    data = read(path, fail, missing=missing, limits=limits)
    if data is None and empty_ok:
        return {}
    if not isinstance(data, Mapping):
        raise fail(f"must hold a mapping {expected}, got {type(data).__name__}")
    return data
