"""Deterministic synthetic sensor frames: test patterns for demos, benchmarks and tests.

Pure functions of (time, seed, size): any process can rebuild exactly what another published,
which is how the cross-process tests prove that a message arrived unchanged.
"""

from __future__ import annotations

import numpy as np

from fusion_stream.core import msgs

_PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5b1c6"
    "7a0000000049454e44ae426082"
)


def image(stamp_ns: int, width: int = 640, height: int = 384, frame_id: str = "camera") -> msgs.Image:
    """Colour bars that scroll with time, so consecutive frames differ."""
    shift = (stamp_ns // 10_000_000) % width
    x = (np.arange(width) + shift) % width
    bars = np.array(
        [
            [255, 255, 255],
            [255, 255, 0],
            [0, 255, 255],
            [0, 255, 0],
            [255, 0, 255],
            [255, 0, 0],
            [0, 0, 255],
            [0, 0, 0],
        ],
        np.uint8,
    )
    row = bars[(x * 8) // width]
    data = np.ascontiguousarray(np.broadcast_to(row, (height, width, 3)))
    return msgs.Image(stamp_ns=stamp_ns, frame_id=frame_id, data=data, encoding="rgb8")


def point_cloud(
    stamp_ns: int, points: int = 120_000, rings: int = 32, seed: int = 0, frame_id: str = "lidar"
) -> msgs.PointCloud:
    """A spinning-LiDAR-like sweep: rings of points on a noisy cylinder, with time offsets."""
    rng = np.random.default_rng(seed + stamp_ns % 1_000_003)
    per_ring = max(1, points // rings)
    az = np.tile(np.linspace(-np.pi, np.pi, per_ring, endpoint=False, dtype=np.float32), rings)
    ring = np.repeat(np.arange(rings, dtype=np.float32), per_ring)
    elev = np.deg2rad(-25.0 + ring * (40.0 / max(1, rings - 1))).astype(np.float32)
    rng_m = (20.0 + rng.normal(0.0, 0.05, az.shape)).astype(np.float32)
    data = np.empty((az.size, 6), np.float32)
    data[:, 0] = rng_m * np.cos(elev) * np.cos(az)
    data[:, 1] = rng_m * np.cos(elev) * np.sin(az)
    data[:, 2] = rng_m * np.sin(elev)
    data[:, 3] = rng.uniform(0, 1, az.shape)
    data[:, 4] = ring
    data[:, 5] = (az + np.pi) / (2 * np.pi) * 0.1  # one rotation per 100 ms
    return msgs.PointCloud(
        stamp_ns=stamp_ns, frame_id=frame_id, data=data, fields=("x", "y", "z", "intensity", "ring", "time_offset")
    )


def radar_scan(stamp_ns: int, points: int = 64, seed: int = 0, frame_id: str = "radar") -> msgs.RadarScan:
    rng = np.random.default_rng(seed + stamp_ns % 1_000_003)
    data = rng.normal(0, 10, (points, 5)).astype(np.float32)
    return msgs.RadarScan(stamp_ns=stamp_ns, frame_id=frame_id, data=data)


def audio_chunk(
    first_sample: int,
    sample_rate: int = 48_000,
    samples: int = 960,
    channels: int = 4,
    start_ns: int = 0,
    frame_id: str = "mic_array",
) -> msgs.AudioChunk:
    """A 1 kHz tone on every channel; ``stamp_ns`` follows from the sample count."""
    n = np.arange(first_sample, first_sample + samples)
    tone = (0.1 * np.sin(2 * np.pi * 1000.0 * n / sample_rate)).astype(np.float32)
    data = np.ascontiguousarray(np.broadcast_to(tone, (channels, samples)))
    stamp = start_ns + first_sample * 1_000_000_000 // sample_rate
    return msgs.AudioChunk(
        stamp_ns=stamp, frame_id=frame_id, data=data, sample_rate=sample_rate, first_sample=first_sample
    )


def sample_messages(seed: int = 0) -> dict[str, msgs.Message]:
    """One small message of every type (and a SyncedFrame of several), keyed by topic."""
    t = 1_700_000_000_000_000_000 + seed * 1_000_003
    cloud = point_cloud(t, points=512, rings=16, seed=seed)
    cam = image(t + 1_000, width=64, height=48)
    radar = radar_scan(t + 2_000, seed=seed)
    audio = audio_chunk(seed * 960, start_ns=t, samples=480)
    boxes = msgs.Detections(
        stamp_ns=t,
        frame_id="base_link",
        boxes=(
            msgs.Box3D(
                center=(10.5, -2.0, 0.9),
                size=(4.5, 1.9, 1.6),
                yaw=0.3,
                velocity=(5.0, 0.1),
                label="car",
                score=0.87,
                track_id=7,
            ),
            msgs.Box3D(
                center=(30.0, 4.0, 1.5),
                size=(7.0, 2.5, 3.2),
                yaw=-1.2,
                velocity=(0.0, 0.0),
                label="truck",
                score=0.5,
                attributes={"siren": True, "lights": "on"},
            ),
        ),
    )
    return {
        "/camera/front/image": cam,
        "/camera/front/compressed": msgs.CompressedImage(stamp_ns=t, frame_id="camera", data=_PNG_1X1, format="png"),
        "/lidar/top/points": cloud,
        "/radar/front/points": radar,
        "/audio/array/chunk": audio,
        "/detections": boxes,
        "/sync/frames": msgs.SyncedFrame(
            stamp_ns=t,
            frame_id="base_link",
            members={"lidar": (cloud,), "camera": (cam,), "audio": (audio, audio)},
            missing=("radar",),
        ),
        "/diagnostics": msgs.Diagnostics(
            stamp_ns=t,
            node="sample",
            level=msgs.Level.WARN,
            message="sample warning",
            values={"rate_hz": 9.5, "drops": 2, "ok": True},
        ),
        "/clock": msgs.ClockTick(stamp_ns=t + 5_000),
    }
