"""Recorder node: the graph's topics into an MCAP bag, started with the rest of a launch file.

The same recorder as ``fusion-stream record`` (see :mod:`fusion_stream.bag.recorder`): ROS 2
schemas and CDR, drops counted per topic in ``/diagnostics``, the file finished when the node
stops (SIGINT/SIGTERM from the supervisor), complete chunks readable after a ``kill -9``.

    - name: recorder
      type: recorder
      params: {output: "runs/${seed}.mcap", all: true, exclude: [/sync/frames], calib: calib/sim_rig.yaml}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fusion_stream.bag.recorder import Recorder
from fusion_stream.bag.writer import BagWriter, check_writable
from fusion_stream.core import calib, resources
from fusion_stream.errors import CalibrationError, FusionStreamError, ParamError
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics
from fusion_stream.runtime.runner import run_node


@dataclass(frozen=True)
class Params:
    output: str
    """The bag to write (``.mcap``); an existing file is refused, not overwritten."""
    topics: tuple[str, ...] = ()
    all: bool = False
    """Record every topic, including ones that appear later."""
    exclude: tuple[str, ...] = field(default_factory=tuple)
    compression: str = "lz4"
    split_size_mb: float = 0.0
    split_s: float = 0.0
    calib: str = ""
    """A rig file whose sensor poses go on ``/tf_static``."""
    markers: bool = True


def topics(p: Params) -> NodeTopics:
    return NodeTopics()  # it takes what is there; recording nothing is not an error of the graph


COMPRESSIONS = ("zstd", "lz4", "none")


def check(p: Params) -> None:
    """What can be judged before the node starts (``fusion-stream launch`` calls it; so does setup):
    the compression, an output that does not exist yet, a rig file that loads."""
    if p.compression not in COMPRESSIONS:
        raise ParamError("compression", f"must be one of {', '.join(COMPRESSIONS)}, got {p.compression!r}")
    try:
        check_writable(Path(p.output))
    except FusionStreamError as err:
        raise ParamError("output", str(err)) from err
    _rig(p)


def _rig(p: Params) -> calib.Rig | None:
    if not p.calib:
        return None
    try:
        return calib.load(resources.resolve(p.calib))
    except CalibrationError as err:
        raise ParamError("calib", str(err)) from err


def setup(node: Node, p: Params) -> None:
    check(p)
    out = Path(p.output)
    rig = _rig(p)
    try:
        writer = BagWriter(
            out,
            compression=p.compression,  # type: ignore[arg-type]  # checked above
            split_bytes=int(p.split_size_mb * 1e6) if p.split_size_mb > 0 else None,
            split_s=p.split_s if p.split_s > 0 else None,
            markers=p.markers,
        )
        if rig is not None:
            writer.write_tf_static(rig, node.clock.now_ns())
    except FusionStreamError as err:
        raise ParamError("output", str(err)) from err
    node.on_close(writer.close)
    try:
        Recorder(node, writer, p.topics, all_topics=p.all, exclude=p.exclude)  # lives on in the node's callbacks
    except FusionStreamError as err:
        raise ParamError("topics", str(err)) from err
    node.log.info("recording %s to %s (%s)", "every topic" if p.all else ", ".join(p.topics), out, p.compression)


if __name__ == "__main__":
    raise SystemExit(run_node("recorder", Params, setup))
