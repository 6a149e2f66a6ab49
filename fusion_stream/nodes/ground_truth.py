"""Ground-truth node: the objects near the ego, in the rig frame, on ``/ground_truth/objects``.

``source: sim`` — the simulated world's actors. ``source: kitti`` — the labels (``label_2``) of a
KITTI object folder (``path``), frame by frame. Stamps fall on the LiDAR's capture grid (same
``rate_hz`` and ``epoch_ns``), so each box set describes the world at the start of a sweep: the
scenario parameters (sim) or the folder and rate (KITTI) must match the sensors'."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.core.msgs import Detections
from fusion_stream.errors import FormatError, ParamError
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics
from fusion_stream.runtime.params import existing
from fusion_stream.runtime.runner import run_node
from fusion_stream.sim import ground_truth
from fusion_stream.sim.sensors import SimParams, open_world, publish_on_grid, scenario
from fusion_stream.sources.playback import publish_recording


@dataclass(frozen=True)
class Params(SimParams):
    rate_hz: float = 10.0
    radius_m: float = 80.0
    frame_id: str = "base_link"
    topic: str = "/ground_truth/objects"
    path: str = ""
    """``source: kitti``: the KITTI object folder (either layout)."""


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


SOURCES = ("sim", "kitti")


def check(p: Params) -> None:
    """What can be judged before the node starts (``fusion-stream launch`` calls it; so does setup)."""
    if p.source not in SOURCES:
        raise ParamError("source", f"must be one of {', '.join(SOURCES)}, got {p.source!r}")
    if p.rate_hz <= 0:
        raise ParamError("rate_hz", f"must be > 0, got {p.rate_hz}")
    if p.source == "kitti":
        existing("path", p.path, "the KITTI object folder (source: kitti)")
    else:
        scenario(p)


def setup(node: Node, p: Params) -> None:
    check(p)
    if p.source == "kitti":
        from fusion_stream.core.kitti import KittiFolder

        try:
            folder = KittiFolder(existing("path", p.path, "the KITTI object folder"))
        except FormatError as err:
            raise ParamError("path", str(err)) from err

        def labels(i: int, at: int) -> Detections:
            return Detections(stamp_ns=at, frame_id=p.frame_id, boxes=folder.boxes(i))

        publish_recording(node, p.topic, p.rate_hz, p.epoch_ns, len(folder), labels, msg_type=Detections)
        return
    world = open_world(p)

    def capture(at: int) -> Detections:
        return ground_truth(world, (at - p.epoch_ns) / 1e9, at, p.radius_m, p.frame_id)

    publish_on_grid(node, p.topic, p.rate_hz, p.epoch_ns, capture, msg_type=Detections)


if __name__ == "__main__":
    raise SystemExit(run_node("ground_truth", Params, setup))
