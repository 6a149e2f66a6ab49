"""Render the simulated rig straight into an MCAP bag, without processes or sockets.

Every sensor produces exactly what its node would publish on its capture grid (same functions),
logged at the time the node would have sent it (capture + the time until the frame is complete
+ a fixed transport delay). The result is deterministic in the scenario and the time window, so
evaluation bags can be made on any machine, at any speed, and scored reproducibly.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fusion_stream.bag.writer import BagWriter
from fusion_stream.core import calib, msgs, resources
from fusion_stream.sim import audio, capture, lidar, radar
from fusion_stream.sim.camera import CameraModel
from fusion_stream.sim.world import Scenario, World, ground_truth

TRANSPORT_NS = 2_000_000
"""Delay from a frame being complete to it being logged (what a loaded host adds)."""


@dataclass(frozen=True)
class SimRates:
    lidar_hz: float = 10.0
    camera_hz: float = 15.0
    radar_hz: float = 13.0
    chunk_ms: float = 20.0
    lidar_beams: int = 32


# The topic names of launch/sim.yaml.
TOPICS = {
    "lidar": "/lidar/top/points",
    "camera": "/camera/front/image",
    "radar": "/radar/front/points",
    "audio": "/audio/array/chunk",
    "ground_truth": "/ground_truth/objects",
}


def _grid(start_ns: int, end_ns: int, period_ns: int) -> Iterator[int]:
    k = -(-start_ns // period_ns)
    while k * period_ns < end_ns:
        yield k
        k += 1


def _events(
    world: World, rig: calib.Rig, rates: SimRates, start_ns: int, end_ns: int
) -> Iterator[tuple[int, str, Callable[[], msgs.Message]]]:
    """(log time, topic, make message) for every frame captured in [start, end), time-ordered."""
    lid, cam, rad, mic = (rig.of_type(k)[0] for k in ("lidar", "camera", "radar", "microphones"))  # type: ignore[arg-type]
    assert cam.intrinsics is not None
    model = CameraModel(cam.intrinsics, cam.distortion)
    lidar_spec = lidar.LidarSpec.preset(rates.lidar_beams, rates.lidar_hz)
    radar_spec = radar.RadarSpec(rate_hz=rates.radar_hz)
    audio_spec = audio.ArraySpec(chunk_samples=round(48_000 * rates.chunk_ms / 1000))
    streams: list[Iterator[tuple[int, str, Callable[[], msgs.Message]]]] = []

    def stream(topic: str, period_ns: int, ready_ns: int, make: Callable[[int], msgs.Message]) -> None:
        def events() -> Iterator[tuple[int, str, Callable[[], msgs.Message]]]:
            for k in _grid(start_ns, end_ns, period_ns):
                at = k * period_ns
                yield at + ready_ns + TRANSPORT_NS, topic, functools.partial(make, at)

        streams.append(events())

    lidar_period = round(1e9 / rates.lidar_hz)
    stream(TOPICS["lidar"], lidar_period, lidar_period, lambda at: capture.lidar_sweep(world, lid, lidar_spec, at))
    stream(TOPICS["camera"], round(1e9 / rates.camera_hz), 0, lambda at: capture.camera_image(world, cam, model, at))
    stream(TOPICS["radar"], round(1e9 / rates.radar_hz), 0, lambda at: capture.radar_scan(world, rad, radar_spec, at))
    stream(TOPICS["ground_truth"], lidar_period, 0, lambda at: ground_truth(world, at / 1e9, at))
    chunk_ns = audio_spec.chunk_samples * 1_000_000_000 // audio_spec.sample_rate
    stream(TOPICS["audio"], chunk_ns, chunk_ns, lambda at: capture.audio_chunk(world, mic, audio_spec, at // chunk_ns))
    yield from heapq.merge(*streams, key=lambda e: (e[0], e[1]))


def record_sim(
    path: Path | str,
    scenario: Scenario,
    *,
    start_s: float,
    duration_s: float,
    rig_path: Path | str = "calib/sim_rig.yaml",
    rates: SimRates | None = None,
    compression: str = "zstd",
    on_message: Callable[[int], None] | None = None,
) -> BagWriter:
    """Write ``duration_s`` seconds of the scenario from ``start_s`` (scenario time = Unix time,
    as the live sensor nodes use) to ``path``; ``on_message(log_ns)`` after each message."""
    rig = calib.load(resources.resolve(rig_path))
    world = World(scenario)
    start_ns, end_ns = round(start_s * 1e9), round((start_s + duration_s) * 1e9)
    writer = BagWriter(path, compression=compression, flush_s=float("inf"), markers=True)  # type: ignore[arg-type]
    with writer:
        writer.write_tf_static(rig, start_ns)
        for log_ns, topic, make in _events(world, rig, rates or SimRates(), start_ns, end_ns):
            writer.write(topic, make(), log_ns, publish_ns=log_ns)
            if on_message is not None:
                on_message(log_ns)
    return writer
