"""What every command group shares: the consoles, the progress display, Ctrl-C/SIGTERM handling
and shared arguments. Light on purpose (rich only): every ``fusion-stream`` command imports it.

Exit codes are :data:`fusion_stream.runtime.runner.EXIT_OK`, ``EXIT_FAILED`` and ``EXIT_CONFIG``:
nodes exit with them too."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def progress_bar(console: Console) -> Progress:
    """The progress display every long command uses (on ``console``: stderr keeps stdout clean)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )


def stop_on_signals(stop: Callable[[str], None]) -> None:
    """Ctrl-C and SIGTERM call ``stop(signal name)`` instead of raising: files get finished."""

    def handler(signum: int, _frame: object) -> None:
        stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so the same clean-up runs
    (workers stopped, a local Ray runtime shut down, partial files removed)."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def add_clock_argument(p: argparse.ArgumentParser, help: str) -> None:  # argparse's name
    """``--clock [TOPIC]`` (default ``/clock``), shared by ``replay`` (publish) and ``launch`` (follow)."""
    p.add_argument("--clock", nargs="?", const="/clock", default=None, metavar="TOPIC", help=help)


# --------------------------------------------------------------------------- graphs and completion

GRAPH_HELP = "the running graph (a launch file's `graph:`; default: $FUSION_STREAM_GRAPH, else the one running here)"


def add_graph_argument(p: argparse.ArgumentParser) -> None:
    """``--graph NAME`` after a subcommand too (``echo --graph sim /x``); the value given before
    the subcommand stays when it is not repeated (SUPPRESS: no default to overwrite it)."""
    action = p.add_argument("--graph", default=argparse.SUPPRESS, metavar="NAME", help=GRAPH_HELP)
    set_completer(action, complete_graphs)


def set_completer(action: argparse.Action, completer: Callable[..., list[str]]) -> None:
    """Attach a shell-completion function (read by argcomplete when it is installed)."""
    setattr(action, "completer", completer)  # noqa: B010  # argcomplete's attribute, not Action's


def complete_graphs(prefix: str = "", **_: object) -> list[str]:
    """Names of the graphs running here that start with ``prefix`` (argcomplete completer)."""
    from fusion_stream.runtime.registry import running_graphs

    return [g.name for g in running_graphs() if g.name.startswith(prefix)]


def complete_topics(prefix: str = "", parsed_args: argparse.Namespace | None = None, **_: object) -> list[str]:
    """Topics starting with ``prefix``: of the graph named on the line (``--graph``) or in
    ``$FUSION_STREAM_GRAPH``, else of every graph running here (argcomplete completer)."""
    from fusion_stream.runtime.registry import Registry, explicit_graph, running_graphs

    graph = explicit_graph(getattr(parsed_args, "graph", None))
    if graph is not None:
        topics = {e.topic for e in Registry(graph=graph).entries()}
    else:
        topics = {t for g in running_graphs() for t in g.topics}
    return sorted(t for t in topics if t.startswith(prefix))
