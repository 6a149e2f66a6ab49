"""Files shipped inside the package, and where a relative path a user wrote points.

The wheel carries the shipped launch graphs, the simulated rig's calibration and the trained
weights under ``fusion_stream/data/`` (the repository's top-level ``launch/``, ``calib/`` and
``weights/`` link there), so ``calib/sim_rig.yaml`` in a launch file or on the command line works
from any folder, installed or in a checkout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib import resources
from pathlib import Path
from typing import Final

ENV_LAUNCH_DIR: Final = "FUSION_STREAM_LAUNCH_DIR"
"""Set by the supervisor for its nodes: the folder of the launch file they were started from."""

_launch_dir: ContextVar[Path | None] = ContextVar("launch_dir", default=None)


@contextmanager
def launch_folder(folder: Path | str) -> Iterator[None]:
    """Within the block, :func:`resolve` looks first in ``folder``, as a node started from a launch
    file there will (``ENV_LAUNCH_DIR``): the launcher checks a node's files where the node reads them."""
    token = _launch_dir.set(Path(folder))
    try:
        yield
    finally:
        _launch_dir.reset(token)


def shipped(*parts: str) -> Path:
    """A path inside the shipped data, e.g. ``shipped("launch", "sim.yaml")``."""
    root = resources.files("fusion_stream")
    if not isinstance(root, Path):  # a zipped install; pip never makes one
        raise RuntimeError(f"fusion_stream must be installed as files, not from an archive ({root})")
    return root.joinpath("data", *parts)


def shipped_names(kind: str, suffix: str) -> list[str]:
    """The stems of the shipped files of one kind (``shipped_names("launch", ".yaml")``)."""
    return sorted(p.stem for p in shipped(kind).glob(f"*{suffix}"))


def resolve(path: Path | str, base: Path | str | None = None) -> Path:
    """Where a relative path points: the launch file's folder (``base``, or the one the supervisor
    passed to this node), then the working directory, then the shipped data. A path found nowhere
    comes back as written, so the error that follows names what the user wrote."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    folder = base if base is not None else _launch_dir.get() or os.environ.get(ENV_LAUNCH_DIR)
    candidates = [Path(folder) / p] if folder else []
    candidates += [p, shipped(*p.parts)]
    return next((c for c in candidates if c.exists()), p)
