"""`fusion-stream record | replay | bag info|recover|convert | eval`: recording and offline work.

Bad input (a damaged bag, an unknown topic, a broken topic map) exits with code 2 and one line
naming the file and the problem."""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.progress import Progress
from rich.table import Table

from fusion_stream.cli.common import (
    add_clock_argument,
    complete_topics,
    progress_bar,
    set_completer,
    sigterm_as_interrupt,
    stop_on_signals,
)
from fusion_stream.core import resources
from fusion_stream.errors import (
    FileKeyError,
    FormatError,
    FusionStreamError,
    GraphNotFoundError,
    TopicNotFoundError,
    TransportError,
    UsageError,
)
from fusion_stream.infer.artifacts import PRECISIONS
from fusion_stream.runtime.params import parse_override
from fusion_stream.runtime.registry import (
    ENV_GRAPH,
    Registry,
    default_runtime_dir,
    find_graph,
    running_graphs,
    similar_topics,
)
from fusion_stream.runtime.runner import EXIT_CONFIG, EXIT_FAILED

if TYPE_CHECKING:  # the evaluation (and numpy, onnxruntime) load only when a command needs them
    from fusion_stream.eval.bag_eval import EvalSetup

_PIPED = not sys.stdout.isatty()
console = Console(soft_wrap=_PIPED, width=1 << 16 if _PIPED else None)
"""Not on a terminal (a pipe, a file), nothing is wrapped nor cut to fit 80 columns: a script or a
log gets every type name whole (tables still take only the width they need)."""
err_console = Console(stderr=True)


def _bad_input(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (FormatError, FileKeyError, UsageError) as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_CONFIG

    return wrapped


def _progress() -> Progress:
    return progress_bar(err_console)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


# --------------------------------------------------------------------------- record


def _cmd_record(args: argparse.Namespace) -> int:
    from fusion_stream.bag.recorder import Recorder
    from fusion_stream.bag.writer import BagWriter, check_writable
    from fusion_stream.runtime.node import DIAGNOSTICS_TOPIC, Node

    out = Path(args.output)
    check_writable(out)
    if not args.topics and not args.all:
        raise UsageError("name the topics to record, or record all of them (--all)")
    writer = BagWriter(  # checks its arguments; the file is created with the first message
        out,
        compression=args.compression,
        split_bytes=None if args.split_size is None else int(args.split_size * 1e6),
        split_s=args.split_duration,
        markers=not args.no_markers,
    )
    rig = None
    if args.calib:
        from fusion_stream.core import calib

        try:
            rig = calib.load(resources.resolve(args.calib))
        except FusionStreamError as err:
            raise UsageError(f"--calib: {err}") from err
    graph = _wait_for_publishers(args.topics, args.wait, exclude=args.exclude)  # mistakes first, then the wait
    err_console.print(f"recording graph {graph.graph!r} ({graph.path})", highlight=False)
    if rig is not None:
        writer.write_tf_static(rig, time.time_ns())
    node = Node("recorder", handle_signals=False)
    stop_on_signals(node.request_stop)
    try:
        recorder = Recorder(node, writer, args.topics, all_topics=args.all, exclude=args.exclude)
        end = None if args.duration is None else time.monotonic() + args.duration

        def table() -> Table:
            stats = recorder.summary()
            elapsed = max(time.monotonic() - stats.started, 1e-9)
            t = Table(
                "topic",
                "messages",
                "rate Hz",
                "dropped",
                box=None,
                title=f"recording {out}  {_size(stats.bytes)}  {elapsed:.0f} s",
            )
            for topic in recorder.topics:
                n = stats.messages.get(topic, 0)
                t.add_row(topic, str(n), f"{n / elapsed:.1f}", str(stats.lost.get(topic, 0)))
            return t

        with Live(table(), console=err_console, refresh_per_second=2, transient=not err_console.is_terminal) as live:
            while not node.stop_event.is_set():
                if end is not None and time.monotonic() >= end:
                    node.request_stop("duration elapsed")
                    break
                node.spin_once(0.1)
                live.update(table())
    finally:
        node.close()
        writer.close()
    stats = recorder.summary()
    print(_record_summary(writer.stats.files, stats.messages))
    if stats.total_lost:
        print(
            f"warning: {stats.total_lost} messages were dropped before they reached the recorder: {dict(stats.lost)}",
            file=sys.stderr,
        )
    if sum(stats.failed.values()):
        print(
            f"warning: {sum(stats.failed.values())} messages could not be written: {dict(stats.failed)}",
            file=sys.stderr,
        )
    others = sum(n for t, n in stats.messages.items() if t != DIAGNOSTICS_TOPIC or DIAGNOSTICS_TOPIC in args.topics)
    if not others:
        print(
            f"error: nothing but /diagnostics was recorded: no message on {', '.join(recorder.topics) or 'any topic'} "
            f"arrived from graph {graph.graph!r} in {time.monotonic() - stats.started:.0f} s",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def _record_summary(files: list[Path], received: Mapping[str, int]) -> str:
    """What the written files hold (read back from them, so it agrees with ``bag info``), and
    which of their topics the recorder added for viewers rather than received."""
    from fusion_stream.bag.reader import Bag

    if not files:
        return "recorded nothing: no message was received, no file written"
    in_files: Counter[str] = Counter()
    size = 0
    for f in files:
        with Bag(f) as bag:
            info = bag.info()
        size += info.size_bytes
        in_files.update({t.topic: t.count for t in info.topics})
    line = (
        f"recorded {sum(in_files.values())} messages on {len(in_files)} topics, {_size(size)} → "
        f"{', '.join(str(f) for f in files)}"
    )
    added = {t: n for t, n in sorted(in_files.items()) if t not in received}
    if added:
        line += (
            f"\n  of which added for viewers: {', '.join(f'{t} ({n})' for t, n in added.items())}; "
            f"received from the graph: {sum(received.values())} messages on {len(received)} topics"
        )
    return line


def _wait_for_publishers(topics: list[str], wait_s: float, *, exclude: list[str]) -> Registry:
    """The graph to record, once it publishes what is asked (each of ``topics``; with none named,
    anything at all): up to ``wait_s`` seconds (0: forever), else TransportError saying where it
    looked and what is published there. It becomes this process's graph (the recorder node's)."""
    deadline = None if wait_s == 0 else time.monotonic() + wait_s
    while True:
        registry = find_graph()
        published = set() if registry is None else {e.topic for e in registry.entries()} - set(exclude)
        missing = [t for t in topics if t not in published]
        if registry is not None and published and not missing:
            os.environ[ENV_GRAPH] = registry.graph
            return registry
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if registry is None:
        raise GraphNotFoundError(str(default_runtime_dir()), wait_s)
    known = sorted(published)
    if missing:
        raise TopicNotFoundError(
            missing[0], str(registry.path), published=known, similar=similar_topics(missing[0], known)
        )
    others = [g.describe() for g in running_graphs() if g.name != registry.graph]
    raise TransportError(
        f"nothing to record: nothing is published in graph {registry.graph!r} ({registry.path}) after {wait_s:g} s"
        + (f"; running here: {', '.join(others)} (--graph NAME)" if others else "")
        + "; `--wait 0` waits until something is"
    )


# --------------------------------------------------------------------------- bag


def _cmd_bag_info(args: argparse.Namespace) -> int:
    from fusion_stream.bag.reader import RATE_METHOD, Bag, recover_hint

    with Bag(args.file) as bag:
        info = bag.info()
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(info.path),
                    "format": info.format,
                    "size_bytes": info.size_bytes,
                    "duration_s": info.duration_s,
                    "start_ns": info.start_ns,
                    "end_ns": info.end_ns,
                    "messages": info.message_count,
                    "indexed": info.indexed,
                    "compression": info.compression,
                    "problem": info.problem,
                    "topics": [
                        {"topic": t.topic, "type": t.typename, "count": t.count, "rate_hz": t.rate_hz}
                        for t in info.topics
                    ],
                    "rate_method": RATE_METHOD,
                }
            )
        )
        return 0
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.start_ns / 1e9)) if info.start_ns else "-"
    console.print(
        f"[bold]{info.path}[/]  {info.format}, {_size(info.size_bytes)}"
        + (f", {info.compression}" if info.compression else "")
    )
    console.print(f"duration {info.duration_s:.3f} s from {start} UTC, {info.message_count} messages")
    table = Table("topic", "type", "count", "rate Hz", box=None)
    for t in info.topics:
        table.add_row(t.topic, t.typename, str(t.count), "-" if t.rate_hz is None else f"{t.rate_hz:.2f}")
    console.print(table)
    console.print(f"rate Hz: {RATE_METHOD}, the same for every bag format")
    if not info.indexed:
        console.print(
            f"[yellow]not finished: the file has no index (its recorder was killed?). "
            f"{info.problem.rstrip('.') + '.' if info.problem else 'All records read.'} {recover_hint(info.path)}.[/]"
        )
    return 0


def _cmd_bag_recover(args: argparse.Namespace) -> int:
    from fusion_stream.bag.recover import recover

    result = recover(args.file, args.output)
    print(
        f"recovered {result.messages} messages on {result.channels} channels → {result.output} "
        f"(read stopped at: {result.stopped_at})"
    )
    return 0


def _load_map(path: str | None) -> Any:
    from fusion_stream.bag.mapping import TopicMap, load_map

    return load_map(path) if path else TopicMap()


def _cmd_bag_convert(args: argparse.Namespace) -> int:
    from fusion_stream.bag.transcode import convert_bag

    tmap = _load_map(args.map)
    with _progress() as progress:
        task = progress.add_task(f"converting {Path(args.input).name}", total=None, info="")
        stats = convert_bag(
            args.input,
            args.output,
            topic_map=tmap,
            compression=args.compression,
            on_progress=lambda n, total: progress.update(task, completed=n, total=total),
        )
    print(
        f"{args.output}: {sum(stats.converted.values())} messages converted to fusion_stream types "
        f"{dict(stats.converted) or ''}, {sum(stats.copied.values())} copied as they were"
    )
    if stats.failed:
        print(
            f"warning: {sum(stats.failed.values())} messages did not convert and were left out: {dict(stats.failed)}",
            file=sys.stderr,
        )
    return 0


# --------------------------------------------------------------------------- replay


def _cmd_replay(args: argparse.Namespace) -> int:
    from fusion_stream.bag.replay import Replayer, ReplayOptions

    remap = {str(k): str(v) for k, v in (parse_override(r) for r in args.remap)}
    options = ReplayOptions(
        rate=args.rate,
        loop=args.loop,
        start_s=args.start,
        duration_s=args.duration,
        topics=args.topics or None,
        remap=remap,
        lockstep=args.lockstep,
        reference_topic=args.lockstep_topic,
        ack_topic=args.ack_topic,
        clock_topic=args.clock,
    )
    stop = threading.Event()
    stop_on_signals(lambda _reason: stop.set())
    with Replayer(args.file, options, topic_map=_load_map(args.map)) as replayer:
        info = replayer.info
        if not replayer.selected:
            raise UsageError(f"{info.path}: nothing to replay: no topic has a type fusion_stream can publish")
        total = sum(t.count for t in info.topics if t.topic in replayer.selected)
        with _progress() as progress:
            task = progress.add_task(
                f"replaying {info.path.name} ×{args.rate:g}{' lockstep' if args.lockstep else ''}", total=total, info=""
            )

            def advance(_item: object) -> None:
                progress.advance(task)
                if progress.tasks[task].completed >= total and options.loop:
                    progress.reset(task)

            stats = replayer.run(stop, advance)
    sent = sum(stats.published.values())
    print(
        f"published {sent} messages on {len(stats.published)} topics"
        + (f", {stats.loops} loops" if stats.loops else "")
    )
    if stats.stream.skipped_types:
        print(f"skipped (no fusion_stream type): {dict(stats.stream.skipped_types)}")
    if stats.stream.failed:
        print(
            f"warning: {sum(stats.stream.failed.values())} messages did not decode: {dict(stats.stream.failed)}",
            file=sys.stderr,
        )
    if stats.ack_timeouts:
        print(f"warning: lockstep waited in vain {stats.ack_timeouts} times for {options.ack_topic}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- eval


def _eval_setup(opts: dict[str, Any]) -> EvalSetup:
    """The evaluation set-up (sync and model from the launch graph) the eval options describe."""
    from fusion_stream.eval.bag_eval import setup_from_launch

    return setup_from_launch(
        opts["launch"],
        weights=opts["model"],
        backend=opts["backend"],
        args=opts["launch_args"],
        precision=opts["precision"],
    )


def _eval_one(job: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """Evaluate one bag in this process and write its report (many bags: ``_eval_fleet``)."""
    from fusion_stream.core import calib
    from fusion_stream.eval.bag_eval import evaluate_bag
    from fusion_stream.eval.html import write_report

    path, opts = job
    setup = _eval_setup(opts)
    detections = opts["detections"]
    result = evaluate_bag(
        path,
        setup,
        topic_map=_load_map(opts["map"]),
        threads=opts["threads"],
        on_progress=opts.get("progress"),
        detections_out=detections,
    )
    out = Path(opts["output"])
    rig = calib.load(resources.resolve(setup.calib))
    metrics_path, report_path = write_report(
        result, out, rig=rig, classes=result.classes, inputs=dict(setup.inputs), frames=opts["frames"]
    )
    return {
        "bag": path,
        "metrics": str(metrics_path),
        "report": str(report_path),
        "summary": result.metrics,
        "detections": None if detections is None else str(detections),
    }


def _cmd_eval(args: argparse.Namespace) -> int:
    from fusion_stream.eval.bag_list import expand_bags
    from fusion_stream.graph import launch

    launch_args = launch.parse_args([f for f in args.files if ":=" in f])
    bags = expand_bags([f for f in args.files if ":=" not in f])
    if args.workers < 1:
        raise UsageError(f"--workers: must be at least 1, got {args.workers}")
    threads = args.threads
    if threads == 0:
        # the cores shared between the workers, and named: given 0, ONNX Runtime's idle threads spin
        # and take the core from the thread reading and syncing the bag (2.4x against 1.8-2.0x real
        # time on 2 cores)
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    opts = {
        "launch": args.launch,
        "launch_args": launch_args,
        "model": args.model,
        "backend": args.backend,
        "precision": args.precision,
        "map": args.map,
        "threads": threads,
        "output": args.output,
        "frames": args.frames,
        "detections": args.detections,
    }
    if args.detections is not None and Path(args.detections).suffix != ".mcap":
        raise UsageError(f"--detections {args.detections}: the output must end in .mcap")
    if len(bags) > 1 or args.ray_address:
        if args.detections is not None:
            raise UsageError("--detections writes the detections of one bag; name one bag")
        return _eval_fleet(args, bags, opts)
    with _progress() as progress:
        task = progress.add_task(f"evaluating {bags[0].name}", total=None, info="")
        opts["progress"] = functools.partial(_update, progress, task)
        r = _eval_one((str(bags[0]), opts))
    if "model_warning" in r["summary"]:
        print(f"warning: {r['summary']['model_warning']}", file=sys.stderr)
    _print_bag(r["bag"], r["summary"])
    print(f"  → {r['metrics']}, {r['report']}" + (f", {r['detections']}" if r["detections"] else ""))
    return 0


def _print_bag(bag: str, m: dict[str, Any]) -> None:
    if "nuscenes" in m:
        print(
            f"{bag}: mAP {m['nuscenes']['mAP']:.3f} NDS {m['nuscenes']['NDS']:.3f} "
            f"KITTI BEV {_num(m['kitti_bev']['mAP'])} 3D {_num(m['kitti_3d']['mAP'])} "
            f"over {m['frames_with_ground_truth']} sets"
        )
    else:
        print(f"{bag}: {m['ground_truth']}")
    lat = m["latency_ms"]["total"]
    if lat:
        print(
            f"  latency per set p50 {lat['p50']:.1f} ms p99 {lat['p99']:.1f} ms; {m['speed_x_realtime']:.1f}× real time"
        )


def _eval_fleet(args: argparse.Namespace, bags: list[Path], opts: dict[str, Any]) -> int:
    """Many bags: one report over all of them (``eval.fleet``), on Ray with ``--workers N > 1``
    or ``--ray-address``; a bag that fails is reported and the others go on."""
    from fusion_stream.eval.fleet import FleetJob, evaluate_fleet
    from fusion_stream.runtime.ray_runtime import CLUSTER_EXTRA, ray_available

    if (args.workers > 1 or args.ray_address) and not ray_available():
        raise UsageError(f"--workers {args.workers} / --ray-address need Ray: {CLUSTER_EXTRA} (or --workers 1)")
    setup = _eval_setup(opts)
    job = FleetJob(setup, _load_map(args.map), threads=opts["threads"], frames=args.frames, worst=args.worst)

    workers = f"{args.workers} worker" + ("s" if args.workers != 1 else "")
    where = f"Ray at {args.ray_address}" if args.ray_address else workers
    t0 = time.perf_counter()
    with sigterm_as_interrupt(), _progress() as progress:  # SIGTERM stops the workers as Ctrl-C does
        task = progress.add_task(f"evaluating {len(bags)} bags on {where}", total=len(bags), info="")
        frames = failed = 0

        def done(outcome: Any) -> None:
            nonlocal frames, failed
            frames += len(outcome.frames)
            failed += not outcome.ok
            if not outcome.ok:
                progress.console.print(f"[yellow]{outcome.path}: not evaluated: {outcome.error}[/]", highlight=False)
            rate = frames / max(time.perf_counter() - t0, 1e-9)
            progress.update(
                task, advance=1, info=f"{frames} sets, {rate:.1f} sets/s" + (f", {failed} failed" if failed else "")
            )

        result = evaluate_fleet(bags, job, args.output, workers=args.workers, address=args.ray_address, on_done=done)
    for o in result.outcomes:
        if o.ok:
            _print_bag(o.path, o.metrics)
    m = result.metrics
    for f in m["failed"]:
        print(f"{f['bag']}: FAILED: {f['reason']}", file=sys.stderr)
    if "nuscenes" in m:
        print(
            f"fleet: {m['evaluated']} of {m['bags']} bags, mAP {m['nuscenes']['mAP']:.3f} "
            f"NDS {m['nuscenes']['NDS']:.3f} KITTI BEV {_num(m['kitti_bev']['mAP'])} 3D {_num(m['kitti_3d']['mAP'])} "
            f"over {m['frames_with_ground_truth']} sets"
        )
    else:
        print(f"fleet: {m['evaluated']} of {m['bags']} bags: {m['ground_truth']}")
    print(
        f"  {m['sets']} sets from {m['bag_duration_s']:.1f} s of bags in {m['wall_s']:.1f} s: "
        f"{_num(m['frames_per_s'], 1)} sets/s, {_num(m['speed_x_realtime'], 1)}× real time"
    )
    print(f"  → {result.metrics_path}, {result.report_path}")
    if result.failed and (args.strict or len(result.failed) == len(result.outcomes)):
        return EXIT_FAILED
    return 0


def _update(progress: Progress, task: Any, n: int, total: int) -> None:
    progress.update(task, completed=n, total=total)


def _num(v: float | None, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


# --------------------------------------------------------------------------- parsers


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("record", help="record topics of the running graph to MCAP")
    set_completer(p.add_argument("topics", nargs="*", help="topics to record"), complete_topics)
    p.add_argument("-o", "--output", required=True, metavar="FILE.mcap", help="the bag to write (never overwritten)")
    p.add_argument("-a", "--all", action="store_true", help="record every topic, including ones that appear later")
    p.add_argument("-x", "--exclude", action="append", default=[], metavar="TOPIC", help="with --all: leave TOPIC out")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="S",
        help="wait up to S seconds for the topics (with --all: for any publisher), then fail (default 10; 0: forever)",
    )
    p.add_argument("--split-size", type=float, default=None, metavar="MB", help="start a new file every MB megabytes")
    p.add_argument("--split-duration", type=float, default=None, metavar="S", help="start a new file every S seconds")
    p.add_argument(
        "--compression",
        choices=("zstd", "lz4", "none"),
        default="lz4",
        help="chunk compression (default lz4: a third less CPU than zstd live, files ~35%% bigger)",
    )
    p.add_argument("--calib", default=None, metavar="RIG.yaml", help="write the rig's sensor poses on /tf_static")
    p.add_argument(
        "--no-markers", action="store_true", help="do not add <topic>/markers (MarkerArray) for detection topics"
    )
    p.set_defaults(func=_bad_input(_cmd_record))

    p = sub.add_parser("replay", help="publish a bag into the graph (our MCAP, ROS 1/2 bags)")
    p.add_argument("file", help="the bag: our MCAP, a ROS 2 bag directory or a ROS 1 .bag")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (default: 1 = recorded timing)")
    p.add_argument("--loop", action="store_true", help="start again after the last message, until stopped")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="skip the first S seconds")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="replay S seconds of the bag")
    p.add_argument("--topics", nargs="+", default=None, metavar="TOPIC", help="recorded topics to replay")
    p.add_argument(
        "--remap",
        action="append",
        default=[],
        metavar="FROM:=TO",
        help="publish recorded topic FROM as TO (repeatable)",
    )
    p.add_argument("--map", default=None, metavar="FILE", help="topic-mapping YAML for ROS bags")
    p.add_argument("--lockstep", action="store_true", help="send the next set only when the pipeline answered the last")
    p.add_argument(
        "--lockstep-topic", default=None, metavar="TOPIC", help="topic that starts a set (default: first point cloud)"
    )
    p.add_argument("--ack-topic", default="/detections", metavar="TOPIC", help="pipeline output to wait for (lockstep)")
    add_clock_argument(p, "publish the bag time on TOPIC (default /clock) for graphs launched with --clock")
    p.set_defaults(func=_bad_input(_cmd_replay))

    p = sub.add_parser("bag", help="inspect, recover and convert bags")
    bag_sub = p.add_subparsers(dest="bag_command", required=True)
    k = bag_sub.add_parser("info", help="duration, topics, types, counts, rates and size")
    k.add_argument("file", help="our MCAP, a ROS 2 bag directory (sqlite3/MCAP) or a ROS 1 .bag")
    k.add_argument("--json", action="store_true", help="one JSON object")
    k.set_defaults(func=_bad_input(_cmd_bag_info))
    k = bag_sub.add_parser("recover", help="rewrite an MCAP file whose recorder died as a whole, indexed file")
    k.add_argument("file", help="the damaged or unfinished MCAP file (left as it is)")
    k.add_argument("-o", "--output", default=None, metavar="OUT.mcap", help="default: FILE.recovered.mcap")
    k.set_defaults(func=_bad_input(_cmd_bag_recover))
    k = bag_sub.add_parser("convert", help="convert a ROS 1/2 bag to MCAP")
    k.add_argument("input", help="a ROS 1 .bag or a ROS 2 bag directory")
    k.add_argument("-o", "--output", required=True, metavar="OUT.mcap", help="the MCAP file to write")
    k.add_argument("--map", default=None, metavar="FILE", help="topic-mapping YAML: which topic is which sensor")
    k.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd", help="(default: zstd)")
    k.set_defaults(func=_bad_input(_cmd_bag_convert))

    p = sub.add_parser("eval", help="replay bags through sync + fusion in lockstep and score against ground truth")
    p.add_argument(
        "files",
        nargs="+",
        metavar="BAG|DIR|GLOB",
        help="bags (our MCAP, ROS 1 .bag, ROS 2 bag folders), folders searched for bags, quoted glob patterns; "
        "then NAME:=VALUE arguments for --launch. Several bags: one report over all of them",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="MODEL",
        help="weights (.pt), a model card (.yaml) or a built-in name (fusion_sim, lidar_only, cluster); "
        "default: the fusion node's model in --launch",
    )
    p.add_argument(
        "--detections",
        default=None,
        metavar="OUT.mcap",
        help="also write every set's detections (and their markers) to this MCAP, to view beside the bag",
    )
    p.add_argument(
        "--backend",
        default=None,
        choices=("auto", "tensorrt", "onnxruntime", "torch"),
        help="inference backend (default: the fusion node's in --launch)",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="fp32, or int8: the network quantized for ONNX Runtime on CPU (default: the fusion node's in --launch)",
    )
    p.add_argument("--launch", default="sim", help="launch file or shipped graph whose sync and fusion settings to use")
    p.add_argument("--map", default=None, metavar="FILE", help="topic-mapping YAML for ROS bags")
    p.add_argument(
        "-o",
        "--output",
        default="eval_report",
        metavar="DIR",
        help="where metrics and reports go (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="bags evaluated in parallel on a local Ray runtime, started and stopped for you (fusion-stream[cluster])",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="run the --workers on this existing Ray cluster (the bags must be readable there at the same paths)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when any bag fails (default: only when all do)")
    p.add_argument("--worst", type=int, default=6, help="worst frames across the bags shown in the report")
    p.add_argument("--threads", type=int, default=0, help="inference threads per worker (default 0: every core)")
    p.add_argument("--frames", type=int, default=3, help="frames rendered in the report")
    p.set_defaults(func=_bad_input(_cmd_eval))
