"""A producer that fills loaned shared-memory arrays in place and publishes them (no copy), for
tests/test_shm_loan.py: ``python -m tests.loan_publisher TOPIC``. It prints its ``remote_endpoint``,
publishes images of :func:`pattern` until a line arrives on stdin, then prints its pool's counts."""

from __future__ import annotations

import json
import select
import sys
import zlib

import numpy as np

from fusion_stream.core import msgs
from fusion_stream.runtime.transport import Publisher

SHAPE = (600, 800, 3)  # 1.44 MB: above the default threshold, below the 2 MiB slots
_BASE = (np.arange(int(np.prod(SHAPE)), dtype=np.uint32) * 7 % 251).astype(np.uint16).reshape(SHAPE)


def pattern(i: int) -> np.ndarray:
    """The bytes of image ``i``: a ramp shifted by ``i`` (every image differs from its neighbours)."""
    return ((_BASE + i % 251) % 251).astype(np.uint8)


def checksum(data: np.ndarray) -> str:
    return f"crc{zlib.crc32(memoryview(np.ascontiguousarray(data)).cast('B')):08x}"


def main(topic: str) -> None:
    with Publisher(topic, shm=True, shm_threshold=2 << 20, remote_endpoint="tcp://127.0.0.1:0") as pub:
        print(json.dumps({"remote": pub.remote_endpoint}), flush=True)
        i = 0
        while not select.select([sys.stdin], [], [], 0.02)[0]:
            i += 1
            with pub.loaned(SHAPE, np.uint8) as data:
                data[...] = pattern(i)  # the producer writes straight into the slot
                pub.publish(msgs.Image(stamp_ns=i, frame_id=checksum(data), data=data, encoding="rgb8"))
        stats = pub.stats
        counts = {"published": i, "loans": stats.shm_loans, "fallbacks": stats.shm_fallback}
        print(json.dumps(counts | {"segment": pub.shm_segment}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
