"""Entry point shared by every node process: arguments → params → :class:`Node` → spin.

A node type (:mod:`fusion_stream.runtime.nodetypes`) declares a params dataclass, ``topics`` and
``setup(node, params)``; any registered type runs with the same command line::

    python -m fusion_stream.runtime.runner pattern --name cam0 --params-file cam.yaml -p rate_hz:=30 --duration 10

(the shipped node modules also end with ``raise SystemExit(run_node("camera", Params, setup))``, so
``python -m fusion_stream.nodes.pattern ...`` works too).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from fusion_stream.errors import FusionStreamError, NodeTypeError, is_input_error
from fusion_stream.runtime import nodetypes
from fusion_stream.runtime import params as params_mod
from fusion_stream.runtime.clock import ENV_CLOCK, TopicClock
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.security import CurveKeys

P = TypeVar("P")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

ENV_SUPERVISOR_PID = "FUSION_STREAM_SUPERVISOR_PID"
"""Set by the supervisor: a node stops when its supervisor is gone, so none is ever orphaned."""


def setup_logging(level: str = "INFO", prefix: str = "") -> None:
    """Log lines name the node, so interleaved output of many processes stays readable."""
    tag = f"[{prefix}] " if prefix else ""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s.%(msecs)03d {tag}%(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def node_arguments(kind: str) -> argparse.ArgumentParser:
    prog = f"python -m fusion_stream.runtime.runner {kind}"
    ap = argparse.ArgumentParser(prog=prog, description=f"fusion_stream {kind} node")
    ap.add_argument("--name", default=kind, help="node name, unique in the graph (default: %(default)s)")
    ap.add_argument("--params-file", action="append", default=[], metavar="FILE", help="YAML parameters")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY:=VALUE", help="override a parameter")
    ap.add_argument("--remap", action="append", default=[], metavar="FROM:=TO", help="rename a topic")
    ap.add_argument("--bind", action="append", default=[], metavar="TOPIC:=ENDPOINT", help="where to publish TOPIC")
    ap.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    ap.add_argument("--log-level", default=os.environ.get("FUSION_STREAM_LOG_LEVEL", "INFO"))
    return ap


def run_node(
    kind: str,
    params_cls: type[P],
    setup: Callable[[Node, P], None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse arguments, build the node, run it; the process exit code."""
    args = node_arguments(kind).parse_args(argv)
    supervisor = os.environ.get(ENV_SUPERVISOR_PID)
    setup_logging(args.log_level, "" if supervisor else args.name)  # the supervisor adds the name
    log = logging.getLogger(f"fusion_stream.runtime.node.{args.name}")
    try:
        params = params_mod.load(params_cls, files=args.params_file, overrides=args.param)
        remap = dict(params_mod.parse_override(r) for r in args.remap)
        binds = {k: str(v) for k, v in (params_mod.parse_override(b) for b in args.bind)}
        curve = CurveKeys.from_env()
    except FusionStreamError as err:
        log.error("bad configuration: %s", err)
        return EXIT_CONFIG
    try:
        clock_topic = os.environ.get(ENV_CLOCK)
        clock = TopicClock(clock_topic) if clock_topic else None
        node = Node(
            args.name,
            remap=remap,
            binds=binds,
            curve=curve,
            parent_pid=int(supervisor) if supervisor else None,
            clock=clock,
        )
        if clock is not None:
            node.on_close(clock.close)
            log.info("following the replay clock on %s", clock_topic)
    except FusionStreamError as err:  # a bad --name is the user's; a socket that will not bind is not
        log.error("%s: %s", "bad configuration" if is_input_error(err) else "cannot start", err)
        return EXIT_CONFIG if is_input_error(err) else EXIT_FAILED
    node.start_watchdog()
    try:
        with node.working_on("setup"):
            setup(node, params)
    except FusionStreamError as err:  # bad user input (a parameter, a name, a file's content): exit 2
        log.error("%s: %s", "bad configuration" if is_input_error(err) else "setup failed", err)
        node.close()
        return EXIT_CONFIG if is_input_error(err) else EXIT_FAILED
    except BaseException:
        node.close()
        raise
    return node.spin(args.duration)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fusion_stream.runtime.runner TYPE [node arguments]``: run a registered node type
    (how the supervisor starts every node, so a plugin module needs no ``__main__`` block)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print(
            "usage: python -m fusion_stream.runtime.runner TYPE [--name NAME] [-p KEY:=VALUE ...]\n"
            f"node types: {', '.join(nodetypes.available())}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        node_type = nodetypes.load(args[0])
    except NodeTypeError as err:
        setup_logging()
        logging.getLogger("fusion_stream.runtime.runner").error("%s", err)
        return EXIT_CONFIG
    return run_node(args[0], node_type.Params, node_type.setup, args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
