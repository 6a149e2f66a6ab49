"""One simulated sensor frame as the sensor node publishes it, given its capture time.

Shared by the sensor nodes (live, on their capture grids) and by :mod:`fusion_stream.sim.recording`
(offline, straight into a bag), so both produce the same messages for the same instant."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

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


def camera_image(
    world: World,
    sensor: calib.Sensor,
    model: CameraModel,
    at_ns: int,
    epoch_ns: int = 0,
    *,
    out: np.ndarray | None = None,
) -> Image:
    """The frame captured at ``at_ns``, rendered into ``out`` when given (see :meth:`CameraModel.render`)."""
    frame = model.render(world, _t(at_ns, epoch_ns), sensor.extrinsics, stamp_ns=at_ns, out=out)
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


class SweepsAsCast:
    """The LiDAR's sweeps on its capture grid, each cast a sector at a time while the head turns.

    :meth:`poll` is called often (every sector's worth of time); it casts what the head has passed
    and returns the sweep once it has ended, a few ms later rather than a whole cast later. The
    message equals :func:`lidar_sweep`'s for the same start. A process that falls behind by more
    than a sweep skips the sweeps it missed, the way a real sensor's driver drops rotations, and
    counts them in :attr:`skipped`; one that is late finishes the sweep it was casting and
    publishes it late.

    ``out`` gives the array each finished sweep's points are written into, asked for with the
    shape it must have (:attr:`~.lidar.LidarSpec.max_points` rows × 6 float32): a publisher's
    ``loan``, so that the points are written straight into shared memory. The message then holds
    the filled leading rows of that array; the points are the same either way."""

    def __init__(
        self,
        world: World,
        sensor: calib.Sensor,
        spec: lidar.LidarSpec,
        epoch_ns: int = 0,
        *,
        out: Callable[[tuple[int, int], type[np.float32]], np.ndarray] | None = None,
    ) -> None:
        self.world, self.sensor, self.spec, self.epoch_ns = world, sensor, spec, epoch_ns
        self._out = out
        self.period_ns = round(spec.period_s * 1e9)
        self.skipped = 0
        self._last: int | None = None
        self._current: tuple[int, lidar.SweepCast] | None = None

    def poll(self, now_ns: int) -> PointCloud | None:
        """Cast what is due by ``now_ns``; the finished sweep, if one has just ended."""
        k_now = (now_ns - self.epoch_ns) // self.period_ns  # the sweep the head is in now
        if self._current is None:
            self._start(k_now)
        assert self._current is not None
        k, cast = self._current
        if k < k_now:  # the rotation has ended (late, if the process was short of CPU)
            self._current = None
            self._last = k
            buffer = None if self._out is None else self._out((self.spec.max_points, len(lidar.FIELDS)), np.float32)
            return self._cloud(k, cast.finish(buffer))
        cast.cast_until(_t(now_ns, self.epoch_ns))
        return None

    def _start(self, k: int) -> None:
        if self._last is not None:
            self.skipped += k - self._last - 1
        start = self.epoch_ns + k * self.period_ns
        cast = lidar.SweepCast(self.world, _t(start, self.epoch_ns), self.sensor.extrinsics, self.spec, stamp_ns=start)
        self._current = (k, cast)

    def _cloud(self, k: int, sweep: lidar.Sweep) -> PointCloud:
        start = self.epoch_ns + k * self.period_ns
        return PointCloud(
            stamp_ns=start - self.sensor.time_offset_ns, frame_id=self.sensor.name, data=sweep.data, fields=lidar.FIELDS
        )
