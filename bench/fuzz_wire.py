"""Fuzz campaign: hostile frames against ``wire.decode``; every outcome must be a message or a
``WireError``.

Three generators, drawn in turn from one seeded RNG (so a failure is reproducible with ``--seed``):

* **mutated**: a valid encoding of every message type (``testpattern.sample_messages``), then one
  to three mutations: bytes flipped in the header, header or array frames truncated, extended,
  dropped, duplicated or swapped, an array frame replaced by random bytes;
* **structured**: a header built field by field from the schema with values from a pool of edge
  cases (0, -1, 2**31, 2**63 - 1, 2**64 - 1, empty and long strings, every dtype string, shapes
  with zeros beside huge dimensions, too many dimensions, inline bytes of the wrong length, wrong
  types in every position), with array frames that match the declared sizes or not;
* **garbage**: random msgpack-looking bytes behind a valid prefix, and random frames.

It reports how many frames decoded, how many were refused per ``WireError`` reason, and any other
exception (type, message, the reproducing seed and index). Exit status 1 if there was any.

    python bench/fuzz_wire.py --frames 100000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from fusion_stream.core import wire
from fusion_stream.errors import WireError
from fusion_stream.sources.testpattern import sample_messages

INTS = [0, 1, -1, 2, 7, 255, 256, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1]
FLOATS = [0.0, -0.0, 1.5, float("nan"), float("inf"), -float("inf"), 1e308, 5e-324]
STRINGS = ["", "x", "lidar", "rgb8", "mono8", "bgra8", "jpeg", "png", "x" * 5000, "é\u2028\x00", "Image"]
DTYPES = [*sorted(wire._DTYPES), "|O", "<c16", ">f4", "|V8", "<M8[ns]", "", "f4", "<U4", "|b1"]
TAGS = ["Image", "CompressedImage", "PointCloud", "RadarScan", "AudioChunk", "Detections", "Diagnostics",
        "SyncedFrame", "Clock", "Pickle", ""]  # fmt: skip


@dataclass
class Outcome:
    frames: int = 0
    decoded: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    by_generator: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def unexpected_count(self) -> int:
        """Exceptions other than WireError, plus those only the decoder's last-resort guard caught
        (reason ``unexpected``: a defect whose root the decoder's checks do not cover)."""
        return len(self.unexpected) + self.refused["unexpected"]


def _valid_frames() -> list[list[bytes]]:
    out = []
    for i, msg in enumerate(sample_messages(3).values()):
        frames = wire.encode("/t", msg, seq=i + 1, src=7, pub_ns=1)
        out.append([f if isinstance(f, bytes) else np.asarray(f).tobytes() for f in frames])
    return out


def _flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def mutated(rng: random.Random, valid: list[list[bytes]]) -> list[bytes]:
    frames = list(rng.choice(valid))
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        i = rng.randrange(len(frames))
        if op == 0 and len(frames) > 1:
            frames[1] = wire.PREFIX + _flip(rng, frames[1][4:])  # keep the prefix: reach the schema
        elif op == 1:
            frames[i] = _flip(rng, frames[i])
        elif op == 2:
            frames[i] = frames[i][: rng.randrange(len(frames[i]) + 1)]
        elif op == 3:
            frames[i] = frames[i] + rng.randbytes(rng.randint(1, 64))
        elif op == 4 and len(frames) > 1:
            del frames[i]
        elif op == 5:
            frames.insert(i, frames[i])
        elif op == 6 and len(frames) > 2:
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        else:
            frames[i] = rng.randbytes(rng.randint(0, 256))
    return frames


def _value(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(INTS)
    if kind == 1:
        return rng.choice(FLOATS)
    if kind == 2:
        return rng.choice(STRINGS)
    if kind == 3:
        return [rng.choice(INTS) for _ in range(rng.randint(0, 3))]
    if kind == 4:
        return {rng.choice(STRINGS): rng.choice([*INTS, *STRINGS])}
    return None if rng.random() < 0.5 else rng.random() < 0.5


def _pick(rng: random.Random, typical: Any) -> Any:
    """Mostly the well-typed value, sometimes an edge case of any type."""
    return typical if rng.random() < 0.95 else _value(rng)


def _shape(rng: random.Random) -> list[int]:
    ndim = rng.choice([0, 1, 1, 2, 2, 2, 3, 4, 5, 9])
    dims = [rng.choice([0, 0, 1, 2, 3, 4, 6, 64, 512, *INTS]) for _ in range(ndim)]
    if rng.random() < 0.3 and dims:  # a zero beside a huge dimension: no bytes, absurd shape
        dims[rng.randrange(ndim)] = 0
    return dims


def _spec(rng: random.Random) -> tuple[list[Any], bytes | None]:
    dtype = rng.choice(DTYPES)
    shape = _shape(rng)
    size = 0
    if dtype in wire._DTYPES and all(isinstance(d, int) and 0 <= d < 4096 for d in shape):
        size = int(np.prod(shape, dtype=np.int64)) * wire._DTYPES[dtype].itemsize
    payload = rng.randbytes(min(size, 1 << 16)) if rng.random() < 0.8 else rng.randbytes(rng.randint(0, 64))
    if rng.random() < 0.4 and len(payload) <= wire.INLINE_MAX_BYTES:
        return [_pick(rng, dtype), _pick(rng, shape), payload], None
    return [_pick(rng, dtype), _pick(rng, shape)], payload


def _body(rng: random.Random, depth: int = 0) -> Any:
    tag = rng.choice(TAGS)
    strs = [rng.choice(STRINGS) for _ in range(rng.randint(0, 4))]
    by_tag: dict[str, list[Any]] = {
        "Image": [rng.choice(STRINGS)],
        "CompressedImage": [rng.choice(STRINGS)],
        "PointCloud": [strs or ["x", "y", "z", "intensity"]],
        "RadarScan": [strs],
        "AudioChunk": [rng.choice(INTS), rng.choice(INTS)],
        "Detections": [strs, [rng.choice(INTS) for _ in strs], [{} for _ in strs]],
        "Diagnostics": [rng.choice(STRINGS), rng.choice(INTS), rng.choice(STRINGS), {"k": rng.choice(INTS)}],
        "SyncedFrame": [
            [
                [rng.choice(STRINGS), rng.choice(INTS), rng.choice(STRINGS), _body(rng, depth + 1), rng.choice(INTS)]
                for _ in range(rng.randint(0, 3) if depth == 0 else 0)
            ],
            strs,
        ],
    }
    fields = [_pick(rng, f) for f in by_tag.get(tag, [])]
    if rng.random() < 0.1:
        fields.append(_value(rng))
    return [tag, *fields]


def structured(rng: random.Random) -> list[bytes]:
    specs_frames = [_spec(rng) for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))]
    header = [
        _pick(rng, rng.randint(0, 1000)),
        _pick(rng, rng.randrange(2**32)),
        _pick(rng, time.time_ns()),
        _pick(rng, rng.choice([0, 1, 2**62])),
        _pick(rng, "lidar"),
        _body(rng),
        [s for s, _ in specs_frames],
    ]
    if rng.random() < 0.05:
        header = header[: rng.randrange(len(header))]
    frames = [b"/t", wire.PREFIX + msgspec.msgpack.encode(header)]
    frames += [f for _, f in specs_frames if f is not None]
    if rng.random() < 0.1 and len(frames) > 2:
        frames.pop()
    return frames


def garbage(rng: random.Random) -> list[bytes]:
    if rng.random() < 0.5:
        return [b"/t", wire.PREFIX + rng.randbytes(rng.randint(0, 200))]
    return [rng.randbytes(rng.randint(0, 40)) for _ in range(rng.randint(0, 5))]


def campaign(n: int, seed: int = 0, progress: Callable[[int], None] | None = None) -> Outcome:
    """Decode ``n`` hostile frames; count outcomes."""
    rng = random.Random(seed)
    valid = _valid_frames()
    gens: list[tuple[str, Callable[[], list[bytes]]]] = [
        ("mutated", lambda: mutated(rng, valid)),
        ("structured", lambda: structured(rng)),
        ("structured", lambda: structured(rng)),
        ("garbage", lambda: garbage(rng)),
    ]
    out = Outcome()
    t0 = time.perf_counter()
    for i in range(n):
        name, gen = gens[i % len(gens)]
        frames = gen()
        out.frames += 1
        out.by_generator[name] += 1
        try:
            wire.decode(frames, max_bytes=1 << 20)
            out.decoded += 1
        except WireError as err:
            out.refused[err.reason] += 1
        except Exception as err:  # noqa: BLE001  # the point of the campaign: record, do not stop
            out.unexpected.append(
                {
                    "index": i,
                    "generator": name,
                    "error": f"{type(err).__name__}: {err}"[:300],
                    "where": traceback.format_exc(limit=-2)[-600:],
                    "frames": [f[:120].hex() for f in frames],
                }
            )
        if progress is not None and i % 5000 == 0:
            progress(i)
    out.seconds = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--frames", type=int, default=100_000, help="how many hostile messages (default 100000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the outcome as JSON (for tests)")
    args = ap.parse_args(argv)
    out = campaign(args.frames, args.seed)
    if args.json:
        doc = {
            "frames": out.frames,
            "decoded": out.decoded,
            "refused": dict(out.refused),
            "unexpected": out.unexpected[:20],
            "unexpected_count": out.unexpected_count,
            "seconds": round(out.seconds, 2),
        }
        print(json.dumps(doc))
        return 1 if out.unexpected_count else 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"wire.decode under {out.frames:,} hostile messages (seed {args.seed})")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_row("decoded to a valid message", f"{out.decoded:,}")
    for reason, count in out.refused.most_common():
        table.add_row(f"WireError: {reason}", f"{count:,}")
    worst = "[bold]any other exception, or caught by the last resort[/bold]"
    table.add_row(worst, f"[bold]{out.unexpected_count}[/bold]")
    console = Console()
    console.print(table)
    gens = ", ".join(f"{k} {v:,}" for k, v in out.by_generator.items())
    console.print(f"generators: {gens}; {out.frames / out.seconds:,.0f} messages/s ({out.seconds:.1f} s)")
    for u in out.unexpected[:5]:
        console.print(u)
    return 1 if out.unexpected_count else 0


if __name__ == "__main__":
    sys.exit(main())
