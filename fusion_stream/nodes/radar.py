"""Radar node: ``RadarScan`` detection lists (x, y, z, radial_velocity, rcs, range, azimuth,
elevation) in the sensor frame.

``source`` picks where detections come from:

* ``sim`` detects objects in the simulated world (13 Hz, with false alarms);
* ``file`` replays decoded detection lists — ``path`` is a CSV or YAML file (Continental ARS548
  detection lists, or the simple list form; see :mod:`fusion_stream.sources.radar`) or a folder
  of them — one scan per file or per frame in a file, on the capture grid at ``rate_hz``,
  stamped with the grid time; looping unless ``loop: false`` (then the node exits 0 after the
  last scan)."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.core.msgs import RadarScan
from fusion_stream.errors import ParamError
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics
from fusion_stream.runtime.params import existing
from fusion_stream.runtime.runner import run_node
from fusion_stream.sim import radar
from fusion_stream.sim.capture import radar_scan
from fusion_stream.sim.sensors import SimParams, check_sim, open_sensor, open_world, publish_on_grid
from fusion_stream.sources.playback import publish_recording
from fusion_stream.sources.radar import RadarRecording

SOURCES = ("sim", "file")


@dataclass(frozen=True)
class Params(SimParams):
    sensor: str = "radar_front"
    """Rig sensor name; also the ``frame_id`` of replayed scans."""
    topic: str = "/radar/front/points"
    rate_hz: float = 13.0
    false_alarms: float = 3.0
    path: str = ""
    loop: bool = True


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


def check(p: Params) -> None:
    """What can be judged before the node starts (``fusion-stream launch`` calls it; so does setup)."""
    if p.source not in SOURCES:
        raise ParamError("source", f"must be one of {', '.join(SOURCES)}, got {p.source!r}")
    if p.source == "sim":
        check_sim(p, p.sensor, "radar")
        _spec(p)
    else:
        existing("path", p.path, "a radar CSV/YAML file or a folder of them (source: file)")


def _spec(p: Params) -> radar.RadarSpec:
    return radar.RadarSpec(rate_hz=p.rate_hz, false_alarms=p.false_alarms)  # a ParamError names the field


def setup(node: Node, p: Params) -> None:
    check(p)
    if p.source == "sim":
        setup_sim(node, p)
        return
    recording = RadarRecording(existing("path", p.path, "a radar file"), frame_id=p.sensor)
    node.log.info("replaying %d scans from %d file(s) at %g Hz", len(recording), len(recording.files), p.rate_hz)
    publish_recording(
        node, p.topic, p.rate_hz, p.epoch_ns, len(recording), recording.scan, loop=p.loop, msg_type=RadarScan
    )


def setup_sim(node: Node, p: Params) -> None:
    world = open_world(p)
    sensor = open_sensor(p, p.sensor, "radar")
    spec = _spec(p)

    def capture(at: int) -> RadarScan:
        return radar_scan(world, sensor, spec, at, p.epoch_ns)

    publish_on_grid(node, p.topic, p.rate_hz, p.epoch_ns, capture, msg_type=RadarScan)


if __name__ == "__main__":
    raise SystemExit(run_node("radar", Params, setup))
