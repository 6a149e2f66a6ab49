"""The ``fusion-stream`` command line: one module per command group, shared helpers in
:mod:`fusion_stream.cli.common`. The top layer: it may import everything below it."""

from fusion_stream.cli.main import main

__all__ = ["main"]
