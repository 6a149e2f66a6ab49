"""Node types as plugins: what a node type must provide, and how one is found by name.

A node type is any module (or object) with a ``Params`` dataclass, a ``topics(params)`` function
that declares what it subscribes to and publishes, and a ``setup(node, params)`` function that
creates its publishers, subscriptions and timers. Optionally, a ``check(params) -> None`` function
raises :class:`~fusion_stream.errors.ParamError` for what can be judged without starting the node
(a missing or unreadable file, an unknown ``source`` or ``backend``): ``fusion-stream launch`` calls
it for every node before any process starts (relative paths then resolve against the launch
file's folder, as the node's will), so a bad value is refused with its place in the file instead
of a node failing at start-up. ``setup`` should call it too, so the rules live in one place. It
must be cheap (no model loading, no sockets) and must not change anything. It is registered under the entry-point group
:data:`GROUP` in its package's ``pyproject.toml``::

    [project.entry-points."fusion_stream.nodes"]
    counter = "my_package.counter"

so ``fusion-stream launch`` finds it by its ``type:`` and checks its parameters before anything
starts, exactly like the shipped node types, which register the same way. The supervisor starts
every node as ``python -m fusion_stream.runtime.runner <type> ...``, so a plugin module needs no
``__main__`` block of its own.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any, Final, Protocol, cast, runtime_checkable

from fusion_stream.errors import NodeTypeError
from fusion_stream.runtime.node import Node

GROUP: Final = "fusion_stream.nodes"
"""The entry-point group node types register under."""

_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class NodeTopics:
    """The topics a node subscribes to and publishes (after remapping)."""

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


@runtime_checkable
class NodeType(Protocol):
    """What a node type provides (a module satisfies it with three top-level names)."""

    Params: type[Any]

    def topics(self, p: Any, /) -> NodeTopics: ...

    def setup(self, node: Node, p: Any, /) -> None: ...


@cache
def _registered() -> Mapping[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=GROUP)}


def available() -> dict[str, str]:
    """Registered node types: name → the module (or ``module:object``) that implements it."""
    return {name: ep.value for name, ep in sorted(_registered().items())}


def module_of(name: str) -> str:
    """The module a node type lives in (what ``python -m`` would run)."""
    return _entry_point(name).module


def _entry_point(name: str) -> metadata.EntryPoint:
    ep = _registered().get(name) if _NAME_RE.match(name) else None
    if ep is None:
        raise NodeTypeError(
            name,
            f"unknown node type {name!r}; known: {sorted(_registered())}. A node type of another "
            f"package must be registered under the entry-point group {GROUP!r} and that package "
            "installed (README: Writing a node)",
        )
    return ep


def load(name: str) -> NodeType:
    """Import a registered node type and check that it keeps the contract."""
    ep = _entry_point(name)
    try:
        obj = ep.load()
    except ImportError as err:
        raise NodeTypeError(name, f"node type {name!r} ({ep.value}) cannot be imported: {err}") from err
    return check(name, obj, ep.value)


def check(name: str, obj: object, where: str) -> NodeType:
    """``obj`` as a :class:`NodeType`, or a :class:`NodeTypeError` saying which part is missing."""
    params = getattr(obj, "Params", None)
    if not (isinstance(params, type) and dataclasses.is_dataclass(params)):
        raise NodeTypeError(name, f"node type {name!r} ({where}) needs a `Params` dataclass")
    for fn in ("topics", "setup"):
        if not callable(getattr(obj, fn, None)):
            raise NodeTypeError(name, f"node type {name!r} ({where}) needs a function `{fn}`")
    if getattr(obj, "check", None) is not None and not callable(getattr(obj, "check", None)):
        raise NodeTypeError(name, f"node type {name!r} ({where}): `check` must be a function check(params)")
    return cast(NodeType, obj)


def check_params(node_type: NodeType, params: Any) -> None:
    """Run the node type's optional ``check(params)``: a :class:`ParamError` for a value the node
    would refuse at start-up; nothing where the type declares no check."""
    fn: Callable[[Any], None] | None = getattr(node_type, "check", None)
    if fn is not None:
        fn(params)
