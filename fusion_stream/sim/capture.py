"""One simulated sensor frame as the sensor node publishes it, given its capture time.

Shared by the sensor nodes (live, on their capture grids) and by :mod:`fusion_stream.sim.recording`
(offline, straight into a bag), so both produce the same messages for the same instant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusion_stream.core import calib
from fusion_stream.core.msgs import AudioChunk, Image, PointCloud, RadarScan
from fusion_stream.sim import audio, lidar, radar
from fusion_stream.sim.world import World

if TYPE_CHECKING:  # only the camera node imports the renderer (and numba with it)
    from fusion_stream.sim.camera import CameraModel


def _t(at_ns: int, epoch_ns: int) -> float:
    return (at_ns - epoch_ns) / 1e9


def lidar_sweep(
    world: World, sensor: calib.Sensor, spec: lidar.LidarSpec, start_ns: int, epoch_ns: int = 0
) -> PointCloud:
    """The sweep that starts at ``start_ns`` (stamped at its start, minus the sensor's offset)."""
    sweep = lidar.sweep(world, _t(start_ns, epoch_ns), sensor.extrinsics, spec, stamp_ns=start_ns)
    return PointCloud(
        stamp_ns=start_ns - sensor.time_offset_ns, frame_id=sensor.name, data=sweep.data, fields=lidar.FIELDS
    )


def camera_image(world: World, sensor: calib.Sensor, model: CameraModel, at_ns: int, epoch_ns: int = 0) -> Image:
    frame = model.render(world, _t(at_ns, epoch_ns), sensor.extrinsics, stamp_ns=at_ns)
    return Image(stamp_ns=at_ns - sensor.time_offset_ns, frame_id=sensor.name, data=frame.rgb)


def radar_scan(world: World, sensor: calib.Sensor, spec: radar.RadarSpec, at_ns: int, epoch_ns: int = 0) -> RadarScan:
    result = radar.scan(world, _t(at_ns, epoch_ns), sensor.extrinsics, spec, stamp_ns=at_ns)
    return RadarScan(
        stamp_ns=at_ns - sensor.time_offset_ns, frame_id=sensor.name, data=result.data, fields=radar.FIELDS
    )


def audio_chunk(world: World, sensor: calib.Sensor, spec: audio.ArraySpec, index: int, epoch_ns: int = 0) -> AudioChunk:
    """Chunk ``index`` of the stream (its first sample is ``index × chunk_samples``)."""
    assert sensor.microphones is not None  # calib.load guarantees it for microphone arrays
    sample = index * spec.chunk_samples
    data = audio.chunk(world, sample, sensor.extrinsics, sensor.microphones, spec)
    stamp = epoch_ns + sample * 1_000_000_000 // spec.sample_rate - sensor.time_offset_ns
    return AudioChunk(
        stamp_ns=stamp, frame_id=sensor.name, data=data, sample_rate=spec.sample_rate, first_sample=sample
    )
