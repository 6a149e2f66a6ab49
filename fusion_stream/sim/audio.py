"""A microphone array hearing the world: emergency-vehicle sirens plus road noise.

Each microphone hears the siren as it was *emitted* one propagation delay earlier, from where the
vehicle was then, attenuated by distance. Solving that delay per sample gives the arrival-time
differences between microphones (what direction finding uses) and the Doppler shift (the pitch
drops as the vehicle passes) without modelling either separately.

Time is counted in samples since the scenario clock's zero, so chunks are exact: chunk k holds
samples ``[k·n, (k+1)·n)`` and consecutive chunks join with no gap or overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fusion_stream.core.calib import Transform
from fusion_stream.errors import ParamError
from fusion_stream.sim.scene import ego_velocity
from fusion_stream.sim.world import World

SPEED_OF_SOUND = 343.0


@dataclass(frozen=True)
class Siren:
    """A "wail" siren: a tone swept sinusoidally between two pitches, with two harmonics."""

    low_hz: float = 650.0
    high_hz: float = 1500.0
    period_s: float = 4.0
    level: float = 2.0
    """Amplitude at 1 m (full scale is 1.0)."""
    harmonics: tuple[float, ...] = (1.0, 0.35, 0.15)

    def __post_init__(self) -> None:
        cycles = self.center_hz * self.period_s
        if abs(cycles - round(cycles)) > 1e-9:
            raise ParamError("period_s", f"centre pitch × period must be a whole number of cycles, got {cycles}")

    @property
    def center_hz(self) -> float:
        return (self.low_hz + self.high_hz) / 2

    def frequency(self, tau: np.ndarray) -> np.ndarray:
        """Instantaneous pitch (Hz) of the fundamental at emission times ``tau``."""
        sweep = (self.high_hz - self.low_hz) / 2
        return np.asarray(self.center_hz + sweep * np.sin(2 * np.pi * tau / self.period_s))

    def phase(self, tau: np.ndarray) -> np.ndarray:
        """Phase (rad) of the fundamental: the integral of :meth:`frequency`."""
        sweep = (self.high_hz - self.low_hz) / 2
        w = 2 * np.pi / self.period_s
        return np.asarray(2 * np.pi * (self.center_hz * tau - sweep / w * np.cos(w * tau)))

    def waveform(self, tau: np.ndarray) -> np.ndarray:
        phase = self.phase(tau)
        return np.asarray(sum(a * np.sin((i + 1) * phase) for i, a in enumerate(self.harmonics)))


@dataclass(frozen=True)
class ArraySpec:
    sample_rate: int = 48_000
    chunk_samples: int = 960
    """20 ms at 48 kHz."""
    road_noise: float = 0.01
    """RMS of the road noise at each microphone."""

    def __post_init__(self) -> None:
        for key in ("sample_rate", "chunk_samples"):
            if getattr(self, key) <= 0:
                raise ParamError(key, f"must be > 0, got {getattr(self, key)}")


def chunk(
    world: World,
    first_sample: int,
    mount: Transform,
    microphones: np.ndarray,
    spec: ArraySpec,
    *,
    siren: Siren | None = None,
    salt: int = 0,
) -> np.ndarray:
    """Channels × samples (float32) starting at sample ``first_sample`` of the scenario clock.

    ``mount`` is array → rig and ``microphones`` the M×3 positions in the array frame."""
    siren = siren or Siren()
    fs, n = spec.sample_rate, spec.chunk_samples
    t0 = first_sample / fs
    dt = np.arange(n) / fs  # seconds after t0; small numbers keep the phase precise
    ex, ey, eyaw = world.ego_pose(t0)
    rig = Transform.from_rpy((0.0, 0.0, 0.0), (0.0, 0.0, eyaw))  # rig orientation, ego at origin
    mics0 = rig.apply(mount.apply(microphones))  # M×3, relative to the ego at t0
    ego_v = ego_velocity(world, t0)
    out = np.zeros((len(microphones), n))
    for state in world.state(t0):
        if not state.actor.siren:
            continue
        src0 = np.array([state.center[0] - ex, state.center[1] - ey, 1.2])
        src_v = np.array([state.velocity[0], state.velocity[1], 0.0])
        for m, mic in enumerate(mics0):
            # receiver at time t0+dt; emission at t0+dt-delay from where the source was then
            receiver = mic + np.outer(dt, ego_v)
            delay = np.linalg.norm(src0 + np.outer(dt, src_v) - receiver, axis=1) / SPEED_OF_SOUND
            for _ in range(3):  # fixed point: the source moved while the sound travelled
                emitted = src0 + np.outer(dt - delay, src_v)
                delay = np.linalg.norm(emitted - receiver, axis=1) / SPEED_OF_SOUND
            distance = np.maximum(delay * SPEED_OF_SOUND, 1.0)
            tau = _emission_time(first_sample, fs, siren.period_s) + dt - delay
            out[m] += siren.level * siren.waveform(tau) / distance
    if spec.road_noise > 0:
        out += _road_noise(world.scenario.seed, salt, first_sample, len(microphones), n, spec.road_noise)
    return out.astype(np.float32)


def _emission_time(first_sample: int, fs: int, period_s: float) -> float:
    """``first_sample / fs`` reduced modulo the siren period in exact integer arithmetic, so the
    phase stays precise when the scenario clock is Unix time (10^9 s)."""
    period_samples = round(period_s * fs)
    return (first_sample % period_samples) / fs


def _road_noise(seed: int, salt: int, first_sample: int, channels: int, n: int, rms: float) -> np.ndarray:
    """Low-frequency-weighted noise, partly shared between microphones (the road under the car
    reaches all of them) and partly independent (wind on each capsule)."""
    rng = np.random.default_rng([seed, 4, salt, first_sample])
    taps = 16
    kernel = np.hanning(taps)
    kernel /= math.sqrt(float(np.sum(kernel**2)))
    shared = np.convolve(rng.standard_normal(n + taps - 1), kernel, mode="valid")
    own = np.stack([np.convolve(rng.standard_normal(n + taps - 1), kernel, mode="valid") for _ in range(channels)])
    return np.asarray(rms * (0.6 * shared + 0.8 * own))


def steering_delays(directions: np.ndarray, microphones_rig: np.ndarray) -> np.ndarray:
    """Far-field arrival delay (s) at each microphone, relative to the array centre, for unit
    ``directions`` (D×3, pointing *towards* the source): D×M. Used to check the physics."""
    centred = microphones_rig - microphones_rig.mean(axis=0)
    return np.asarray(-(directions @ centred.T) / SPEED_OF_SOUND)
