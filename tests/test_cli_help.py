"""Every option and positional argument of every ``fusion-stream`` command says what it is for."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from fusion_stream.cli.main import build_parser


def parsers(
    parser: argparse.ArgumentParser, prog: str = "fusion-stream"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and every subcommand's parser below it, by their command line."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{prog} {name}")


def test_every_option_and_argument_has_help_text() -> None:
    missing = []
    seen = 0
    for prog, parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            seen += 1
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    assert seen > 100  # the walk reached the subcommands
    assert not missing, "no help text: " + "; ".join(missing)
