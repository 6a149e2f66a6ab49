"""`fusion-stream view | foxglove`: look at a running graph in a browser, as PNG files, or in Foxglove."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from fusion_stream.cli.common import stop_on_signals
from fusion_stream.core import resources
from fusion_stream.errors import CalibrationError, FusionStreamError, UsageError, is_input_error
from fusion_stream.runtime.runner import EXIT_CONFIG, EXIT_FAILED


def _stop_event() -> threading.Event:
    stop = threading.Event()
    stop_on_signals(lambda _name: stop.set())
    return stop


def _rig(path: str) -> object:
    from fusion_stream.core import calib

    try:
        return calib.load(resources.resolve(path))
    except CalibrationError as err:
        raise UsageError(f"--calib: {err}") from err


def _cmd_view(args: argparse.Namespace) -> int:
    from fusion_stream.viewer import server
    from fusion_stream.viewer.live import GraphWatcher

    try:
        rig = _rig(args.calib)
        stop = _stop_event()
        watcher = GraphWatcher().start()
        try:
            if args.png:
                out = Path(args.png)
                out.mkdir(parents=True, exist_ok=True)
                timer = threading.Timer(args.duration, stop.set) if args.duration else None
                if timer is not None:
                    timer.start()
                n = server.write_pngs(watcher, rig, out, every_s=args.every, stop=stop)  # type: ignore[arg-type]
                if timer is not None:
                    timer.cancel()
                print(f"wrote {n} pictures to {out}")
                for problem in watcher.status():
                    print(f"warning: {problem}", file=sys.stderr)
                return 0
            http = server.serve(watcher, rig, host=args.host, port=args.port)  # type: ignore[arg-type]
            print(
                f"viewer on http://{args.host}:{http.server_address[1]}/  "
                f"(graph {watcher.registry.graph}; Ctrl-C stops)"
            )
            server.wait(stop, args.duration)
            http.shutdown()
        finally:
            watcher.stop()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _cmd_foxglove(args: argparse.Namespace) -> int:
    from fusion_stream.viewer import server
    from fusion_stream.viewer.foxglove_bridge import FoxgloveBridge

    try:
        rig = _rig(args.calib) if args.calib else None
        stop = _stop_event()
        bridge = FoxgloveBridge(rig=rig, host=args.host, port=args.port).start()  # type: ignore[arg-type]
    except FusionStreamError as err:  # a bad option or file: 2; a port that will not bind: 1
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG if is_input_error(err) else EXIT_FAILED
    print(
        f"Foxglove bridge on ws://{args.host}:{bridge.port} (graph {bridge.registry.graph}); open it in Foxglove: "
        f"Open connection → Foxglove WebSocket. Ctrl-C stops."
    )
    try:
        server.wait(stop, args.duration)
    finally:
        bridge.stop()
    print(f"relayed {bridge.relayed} messages")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "view", help="live web page of the running graph (camera, bird's-eye view, audio, rates, latency)"
    )
    p.add_argument("--port", type=int, default=8080, help="HTTP port of the page (default 8080)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    p.add_argument(
        "--calib", default="calib/sim_rig.yaml", help="rig file, to project LiDAR and boxes (default: %(default)s)"
    )
    p.add_argument("--png", default=None, metavar="DIR", help="write the pictures to DIR instead of serving a page")
    p.add_argument("--every", type=float, default=1.0, metavar="S", help="with --png: seconds between pictures")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.set_defaults(func=_cmd_view)

    p = sub.add_parser("foxglove", help="bridge the running graph to Foxglove (WebSocket server, foxglove-sdk)")
    p.add_argument("--port", type=int, default=8765, help="WebSocket port Foxglove connects to (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    p.add_argument("--calib", default="calib/sim_rig.yaml", help="rig file whose sensor frames go on /tf ('' for none)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.set_defaults(func=_cmd_foxglove)
