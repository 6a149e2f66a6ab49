"""`fusion-stream` command line. Thin: each subcommand calls one library function and prints."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml
from rich.live import Live
from rich.table import Table

from fusion_stream.cli import tools
from fusion_stream.cli.common import (
    GRAPH_HELP,
    add_clock_argument,
    add_graph_argument,
    complete_graphs,
    complete_topics,
    console,
    err_console,
    set_completer,
)
from fusion_stream.core import resources
from fusion_stream.errors import (
    FormatError,
    FusionStreamError,
    GraphAmbiguousError,
    ParamError,
    UsageError,
    is_input_error,
)
from fusion_stream.runtime.introspect import describe, to_jsonable
from fusion_stream.runtime.registry import ENV_GRAPH, GraphInfo, Registry, default_runtime_dir, running_graphs
from fusion_stream.runtime.runner import EXIT_CONFIG, EXIT_FAILED, setup_logging

# Piped output (logs, CI, tests) gets wide lines rather than rich's 80-column wrapping.

GRAPH_COMMANDS = frozenset({"topics", "echo", "hz", "status", "record", "replay", "view", "foxglove"})
"""Commands that talk to a running graph: they take ``--graph`` after the subcommand too, and
without one (nor ``$FUSION_STREAM_GRAPH``) use the one graph running here."""


def _use_running_graph() -> None:
    """No graph named: the one running here becomes this process's graph (children inherit it).
    Several: exit 2 naming them. None: left unset; each command says so, or waits for one."""
    running = running_graphs()
    if len(running) > 1:
        raise GraphAmbiguousError([g.describe() for g in running], str(default_runtime_dir()))
    if running:
        os.environ[ENV_GRAPH] = running[0].name


def _nothing_running(what: str) -> str:
    """What a listing command says when its graph is empty: where it looked, what runs instead."""
    graph = os.environ.get(ENV_GRAPH)
    if not graph:
        return f"no {what}: no graph is running (no live publisher under {default_runtime_dir()})"
    others = [g for g in running_graphs() if g.name != graph]
    where = f"no {what}: nothing is publishing in graph {graph!r} ({Registry(graph=graph).path}); is it running?"
    if others:
        where += f" Running here: {', '.join(g.describe() for g in others)}; e.g. --graph {others[0].name}"
    return where


def _cmd_graphs(args: argparse.Namespace) -> int:
    graphs: list[GraphInfo] = tools.list_graphs()
    if args.json:
        for g in graphs:
            pids = sorted({e.pid for e in g.entries})
            print(
                json.dumps({"graph": g.name, "path": str(g.path), "nodes": g.nodes, "topics": g.topics, "pids": pids})
            )
        return 0
    if not graphs:
        err_console.print(f"no graph is running: no live publisher under {default_runtime_dir()}")
        return 0
    table = Table("graph", "nodes", "topics", box=None)
    for g in graphs:
        table.add_row(g.name, ", ".join(g.nodes), "\n".join(g.topics))
    console.print(table)
    return 0


def _cmd_completion(args: argparse.Namespace) -> int:
    shell = "" if args.shell == "bash" else f" --shell {args.shell}"
    print(f'eval "$(register-python-argcomplete{shell} fusion-stream)"')
    if importlib.util.find_spec("argcomplete") is None:
        err_console.print(
            "argcomplete is not installed here: `pip install 'argcomplete>=3'` (or the package's dev extra), "
            "then put the line above in your shell's start-up file (~/.bashrc)"
        )
    return 0


def _shm_column(threshold: int) -> str:
    """``topics``' shm column: from which array size the topic goes through shared memory."""
    if not threshold:
        return "-"
    return f">= {threshold // 1024} KiB" if threshold % 1024 == 0 else f">= {threshold} B"


def _cmd_topics(args: argparse.Namespace) -> int:
    entries = tools.list_topics() if os.environ.get(ENV_GRAPH) else []
    if args.json:
        for e in entries:
            line = {"topic": e.topic, "type": e.type, "endpoint": e.endpoint, "node": e.node, "pid": e.pid}
            print(json.dumps({**line, "shm_threshold": e.shm_threshold}))
        return 0
    if not entries:
        err_console.print(_nothing_running("topics"))
        return 0
    table = Table("topic", "type", "node", "pid", "endpoint", "shm", box=None)
    for e in entries:
        table.add_row(e.topic, e.type or "?", e.node, str(e.pid), e.endpoint, _shm_column(e.shm_threshold))
    console.print(table)
    return 0


def _cmd_echo(args: argparse.Namespace) -> int:
    for env in tools.echo(args.topic, count=args.count, wait_s=args.wait, idle_timeout_s=args.timeout):
        data = to_jsonable(env.message, array_limit=args.array_limit)
        if args.json:
            print(json.dumps({"topic": env.topic, "seq": env.seq, "pub_ns": env.pub_ns, "message": data}), flush=True)
        else:
            age_ms = (time.time_ns() - env.message.stamp_ns) / 1e6
            print(f"--- {env.topic} #{env.seq}  {describe(env.message)}  age {age_ms:.1f} ms")
            print(yaml.safe_dump(data, sort_keys=False, width=120).rstrip(), flush=True)
    return 0


def _cmd_hz(args: argparse.Namespace) -> int:
    for rate in tools.measure_hz(args.topic, window=args.window, duration_s=args.duration, wait_s=args.wait):
        if rate is None:
            print("no new messages", flush=True)
            continue
        print(
            f"average rate: {rate.rate_hz:.3f}\n\tmin: {rate.min_period_s:.4f}s max: {rate.max_period_s:.4f}s "
            f"std dev: {rate.std_period_s:.5f}s window: {rate.window}  ({rate.bytes_per_s / 1e6:.2f} MB/s)",
            flush=True,
        )
    return 0


def _status_table(rows: list[tools.NodeStatus]) -> Table:
    table = Table("node", "level", "message", "publishes (Hz)", "CPU %", "RSS MB", "errors", box=None)
    colours = {"OK": "green", "WARN": "yellow", "ERROR": "red", "STALE": "dim"}
    for r in rows:
        pubs = ", ".join(f"{t} ({r.rate(t):.1f})" if r.rate(t) is not None else t for t in r.publishes)
        if r.report is None:
            table.add_row(r.node, "[dim]no report[/]", "", pubs, "", "", "")
            continue
        level = r.report.level.name
        message = "; ".join(m for m in (r.busy, r.report.message) if m)
        table.add_row(
            r.node,
            f"[{colours[level]}]{level}[/]",
            message,
            pubs,
            "" if r.cpu_pct is None else f"{r.cpu_pct:.0f}",
            "" if r.rss_mb is None else f"{r.rss_mb:.0f}",
            str(r.report.values.get("errors", "")),
        )
    return table


def _cmd_status(args: argparse.Namespace) -> int:
    rows = tools.collect_status(args.listen) if os.environ.get(ENV_GRAPH) else []
    if args.json:
        for r in rows:
            print(json.dumps({"node": r.node, "publishes": list(r.publishes), "report": to_jsonable(r.report)}))
        return 0
    if not rows:
        err_console.print(_nothing_running("nodes"))
        return 0
    console.print(_status_table(rows))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from fusion_stream.cli.demo import (
        HEADERS,
        NODE_HEADERS,
        TopicStats,
        choose_graph_name,
        load_graph,
        run_demo,
        short_of_cpu,
    )
    from fusion_stream.graph import launch

    def table(stats: dict[str, TopicStats]) -> Table:
        t = Table(*HEADERS, title=f"fusion-stream demo: {args.launch or 'the simulated rig'} over ZeroMQ", box=None)
        for s in stats.values():
            t.add_row(*s.row())
        return t

    loaded = load_graph(args.launch, launch.parse_args(args.args))
    running = {g.name for g in running_graphs()}
    name = choose_graph_name(loaded.graph, running)
    record = f" --graph {name}" if running or os.environ.get(ENV_GRAPH) else ""  # else the only one: found
    console.print(
        f"demo graph [bold]{name}[/]: {args.duration:.0f} s from its first message on every topic; record it from "
        f"another terminal with `fusion-stream{record} record --all -o run.mcap --duration 5`",
        highlight=False,
    )
    with Live(console=console, auto_refresh=False, transient=True) as live:
        result = run_demo(
            args.duration,
            on_update=lambda s: live.update(table(s), refresh=True),
            graph_name=name,
            loaded=loaded,
        )
    console.print(table(result.topics))
    nodes = Table(*NODE_HEADERS, box=None)
    for n in result.nodes.values():
        nodes.add_row(*n.row())
    console.print(nodes)
    total = sum(n.cpu_mean for n in result.nodes.values() if n.cpu_pct)
    console.print(f"CPU of the whole graph: {total:.0f} % of one core (this machine has {os.cpu_count()} cores)")
    if behind := short_of_cpu(result.nodes):
        console.print("[yellow]short of CPU:[/] " + ", ".join(behind))
    console.print("node exit codes: " + ", ".join(f"{k}={v}" for k, v in result.exit_codes.items()))
    if not result.ok:
        err_console.print("\n".join(result.log_tail))
        err_console.print(
            f"[red]demo failed:[/] {result.failure or 'a node exited with an error or a topic was silent'}"
        )
        return EXIT_FAILED
    console.print("[green]ok[/]: every process published, every topic arrived, every node stopped cleanly")
    return 0


def _scenario(args: argparse.Namespace) -> object:
    from fusion_stream.sim import Scenario

    try:
        return Scenario(seed=args.seed, actors=args.actors, condition=args.condition, weather=args.weather)
    except ParamError as err:  # the field's name is the option's
        raise UsageError(f"--{err.key.replace('_', '-')} {err.reason}") from err


def _cmd_sim_snapshot(args: argparse.Namespace) -> int:
    from fusion_stream.sim.snapshot import write_snapshot

    files = write_snapshot(args.output, _scenario(args), args.time, args.calib)  # type: ignore[arg-type]
    for f in files:
        console.print(f"wrote {f}")
    return 0


def _cmd_sim_bag(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from fusion_stream.bag.writer import check_writable
    from fusion_stream.cli.sim_bags import cmd_sim_bags, wants_many
    from fusion_stream.sim.recording import record_sim

    if wants_many(args):
        return cmd_sim_bags(args)
    if args.duration <= 0:
        raise UsageError(f"--duration must be > 0, got {args.duration}")
    out = Path(args.output)
    check_writable(out)
    start_ns = round(args.time * 1e9)
    with Progress(console=console) as progress:
        task = progress.add_task(f"rendering {args.duration:g} s of the rig", total=args.duration)
        writer = record_sim(
            out,
            _scenario(args),  # type: ignore[arg-type]
            start_s=args.time,
            duration_s=args.duration,
            rig_path=args.calib,
            on_message=lambda ns: progress.update(task, completed=min(args.duration, (ns - start_ns) / 1e9)),
        )
    counts = ", ".join(f"{t} {n}" for t, n in sorted(writer.stats.messages.items()))
    console.print(f"wrote {out}: {counts}")
    return 0


def _cmd_calib_from_kitti(args: argparse.Namespace) -> int:
    from fusion_stream.core import calib
    from fusion_stream.core.kitti import rig_file_from_kitti

    size = None
    if args.image_size:
        try:
            w, h = (int(v) for v in args.image_size.lower().split("x"))
        except ValueError:
            raise UsageError(f"--image-size must be WIDTHxHEIGHT (e.g. 1242x375), got {args.image_size!r}") from None
        size = (w, h)
    try:
        rig = rig_file_from_kitti(Path(args.file), Path(args.output), size, args.lidar_height)
    except FormatError as err:
        raise UsageError(str(err)) from err
    table = Table("sensor", "type", "translation (m)", "roll/pitch/yaw (deg)", "time offset (ms)", "details", box=None)
    for row in calib.summary(rig):
        table.add_row(*row)
    console.print(table)
    console.print(f"wrote {args.output}")
    return 0


def _cmd_calib_check(args: argparse.Namespace) -> int:
    from fusion_stream.cli.calib_check import check
    from fusion_stream.core import calib

    rig = calib.load(resources.resolve(args.file))
    table = Table("sensor", "type", "translation (m)", "roll/pitch/yaw (deg)", "time offset (ms)", "details", box=None)
    for row in calib.summary(rig):
        table.add_row(*row)
    console.print(f"rig {rig.name!r} (frame {rig.frame_id}) from {args.file}")
    console.print(table)
    for path, stats in check(rig, args.file, args.output, _scenario(args), args.time):  # type: ignore[arg-type]
        console.print(f"wrote {path}: {stats}")
    return 0


def _cmd_keys_generate(args: argparse.Namespace) -> int:
    from fusion_stream.runtime.security import generate

    made = generate(args.dir, args.hosts)
    for path in made:
        console.print(f"created {path} (secret: keep it on that host only) and {path.with_suffix('.key')}")
    kept = len(args.hosts) - len(made)
    if kept:
        console.print(f"kept {kept} existing key pair(s)")
    return 0


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _cmd_launch(args: argparse.Namespace) -> int:
    from fusion_stream.graph import launch
    from fusion_stream.graph.supervisor import Supervisor

    # Checking the launch file imports every node type and reads its files (seconds on a busy
    # machine): a Ctrl-C meanwhile is noted here and honoured before any process starts.
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _f: received.append(signum)) for sig in _STOP_SIGNALS}
    try:
        graph = launch.load(launch.find(args.file), launch.parse_args(args.args), host=args.host)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        print(f"{signal.Signals(received[0]).name} received while checking the launch file: nothing started")
        return 130
    if args.dry_run:
        console.print(f"graph [bold]{graph.graph}[/] from {graph.path}; args {dict(graph.args)}")
        t = Table("node", "type", "host", "publishes", "subscribes", "respawn", "required", box=None)
        for n in graph.nodes:
            respawn = f"{n.respawn.max_retries}x from {n.respawn.backoff_s:g} s" if n.respawn.enabled else "off"
            t.add_row(
                n.name,
                n.type,
                n.host,
                "\n".join(n.topics.outputs),
                "\n".join(n.topics.inputs),
                respawn,
                "yes" if n.required else "no",
            )
        console.print(t)
        checked = len(graph.on_host(args.host)) if graph.multi_host else len(graph.nodes)
        console.print(f"checked: the parameters of every node, and the files and values of the {checked} that run here")
        console.print("endpoints: ipc:// sockets in the private runtime directory, found through the registry")
        if graph.multi_host:
            console.print("TCP endpoints for the other hosts (nodes on the same host use ipc):")
            for (node, topic), endpoint in graph.endpoints().items():
                host = graph.node(node).host
                readers = [f"{n.name}@{n.host}" for n in graph.nodes if n.host != host and topic in n.topics.inputs]
                read_by = f"read by {', '.join(readers)}" if readers else ""
                console.print(f"  {node:>12} {topic:<28} {endpoint:<24} {read_by}")
            console.print(f"CurveZMQ on TCP: {'keys in ' + graph.keys if graph.keys else 'off (plain TCP)'}")
        return 0
    if args.clock:
        from fusion_stream.runtime.clock import ENV_CLOCK

        os.environ[ENV_CLOCK] = args.clock  # every node inherits it
    return Supervisor(graph, host=args.host).run(args.duration)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fusion-stream", description="streaming sensor fusion over ZeroMQ")
    ap.add_argument(
        "--log-level",
        default="WARNING",
        help="DEBUG, INFO, WARNING or ERROR: what the command logs (default: %(default)s)",
    )
    set_completer(ap.add_argument("--graph", default=None, metavar="NAME", help=GRAPH_HELP), complete_graphs)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("graphs", help="list the graphs running on this machine, with their nodes and topics")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_cmd_graphs)

    p = sub.add_parser("topics", help="list the topics published in the running graph")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_cmd_topics)

    p = sub.add_parser("echo", help="print the messages of a topic")
    set_completer(
        p.add_argument("topic", help="the topic to print, e.g. /detections (`fusion-stream topics` lists them)"),
        complete_topics,
    )
    p.add_argument("--count", "-n", type=int, default=None, help="stop after N messages")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--array-limit", type=int, default=16, help="list arrays up to this many elements (default 16)")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a publisher (default 5)")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many idle seconds")
    p.set_defaults(func=_cmd_echo)

    p = sub.add_parser("hz", help="measure the publishing rate of a topic")
    set_completer(p.add_argument("topic", help="the topic to measure, e.g. /lidar/top/points"), complete_topics)
    p.add_argument(
        "--window", "-w", type=int, default=100, metavar="N", help="rate over the last N messages (default 100)"
    )
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a publisher (default 5)")
    p.set_defaults(func=_cmd_hz)

    p = sub.add_parser("status", help="table of nodes and their health from /diagnostics")
    p.add_argument("--listen", type=float, default=1.5, help="seconds to listen (default 1.5)")
    p.add_argument("--json", action="store_true", help="one JSON object per node")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("launch", help="start a node graph from a launch file")
    p.add_argument("file", help="launch file (YAML), or a shipped graph by name: sim, demo, kitti")
    p.add_argument("args", nargs="*", metavar="ARG:=VALUE", help="override a launch argument")
    p.add_argument("--dry-run", action="store_true", help="validate and print the graph, start nothing")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.add_argument("--host", default="local", help="start only this host's nodes (default: local)")

    add_clock_argument(p, "nodes follow the replay clock on TOPIC (default /clock; `replay --clock`), not wall time")
    p.set_defaults(func=_cmd_launch)

    p = sub.add_parser("keys", help="CurveZMQ keys for multi-host graphs")
    keys_sub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    k = keys_sub.add_parser("generate", help="create a key pair per host in DIR")
    k.add_argument("dir", help="folder for the keys (created 0700; existing pairs are kept)")
    k.add_argument("hosts", nargs="+", metavar="HOST", help="host names of the launch file's `hosts:`")
    k.set_defaults(func=_cmd_keys_generate)

    def scenario_args(p: argparse.ArgumentParser, time_default: float) -> None:
        p.add_argument("--seed", type=int, default=0, help="scenario seed: the same seed is the same world")
        p.add_argument("--time", type=float, default=time_default, metavar="T", help="scenario time (s)")
        p.add_argument("--actors", type=int, default=24, help="vehicles and pedestrians around the ego (1..200)")
        p.add_argument("--condition", choices=["day", "night"], default="day", help="lighting (default: day)")
        p.add_argument("--weather", choices=["clear", "rain", "fog"], default="clear", help="(default: clear)")

    p = sub.add_parser("sim", help="the simulated world")
    sim_sub = p.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    k = sim_sub.add_parser("snapshot", help="write one frame of every sensor plus ground truth to DIR")
    scenario_args(k, 10.0)
    k.add_argument("--calib", default="calib/sim_rig.yaml", help="rig file (default: %(default)s)")
    k.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write the frames into")
    k.set_defaults(func=_cmd_sim_snapshot)
    k = sim_sub.add_parser(
        "bag", help="render the simulated rig straight into an MCAP bag (no processes; deterministic, for eval)"
    )
    scenario_args(k, 100.0)
    k.add_argument("--duration", type=float, default=10.0, metavar="S", help="seconds of bag (default 10)")
    k.add_argument("--calib", default="calib/sim_rig.yaml", help="rig file (default: %(default)s)")
    k.add_argument(
        "-o", "--output", required=True, metavar="FILE.mcap|DIR", help="the bag to write; with --seeds etc. a folder"
    )
    k.add_argument(
        "--seeds",
        default=None,
        metavar="LIST",
        help="many bags, one per seed (100-199 or 4,7,10-12), named sim_seed<N>_<condition>_<weather>.mcap in -o DIR",
    )
    k.add_argument("--conditions", default=None, metavar="LIST", help="many bags: each of these (day,night)")
    k.add_argument("--weathers", default=None, metavar="LIST", help="many bags: each of these (clear,rain,fog)")
    k.add_argument(
        "--workers",
        type=int,
        default=1,
        help="bags rendered in parallel on a local Ray runtime, started and stopped for you (fusion-stream[cluster])",
    )
    k.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="render on this existing Ray cluster (its workers must write -o DIR at the same path)",
    )
    k.set_defaults(func=_cmd_sim_bag)

    p = sub.add_parser("calib", help="rig calibration files")
    calib_sub = p.add_subparsers(dest="calib_command", required=True, metavar="ACTION")
    k = calib_sub.add_parser("check", help="validate a rig file, print it, and draw LiDAR points on each camera")
    k.add_argument("file", help="the rig file (YAML) to check")
    k.add_argument("-o", "--output", default="calib_check", metavar="DIR", help="where PNGs go (default: %(default)s)")
    scenario_args(k, 10.0)
    k.set_defaults(func=_cmd_calib_check)
    k = calib_sub.add_parser("from-kitti", help="convert a KITTI calib.txt (P2, R0_rect, Tr_velo_to_cam) to a rig file")
    k.add_argument("file", help="KITTI calib/NNNNNN.txt (or NNNNNN/calib.txt)")
    k.add_argument("-o", "--output", required=True, metavar="RIG.yaml", help="the rig file to write")
    k.add_argument(
        "--image-size", default=None, metavar="WxH", help="image_2 size (default: read from the frame's image)"
    )
    k.add_argument("--lidar-height", type=float, default=1.73, help="Velodyne height above the road (m)")
    k.set_defaults(func=_cmd_calib_from_kitti)

    p = sub.add_parser("demo", help="run the simulated rig (launch/sim.yaml) and show rates and latency")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    p.add_argument("--launch", default=None, metavar="FILE", help="another launch file (default: launch/sim.yaml)")
    p.add_argument("args", nargs="*", metavar="NAME:=VALUE", help="launch arguments, e.g. weather:=fog seed:=7")
    add_graph_argument(p)
    p.set_defaults(func=_cmd_demo)

    from fusion_stream.cli import bag as cli_bag
    from fusion_stream.cli import model as cli_model
    from fusion_stream.cli import view as cli_view

    cli_model.add_parsers(sub)
    cli_bag.add_parsers(sub)
    cli_view.add_parsers(sub)

    p = sub.add_parser("completion", help="print the line that turns on shell completion (argcomplete)")
    p.add_argument(
        "shell", nargs="?", default="bash", choices=("bash", "zsh", "fish"), help="your shell (default: %(default)s)"
    )
    p.set_defaults(func=_cmd_completion)
    for name in GRAPH_COMMANDS:
        add_graph_argument(sub.choices[name])
    return ap


def _autocomplete(parser: argparse.ArgumentParser) -> None:
    """Shell completion when argcomplete is installed (the dev extra); nothing otherwise. When the
    shell asks for completions, this answers and exits."""
    if importlib.util.find_spec("argcomplete") is not None:
        importlib.import_module("argcomplete").autocomplete(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fusion-stream`` command line with ``argv`` (default: the process's); the exit code."""
    parser = build_parser()
    _autocomplete(parser)
    args, extra = parser.parse_known_args(argv)
    # `launch FILE --duration 30 seed:=7`, `eval BAG --launch F calib:=x`: NAME:=VALUE after an
    # option is still a launch argument
    target = next((name for name in ("args", "files") if hasattr(args, name)), None)
    if extra and target is not None and all(":=" in e and not e.startswith("-") for e in extra):
        setattr(args, target, [*getattr(args, target), *extra])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.graph:
        os.environ[ENV_GRAPH] = args.graph
    setup_logging(args.log_level)
    try:
        if args.command in GRAPH_COMMANDS and not os.environ.get(ENV_GRAPH):
            _use_running_graph()
        if hasattr(args, "model_cmd"):
            return int(args.model_cmd(args, console))
        return int(args.func(args))
    except FusionStreamError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG if is_input_error(err) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `fusion-stream echo ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
