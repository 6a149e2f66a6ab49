"""What every command group shares: the consoles, the progress display, Ctrl-C/SIGTERM handling
and shared arguments. Light on purpose (rich only): every ``fusion-stream`` command imports it.

Exit codes are :data:`fusion_stream.runtime.runner.EXIT_OK`, ``EXIT_FAILED`` and ``EXIT_CONFIG``:
nodes exit with them too."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

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


def add_clock_argument(p: argparse.ArgumentParser, help: str) -> None:  # argparse's name
    """``--clock [TOPIC]`` (default ``/clock``), shared by ``replay`` (publish) and ``launch`` (follow)."""
    p.add_argument("--clock", nargs="?", const="/clock", default=None, metavar="TOPIC", help=help)
