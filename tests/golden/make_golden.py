"""Write (or ``--check``) the golden wire files: one encoded message of each type, built from fixed
values, in the test-file container of ``docs/wire.md`` (not the wire itself)::

    u32 LE  frame count
    then per frame:  u32 LE length, that many bytes

Regenerate only on purpose, after bumping ``WIRE_VERSION`` for a change of the bytes:
``python tests/golden/make_golden.py`` (``--check`` exits 1 if a file would change)."""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fusion_stream.core import msgs, wire

HERE = Path(__file__).resolve().parent
STAMP_NS = 1_700_000_000_123_456_789
"""Capture stamp of every golden message (members of the synced frame are offset from it)."""
PUB_NS = 1_700_000_000_150_000_000
SRC = 0x0BADF00D
SEQ = 42
_COUNT = struct.Struct("<I")


def _cloud(n: int, frame_id: str) -> msgs.PointCloud:
    i = np.arange(n, dtype=np.float32)
    data = np.stack([i * 0.5, -i * 0.25, np.full(n, 1.5, np.float32), (i % 8) / 8], axis=1)
    return msgs.PointCloud(stamp_ns=STAMP_NS, frame_id=frame_id, data=data, fields=("x", "y", "z", "intensity"))


def _image(stamp_ns: int) -> msgs.Image:
    data = (np.arange(4 * 6 * 3, dtype=np.uint8) * 3).reshape(4, 6, 3)
    return msgs.Image(stamp_ns=stamp_ns, frame_id="camera_front", data=data, encoding="rgb8")


def _audio(first: int) -> msgs.AudioChunk:
    data = (np.arange(2 * 8, dtype=np.int16) - 8).reshape(2, 8) * 1000
    stamp = STAMP_NS + first * 1_000_000_000 // 48_000
    return msgs.AudioChunk(
        stamp_ns=stamp, frame_id="mic_array", data=data.astype(np.int16), sample_rate=48_000, first_sample=first
    )


def messages() -> dict[str, tuple[str, msgs.Message]]:
    """File stem → (topic, message): every message type, the synced frame with several members."""
    radar = msgs.RadarScan(
        stamp_ns=STAMP_NS,
        frame_id="radar_front",
        data=np.array(
            [[10.0, 0.5, 0.2, -3.25, 12.0], [25.5, -4.0, 0.5, 0.0, -5.5], [7.0, 2.0, 0.0, 1.5, 3.0]], np.float32
        ),
        fields=("x", "y", "z", "radial_velocity", "rcs"),
    )
    boxes = (
        msgs.Box3D(
            center=(12.5, -3.0, 0.9),
            size=(4.5, 1.9, 1.6),
            yaw=0.25,
            velocity=(8.0, 0.5),
            label="car",
            score=0.875,
            track_id=7,
        ),
        msgs.Box3D(
            center=(30.0, 4.0, 1.2),
            size=(6.0, 2.4, 2.8),
            yaw=-1.5,
            label="ambulance",
            score=0.5,
            attributes={"siren": True, "lane": 2, "note": "golden", "bearing_deg": 12.5},
        ),
    )
    return {
        "point_cloud": ("/lidar/top/points", _cloud(200, "lidar_top")),  # 3200 bytes: a frame of its own
        "image": ("/camera/front/image", _image(STAMP_NS)),  # 72 bytes: inline in the header
        "compressed_image": (
            "/camera/front/compressed",
            msgs.CompressedImage(
                stamp_ns=STAMP_NS, frame_id="camera_front", data=b"\x89PNG\r\n\x1a\n" + bytes(range(24)), format="png"
            ),
        ),
        "radar_scan": ("/radar/front/points", radar),
        "audio_chunk": ("/audio/array/chunk", _audio(96)),
        "detections": ("/detections", msgs.Detections(stamp_ns=STAMP_NS, frame_id="base_link", boxes=boxes)),
        "detections_empty": ("/detections", msgs.Detections(stamp_ns=STAMP_NS, frame_id="base_link")),
        "diagnostics": (
            "/diagnostics",
            msgs.Diagnostics(
                stamp_ns=STAMP_NS,
                node="lidar",
                level=msgs.Level.WARN,
                message="/lidar/top/points at 8.9 Hz of 10",
                values={"errors": 0, "cpu_pct": 41.5, "healthy": False, "busy_in": "timer"},
            ),
        ),
        "clock_tick": ("/clock", msgs.ClockTick(stamp_ns=STAMP_NS)),
        "synced_frame": (
            "/sync/frames",
            msgs.SyncedFrame(
                stamp_ns=STAMP_NS,
                frame_id="base_link",
                members={
                    "lidar": (_cloud(200, "lidar_top"),),
                    "camera": (_image(STAMP_NS + 4_000_000),),
                    "audio": (_audio(0), _audio(8)),
                },
                missing=("radar",),
            ),
        ),
    }


def encode(topic: str, msg: msgs.Message) -> list[bytes]:
    """The frames of ``msg`` as a publisher sends them, with the fixed sequence, source and time."""
    frames = wire.encode(topic, msg, seq=SEQ, src=SRC, pub_ns=PUB_NS)
    return [f.tobytes() if isinstance(f, np.ndarray) else bytes(f) for f in frames]


def pack(frames: Sequence[bytes]) -> bytes:
    """Frames in the test-file container: a u32 LE count, then each frame as u32 LE length + bytes."""
    return _COUNT.pack(len(frames)) + b"".join(_COUNT.pack(len(f)) + f for f in frames)


def unpack(data: bytes) -> list[bytes]:
    """The frames of a test-file container; ValueError if it is not exactly one."""
    (count,) = _COUNT.unpack_from(data, 0)
    pos, frames = _COUNT.size, []
    for _ in range(count):
        (n,) = _COUNT.unpack_from(data, pos)
        pos += _COUNT.size
        if pos + n > len(data):
            raise ValueError(f"frame {len(frames)} runs past the end of the file")
        frames.append(data[pos : pos + n])
        pos += n
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} bytes after the last frame")
    return frames


def golden() -> dict[str, bytes]:
    """File name → contents, as they should be."""
    return {f"{stem}.bin": pack(encode(topic, msg)) for stem, (topic, msg) in messages().items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    args = ap.parse_args(argv)
    stale = []
    for name, content in golden().items():
        path = HERE / name
        if args.check:
            if not path.is_file() or path.read_bytes() != content:
                stale.append(name)
        else:
            path.write_bytes(content)
    if stale:
        print(f"golden files differ from the encoder: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
