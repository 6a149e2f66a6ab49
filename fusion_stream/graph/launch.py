"""Launch files: a node graph in YAML, checked completely before anything starts.

```yaml
graph: demo
args: {rate: 10}                      # defaults; `fusion-stream launch FILE rate:=20`; use as ${rate}
external_topics: [/vehicle/odom]      # published outside this graph (optional)
nodes:
  - name: lidar
    type: pattern                     # a registered node type (fusion_stream/nodes/pattern.py)
    params: {kind: points, rate_hz: "${rate}"}
    remap: {/lidar/pattern/points: /lidar/top/points}
    required: true                    # the graph fails if this node fails for good
    respawn: {max_retries: 5, backoff_s: 0.5, backoff_max_s: 8}   # or: respawn: false
    env: {OMP_NUM_THREADS: "1"}
    host: local
```

:func:`load` returns a frozen :class:`LaunchFile` or raises :class:`LaunchError` naming the file
and the key (``nodes[2].params.rate_hz``): unknown node types, duplicate names, bad parameters
(checked against the node's own ``Params``, then by its type's ``check``: files that must exist
and parse, values of a fixed set), and inputs that no node publishes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fusion_stream.core import resources
from fusion_stream.core.wire import check_topic
from fusion_stream.core.yamlio import read_mapping
from fusion_stream.errors import WHOLE_FILE, LaunchError, NodeTypeError, ParamError, UnknownNameError
from fusion_stream.runtime import nodetypes
from fusion_stream.runtime import params as params_mod
from fusion_stream.runtime.nodetypes import NodeTopics

_ARG_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
LOCAL_HOST = "local"


@dataclass(frozen=True)
class RespawnPolicy:
    enabled: bool = True
    max_retries: int = 5
    backoff_s: float = 0.5
    """First wait before a restart; doubled after each failure in a row, up to backoff_max_s."""
    backoff_max_s: float = 8.0
    stable_s: float = 10.0
    """A node that ran this long is healthy again: its retry count starts over."""

    def delay(self, failures: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(0, failures - 1)))


@dataclass(frozen=True)
class NodeSpec:
    """One node of a launch file: its name, type, params, remapping, host and supervision."""

    name: str
    type: str
    params: Mapping[str, Any]
    remap: Mapping[str, str] = field(default_factory=dict)
    host: str = LOCAL_HOST
    required: bool = True
    respawn: RespawnPolicy = RespawnPolicy()
    env: Mapping[str, str] = field(default_factory=dict)
    topics: NodeTopics = field(default_factory=NodeTopics)


@dataclass(frozen=True)
class Supervision:
    """How the supervisor judges liveness (``supervision:`` in the launch file)."""

    heartbeat_timeout_s: float = 5.0
    """A node that sent no /diagnostics for this long is killed and treated as crashed."""
    hang_timeout_s: float = 60.0
    """A node whose watchdog says one callback has run this long is hung: killed and respawned.
    (A slow node still reports: its watchdog sends "busy" heartbeats while a callback runs.)"""
    startup_grace_s: float = 15.0
    """How long a freshly started node may stay silent."""
    stop_grace_s: float = 2.0
    """Wait after SIGINT before SIGTERM at shutdown."""


@dataclass(frozen=True)
class HostSpec:
    """A machine of a multi-host graph: where its nodes' TCP endpoints are bound."""

    name: str
    address: str
    port_base: int = 17100


@dataclass(frozen=True)
class LaunchFile:
    """A checked launch file: its graph name, arguments, nodes, external topics and hosts."""

    path: str
    graph: str
    args: Mapping[str, Any]
    nodes: tuple[NodeSpec, ...]
    external_topics: tuple[str, ...] = ()
    hosts: Mapping[str, HostSpec] = field(default_factory=dict)
    keys: str | None = None
    """CurveZMQ key directory (``security.keys``), resolved against the launch file's folder."""
    supervision: Supervision = Supervision()

    @property
    def multi_host(self) -> bool:
        return bool(self.hosts)

    def endpoints(self) -> dict[tuple[str, str], str]:
        """(node, topic) → ``tcp://`` endpoint for every published topic of a multi-host graph
        (outputs and each node's /diagnostics), numbered from each host's ``port_base`` in file
        order, so every launcher computes the same map without talking to the others."""
        out: dict[tuple[str, str], str] = {}
        next_port = {h.name: h.port_base for h in self.hosts.values()}
        for n in self.nodes:
            host = self.hosts[n.host]
            for topic in (*n.topics.outputs, "/diagnostics"):
                out[(n.name, topic)] = f"tcp://{host.address}:{next_port[host.name]}"
                next_port[host.name] += 1
        return out

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise UnknownNameError("node", name, f"{self.path}: graph {self.graph!r} has no node {name!r}")

    def on_host(self, host: str) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.host == host)


# --------------------------------------------------------------------------- loading


def parse_args(texts: Sequence[str]) -> dict[str, Any]:
    """``["seed:=7", "rate:=20"]`` → ``{"seed": 7, "rate": 20}``."""
    out: dict[str, Any] = {}
    for text in texts:
        key, value = params_mod.parse_override(text)
        out[key] = value
    return out


MAX_SUBSTITUTED_NODES = 50_000
"""Values that ``${arg}`` substitution may put into a launch file, counted as YAML nodes."""
MAX_SUBSTITUTED_CHARS = 64 << 10
"""Characters of the strings it may build: ``"${a}${a}..."`` with a long ``a`` multiplies. Kept
well under yamlio's file limit, as the launcher writes each node's params to a file it reads."""


def _size(value: Any) -> int:
    """Nodes of a (bounded, acyclic: read by yamlio) argument value."""
    if isinstance(value, Mapping):
        return 1 + sum(_size(k) + _size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 1 + sum(_size(v) for v in value)
    return 1


class _Budget:
    """What substitution may still add to the file: each ``${arg}`` counts as what it stands for,
    so one file cannot multiply a large argument into gigabytes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.nodes = MAX_SUBSTITUTED_NODES
        self.chars = MAX_SUBSTITUTED_CHARS
        self._sizes: dict[str, int] = {}

    def spend(self, key: str, nodes: int = 0, chars: int = 0) -> None:
        self.nodes -= nodes
        self.chars -= chars
        if self.nodes < 0 or self.chars < 0:
            raise LaunchError(
                self.path,
                key,
                f"argument substitution expands the file beyond {MAX_SUBSTITUTED_NODES} values or "
                f"{MAX_SUBSTITUTED_CHARS} characters; use fewer or smaller ${{...}} arguments",
            )

    def size(self, args: Mapping[str, Any], name: str) -> int:
        if name not in self._sizes:
            self._sizes[name] = _size(args[name])
        return self._sizes[name]


def _substitute(value: Any, args: Mapping[str, Any], path: str, key: str, budget: _Budget | None = None) -> Any:
    budget = budget or _Budget(path)
    if isinstance(value, str):
        whole = _ARG_RE.fullmatch(value)
        if whole:  # "${rate}" alone keeps the argument's type
            name = whole.group(1)
            if name not in args:
                raise LaunchError(path, key, f"unknown argument ${{{name}}}; declared: {sorted(args)}")
            budget.spend(key, nodes=budget.size(args, name))
            return args[name]

        parts: list[str] = []
        for m in _ARG_RE.finditer(value):
            if m.group(1) not in args:
                raise LaunchError(path, key, f"unknown argument ${{{m.group(1)}}}; declared: {sorted(args)}")
            parts.append(str(args[m.group(1)]))
            budget.spend(key, chars=len(parts[-1]))
        budget.spend(key, nodes=1, chars=len(value))
        it = iter(parts)
        return _ARG_RE.sub(lambda _: next(it), value) if parts else value
    if isinstance(value, Mapping):
        budget.spend(key, nodes=1)
        return {k: _substitute(v, args, path, f"{key}.{k}", budget) for k, v in value.items()}
    if isinstance(value, list):
        budget.spend(key, nodes=1)
        return [_substitute(v, args, path, f"{key}[{i}]", budget) for i, v in enumerate(value)]
    budget.spend(key, nodes=1)
    return value


def find(name_or_path: Path | str) -> Path:
    """A launch file by path, or a shipped graph by name (``sim`` → the package's ``launch/sim.yaml``)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix or len(path.parts) != 1:
        return path
    shipped = resources.shipped("launch", f"{path.name}.yaml")
    if shipped.exists():
        return shipped
    raise LaunchError(
        str(path), WHOLE_FILE, f"no such launch file, nor a shipped graph of that name; shipped: {shipped_graphs()}"
    )


def shipped_graphs() -> list[str]:
    """The names of the launch graphs that come with the package."""
    return resources.shipped_names("launch", ".yaml")


def _expect(cond: bool, path: str, key: str, reason: str) -> None:
    if not cond:
        raise LaunchError(path, key, reason)


def _respawn(raw: Any, path: str, key: str) -> RespawnPolicy:
    if raw is None or raw is True:
        return RespawnPolicy()
    if raw is False:
        return RespawnPolicy(enabled=False)
    _expect(isinstance(raw, Mapping), path, key, "must be true, false or a mapping")
    try:
        policy = params_mod.convert(RespawnPolicy, raw, path=path)
    except ParamError as err:
        raise LaunchError(path, f"{key}.{err.key}", err.reason) from err
    _expect(
        policy.max_retries >= 0 and policy.backoff_s > 0 and policy.backoff_max_s >= policy.backoff_s,
        path,
        key,
        "needs max_retries >= 0 and 0 < backoff_s <= backoff_max_s",
    )
    return policy


def _node(raw: Any, i: int, args: Mapping[str, Any], path: str, budget: _Budget) -> NodeSpec:
    where = f"nodes[{i}]"
    _expect(isinstance(raw, Mapping), path, where, "each node must be a mapping")
    known = {"name", "type", "params", "remap", "host", "required", "respawn", "env"}
    for k in raw:
        _expect(k in known, path, f"{where}.{k}", f"unknown key; known: {sorted(known)}")
    name = raw.get("name")
    _expect(
        isinstance(name, str) and bool(_NAME_RE.match(name)),
        path,
        f"{where}.name",
        f"needs a name of letters, digits, '_' or '-', got {name!r}",
    )
    where = f"nodes[{i}] ({name})"
    node_type = raw.get("type")
    _expect(isinstance(node_type, str), path, f"{where}.type", "missing node type")
    try:
        module = nodetypes.load(node_type)
    except NodeTypeError as err:
        raise LaunchError(path, f"{where}.type", str(err)) from err
    params = _substitute(raw.get("params") or {}, args, path, f"{where}.params", budget)
    _expect(isinstance(params, Mapping), path, f"{where}.params", "must be a mapping")
    try:
        typed = params_mod.convert(module.Params, params, path=path)
    except ParamError as err:
        raise LaunchError(path, f"{where}.params.{err.key}", err.reason) from err
    remap = _substitute(raw.get("remap") or {}, args, path, f"{where}.remap", budget)
    _expect(isinstance(remap, Mapping), path, f"{where}.remap", "must map topic names to topic names")
    for a, b in remap.items():
        try:
            check_topic(a)
            check_topic(b)
        except ValueError as err:
            raise LaunchError(path, f"{where}.remap", str(err)) from err
    declared = module.topics(typed)
    topics = NodeTopics(
        tuple(remap.get(t, t) for t in declared.inputs), tuple(remap.get(t, t) for t in declared.outputs)
    )
    env = raw.get("env") or {}
    _expect(
        isinstance(env, Mapping) and all(isinstance(v, str | int | float) for v in env.values()),
        path,
        f"{where}.env",
        "must map names to strings",
    )
    host = raw.get("host", LOCAL_HOST)
    _expect(isinstance(host, str) and bool(host), path, f"{where}.host", "must be a host name")
    required = raw.get("required", True)
    _expect(isinstance(required, bool), path, f"{where}.required", "must be true or false")
    return NodeSpec(
        name=name,
        type=node_type,
        params=MappingProxyType(dict(params)),
        remap=MappingProxyType(dict(remap)),
        host=host,
        required=required,
        respawn=_respawn(raw.get("respawn"), path, f"{where}.respawn"),
        env=MappingProxyType({k: str(v) for k, v in env.items()}),
        topics=topics,
    )


def load(
    path: Path | str,
    overrides: Mapping[str, Any] | None = None,
    *,
    check_nodes: bool = True,
    host: str = LOCAL_HOST,
) -> LaunchFile:
    """Read and validate a launch file; ``overrides`` replace declared argument defaults.

    ``check_nodes``: also run the node type's ``check`` (its files exist and parse, its values are
    known) of every node that runs on ``host`` (a multi-host graph's files are on the machines
    that read them). False for a reader that only borrows settings (``eval`` reads the sync and
    fusion parameters of a graph whose sensor folders need not exist on this machine)."""
    path = Path(path)
    where = str(path)
    raw = read_mapping(
        path,
        lambda reason: LaunchError(where, "<file>", reason),
        missing="no such launch file",
        expected="with graph, nodes",
    )
    for k in raw:
        _expect(
            k in {"graph", "args", "nodes", "external_topics", "hosts", "security", "supervision"},
            where,
            k,
            "unknown key; known: args, external_topics, graph, hosts, nodes, security, supervision",
        )
    raw_args = raw.get("args") or {}
    _expect(isinstance(raw_args, Mapping), where, "args", "must map argument names to default values")
    args = dict(raw_args)
    for k in args:
        _expect(
            isinstance(k, str) and bool(_ARG_RE.fullmatch(f"${{{k}}}")),
            where,
            f"args.{k}",
            "argument names are letters, digits and '_' (used as ${name})",
        )
    for k, v in (overrides or {}).items():
        _expect(k in args, where, f"args.{k}", f"unknown argument {k!r} on the command line; declared: {sorted(args)}")
        args[k] = v
    graph = raw.get("graph", path.stem)
    _expect(isinstance(graph, str) and bool(_NAME_RE.match(graph)), where, "graph", f"invalid graph name {graph!r}")
    raw_nodes = raw.get("nodes")
    _expect(isinstance(raw_nodes, list) and bool(raw_nodes), where, "nodes", "must be a non-empty list")
    assert isinstance(raw_nodes, list)
    budget = _Budget(where)
    nodes = tuple(_node(n, i, args, where, budget) for i, n in enumerate(raw_nodes))
    seen: dict[str, int] = {}
    for i, n in enumerate(nodes):
        _expect(
            n.name not in seen,
            where,
            f"nodes[{i}].name",
            f"duplicate node name {n.name!r} (also nodes[{seen.get(n.name)}])",
        )
        seen[n.name] = i
    hosts = _hosts(raw.get("hosts"), where)
    for i, n in enumerate(nodes):
        if hosts:
            _expect(
                n.host in hosts,
                where,
                f"nodes[{i}] ({n.name}).host",
                f"unknown host {n.host!r}; hosts: {sorted(hosts)}",
            )
    keys = None
    security = raw.get("security")
    if security is not None:
        _expect(
            isinstance(security, Mapping) and isinstance(security.get("keys"), str),
            where,
            "security",
            "must be {keys: DIRECTORY} (made by `fusion-stream keys generate DIRECTORY HOST ...`)",
        )
        assert isinstance(security, Mapping)
        _expect(bool(hosts), where, "security", "CurveZMQ protects TCP links between hosts: declare hosts first")
        keys = str((path.parent / security["keys"]).resolve())
    if check_nodes:
        for i, n in enumerate(nodes):
            if n.host == host:
                _check_node(n, f"nodes[{i}] ({n.name})", path)
    external = _external_topics(raw.get("external_topics"), where)
    published = {t for n in nodes for t in n.topics.outputs} | set(external)
    for i, n in enumerate(nodes):
        for t in n.topics.inputs:
            _expect(
                t in published,
                where,
                f"nodes[{i}] ({n.name})",
                f"subscribes to {t}, which no node publishes (add it to external_topics if it comes from outside)",
            )
    try:
        supervision = params_mod.convert(Supervision, raw.get("supervision") or {}, path=where)
    except ParamError as err:
        raise LaunchError(where, f"supervision.{err.key}", err.reason) from err
    return LaunchFile(where, graph, MappingProxyType(args), nodes, external, MappingProxyType(hosts), keys, supervision)


def _check_node(node: NodeSpec, where: str, path: Path) -> None:
    """The node type's own ``check`` of its parameters, with relative paths resolved as the node
    will resolve them (the launch file's folder first): what it would refuse at start-up."""
    module = nodetypes.load(node.type)  # loaded (and cached) by _node already
    try:
        typed = params_mod.convert(module.Params, node.params, path=str(path))
        with resources.launch_folder(path.resolve().parent):
            nodetypes.check_params(module, typed)
    except ParamError as err:
        raise LaunchError(str(path), f"{where}.params.{err.key}", err.reason) from err


def _external_topics(raw: Any, path: str) -> tuple[str, ...]:
    """``external_topics``: a list of topic names (anything else was a traceback further on)."""
    if raw is None:
        return ()
    _expect(isinstance(raw, list), path, "external_topics", "must be a list of topic names")
    for i, t in enumerate(raw):
        _expect(isinstance(t, str), path, f"external_topics[{i}]", f"must be a topic name, got a {type(t).__name__}")
        try:
            check_topic(t)
        except ValueError as err:
            raise LaunchError(path, f"external_topics[{i}]", str(err)) from err
    return tuple(raw)


def _hosts(raw: Any, path: str) -> dict[str, HostSpec]:
    if raw is None:
        return {}
    _expect(isinstance(raw, Mapping), path, "hosts", "must map host names to {address, port_base}")
    hosts = {}
    for name, spec in raw.items():
        _expect(
            isinstance(spec, Mapping) and isinstance(spec.get("address"), str),
            path,
            f"hosts.{name}",
            "needs an address",
        )
        port = spec.get("port_base", 17100)
        _expect(
            isinstance(port, int) and 1024 <= port < 65000,
            path,
            f"hosts.{name}.port_base",
            "must be a port number in 1024..64999",
        )
        hosts[str(name)] = HostSpec(str(name), spec["address"], port)
    return hosts
