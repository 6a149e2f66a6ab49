"""Hostile bags: decompression bombs, lying sizes and corrupted bytes are refused quickly.

The bombs are built here, record by record: a zstd frame of RLE blocks (4 bytes per 128 KiB of
zeros, so 2 GiB costs 64 KiB of file and nothing to make) or an lz4 frame of zeros, in a chunk
that declares either its true, huge size or a small, false one. Every command that reads a bag
must refuse them with exit 2, a message naming the file and the chunk's offset, within seconds
and without the memory the bomb asks for.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import lz4.frame
import numpy as np
import pytest
import zstandard
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.typesys import Stores, get_typestore

from fusion_stream.bag.reader import MAX_CHUNK_ENV, Bag, BagLimitError
from fusion_stream.bag.recover import recover
from fusion_stream.bag.writer import BagWriter
from fusion_stream.errors import FormatError, UsageError
from fusion_stream.sources import testpattern

from .conftest import ROOT

MAGIC = b"\x89MCAP0\r\n"
GIB = 1 << 30
RLE_BLOCK = 128 << 10
SCHEMA_TEXT = b"uint8[] data\n"


# --------------------------------------------------------------------------- building bombs


def record(opcode: int, body: bytes) -> bytes:
    return struct.pack("<BQ", opcode, len(body)) + body


def string(s: str) -> bytes:
    return struct.pack("<I", len(s)) + s.encode()


def zstd_zeros(n: int, *, say_size: bool) -> bytes:
    """A zstd frame of ``n`` zeros built from RLE blocks; with ``say_size`` its header states ``n``."""
    head = struct.pack("<I", 0xFD2FB528)
    head += bytes([0xC0, 0x38]) + struct.pack("<Q", n) if say_size else bytes([0x00, 0x38])  # window 128 KiB
    blocks = []
    left = n
    while left > 0:
        size = min(left, RLE_BLOCK)
        left -= size
        blocks.append(struct.pack("<I", (size << 3) | (1 << 1) | (left == 0))[:3] + b"\x00")
    return head + b"".join(blocks)


def lz4_zeros(n: int) -> bytes:
    """An lz4 frame of ``n`` zeros that does not state its size, compressed piece by piece."""
    comp = lz4.frame.LZ4FrameCompressor()
    zeros = bytes(16 << 20)
    parts = [comp.begin()]
    for start in range(0, n, len(zeros)):
        parts.append(comp.compress(zeros[: min(len(zeros), n - start)]))
    parts.append(comp.flush())
    return b"".join(parts)


def chunk(data: bytes, compression: str, declared: int) -> bytes:
    body = struct.pack("<QQQI", 1_000, 2_000, declared, 0) + string(compression) + struct.pack("<Q", len(data)) + data
    return record(0x06, body)


def write_mcap(path: Path, chunk_record: bytes, *, indexed: bool = False) -> Path:
    """Header, schema, channel, one message, the given chunk, and (``indexed``) a summary."""
    schema = record(
        0x03, struct.pack("<H", 1) + string("t/msg/Blob") + string("ros2msg") + string(SCHEMA_TEXT.decode())
    )
    channel = record(0x04, struct.pack("<HH", 1, 1) + string("/blob") + string("cdr") + struct.pack("<I", 0))
    message = record(0x05, struct.pack("<HIQQ", 1, 0, 500, 500) + b"\x00\x01\x00\x00" + struct.pack("<I", 0))
    data = MAGIC + record(0x01, string("ros2") + string("hostile")) + schema + channel + message
    chunk_offset = len(data)
    data += chunk_record + record(0x0F, struct.pack("<I", 0))
    summary_start = 0
    if indexed:
        summary_start = len(data)
        _, _, declared, _, comp_len = struct.unpack_from("<QQQII", chunk_record, 9)
        compression = chunk_record[9 + 32 : 9 + 32 + comp_len].decode()
        (data_len,) = struct.unpack_from("<Q", chunk_record, 9 + 32 + comp_len)
        index = (
            struct.pack("<QQQQ", 1_000, 2_000, chunk_offset, len(chunk_record))
            + struct.pack("<I", 0)
            + struct.pack("<Q", 0)
            + string(compression)
            + struct.pack("<QQ", data_len, declared)
        )
        stats = struct.pack("<QHIIII", 2, 1, 1, 0, 0, 1) + struct.pack("<QQ", 500, 2_000)
        stats += struct.pack("<I", 10) + struct.pack("<HQ", 1, 2)
        data += schema + channel + record(0x0B, stats) + record(0x08, index)
    data += record(0x02, struct.pack("<QQI", summary_start, 0, 0)) + MAGIC
    path.write_bytes(data)
    return path


BOMBS: dict[str, Callable[[Path], Path]] = {
    # 2 GiB of zeros, and the chunk says so: refused from the header, nothing inflated
    "zstd-honest": lambda p: write_mcap(p, chunk(zstd_zeros(2 * GIB, say_size=False), "zstd", 2 * GIB)),
    # 2 GiB of zeros in a chunk that claims 4 KiB: inflation stops one byte past 4 KiB
    "zstd-lying": lambda p: write_mcap(p, chunk(zstd_zeros(2 * GIB, say_size=False), "zstd", 4096)),
    # the frame header says 2 GiB (zstandard.decompress believes it), the chunk and its index 4 KiB
    "zstd-frame-says-2GiB-indexed": lambda p: write_mcap(
        p, chunk(zstd_zeros(2 * GIB, say_size=True), "zstd", 4096), indexed=True
    ),
    # the same lie with the index: the messages are read within the bound
    "zstd-lying-indexed": lambda p: write_mcap(
        p, chunk(zstd_zeros(2 * GIB, say_size=False), "zstd", 4096), indexed=True
    ),
    "lz4-lying": lambda p: write_mcap(p, chunk(lz4_zeros(256 << 20), "lz4", 4096)),
    "lz4-honest": lambda p: write_mcap(p, chunk(lz4_zeros(256 << 20), "lz4", 3 * GIB)),
}


def test_the_bombs_are_real(tmp_path: Path) -> None:
    """What the attack files hold: the frames inflate to zeros and the file is small."""
    frame = zstd_zeros(2 * GIB, say_size=True)
    assert zstandard.frame_content_size(frame) == 2 * GIB
    with zstandard.ZstdDecompressor().stream_reader(zstd_zeros(2 * GIB, say_size=False)) as r:
        assert r.read(1 << 20) == bytes(1 << 20)
    assert lz4.frame.LZ4FrameDecompressor().decompress(lz4_zeros(32 << 20), max_length=1 << 20) == bytes(1 << 20)
    path = BOMBS["zstd-lying"](tmp_path / "bomb.mcap")
    assert path.stat().st_size < 70_000


# --------------------------------------------------------------------------- in process


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_bomb_is_refused_by_the_reader_quickly(kind: str, tmp_path: Path) -> None:
    path = BOMBS[kind](tmp_path / f"{kind}.mcap")
    t0 = time.monotonic()
    with Bag(path) as bag:
        if kind in ("zstd-lying-indexed",):  # the index alone cannot tell: info reads no chunk
            assert bag.info().message_count == 2
        else:
            with pytest.raises(BagLimitError, match=rf"{path.name}: the chunk at offset \d+ .*(bomb|limit)"):
                bag.info()
        with pytest.raises(BagLimitError, match=rf"{path.name}: the chunk at offset \d+"):
            list(bag.messages())
    with pytest.raises(BagLimitError, match="offset"):
        recover(path, tmp_path / "out.mcap")
    assert not (tmp_path / "out.mcap").exists() and not list(tmp_path.glob(".*partial"))
    assert time.monotonic() - t0 < 3.0


def test_records_that_claim_more_than_there_is_are_format_errors(tmp_path: Path) -> None:
    """A length field is checked against what is left of the file or chunk before reading."""
    small = zstandard.compress(record(0x05, struct.pack("<HIQQ", 1, 0, 1, 1)))
    huge_message = record(0x05, b"")[:1] + struct.pack("<Q", 2**62)  # a message of 4 EiB in a chunk
    cases = {
        "message-2^62-in-chunk": chunk(zstandard.compress(huge_message), "zstd", len(huge_message)),
        "message-shorter-than-header": chunk(zstandard.compress(record(0x05, b"\x01\x00")), "zstd", 11),
        "chunk-data-2^63": chunk(small, "zstd", 33)[: 9 + 28 + 8] + struct.pack("<Q", 2**63) + small,
        "unknown-compression": chunk(small, "brotli", 33),
        "size-short-of-declared": chunk(small, "zstd", 1000),
        "not-zstd": chunk(b"\x00" * 64, "zstd", 64),
    }
    for name, rec in cases.items():
        path = write_mcap(tmp_path / f"{name}.mcap", rec)
        with Bag(path) as bag:
            info = bag.info()  # not indexed: what reads, and why the rest does not
            assert not info.indexed and info.problem.startswith(str(path)), name
            with pytest.raises(FormatError, match=re.escape(str(path))):
                list(bag.messages())
    # a top-level record that claims more than the file: the file was cut short
    path = tmp_path / "claims.mcap"
    path.write_bytes(MAGIC + record(0x01, string("ros2") + string("x")) + b"\x03" + struct.pack("<Q", 2**63))
    with Bag(path) as bag:
        assert "claims 9223372036854775808 bytes" in bag.info().problem


def test_the_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size = 9 << 18  # 2.25 MiB of zeros: records of opcode 0 and length 0, skipped
    path = write_mcap(tmp_path / "big.mcap", chunk(zstd_zeros(size, say_size=False), "zstd", size))
    with Bag(path) as bag:  # within the default limit: read
        info = bag.info()
        assert info.message_count == 1 and not info.problem
    monkeypatch.setenv(MAX_CHUNK_ENV, "2")
    with Bag(path) as bag, pytest.raises(BagLimitError, match=f"2 MiB.*{MAX_CHUNK_ENV}"):
        bag.info()
    with Bag(path, max_chunk_bytes=4 << 20) as bag:
        assert bag.info().message_count == 1
    monkeypatch.setenv(MAX_CHUNK_ENV, "lots")
    with pytest.raises(UsageError, match=MAX_CHUNK_ENV):
        Bag(path)


def ros1_bag(path: Path, compression: Ros1Writer.CompressionFormat, size: int) -> Path:
    """A real ROS 1 bag (rosbags' writer) whose one chunk holds a message of ``size`` zeros."""
    store = get_typestore(Stores.ROS1_NOETIC)
    Array = store.types["std_msgs/msg/UInt8MultiArray"]
    Layout = store.types["std_msgs/msg/MultiArrayLayout"]
    msg = Array(layout=Layout(dim=[], data_offset=0), data=np.zeros(size, dtype=np.uint8))
    writer = Ros1Writer(path)
    writer.set_compression(compression)
    with writer:
        conn = writer.add_connection("/blob", "std_msgs/msg/UInt8MultiArray", typestore=store)
        writer.write(conn, 1_000_000_000, store.serialize_ros1(msg, "std_msgs/msg/UInt8MultiArray"))
    return path


@pytest.mark.parametrize("compression", ["bz2", "lz4"])
def test_ros1_chunks_are_inflated_within_their_declared_size(
    compression: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ros1_bag(tmp_path / "zeros.bag", Ros1Writer.CompressionFormat[compression.upper()], 8 << 20)
    with Bag(path) as bag:
        assert [m.topic for m in bag.messages()] == ["/blob"]
    monkeypatch.setenv(MAX_CHUNK_ENV, "1")  # declared 8 MiB: refused before inflating
    with pytest.raises(BagLimitError, match=r"zeros\.bag: the chunk at offset \d+ declares"):
        Bag(path)
    monkeypatch.delenv(MAX_CHUNK_ENV)
    # the chunk header's size field says 4 KiB (same width: the file stays valid otherwise)
    data = path.read_bytes()
    at = data.index(b"size=") + 5
    declared = struct.unpack_from("<I", data, at)[0]
    assert declared > 8 << 20
    path.write_bytes(data[:at] + struct.pack("<I", 4096) + data[at + 4 :])
    with Bag(path) as bag, pytest.raises(BagLimitError, match="inflates to more than the 4096 bytes"):
        list(bag.messages())


# --------------------------------------------------------------------------- every command


def run_measured(args: list[str], timeout: float) -> tuple[int, str, float, int]:
    """Exit status, stderr, seconds and peak RSS (KiB) of one CLI run, killed after ``timeout``."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusion_stream.cli", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        stderr = proc.stderr.read() if proc.stderr else ""
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr:
        proc.stderr.close()
    return proc.returncode, stderr, time.monotonic() - t0, usage.ru_maxrss


COMMANDS = {
    "bag info": lambda bag, out: ["bag", "info", str(bag)],
    "replay": lambda bag, out: ["replay", str(bag), "--rate", "100"],
    "eval": lambda bag, out: ["eval", str(bag), "-o", str(out)],
    "bag convert": lambda bag, out: ["bag", "convert", str(bag), "-o", str(out / "c.mcap")],
    "bag recover": lambda bag, out: ["bag", "recover", str(bag), "-o", str(out / "r.mcap")],
}


@pytest.mark.parametrize(
    ("command", "kind"), [(c, "zstd-lying") for c in sorted(COMMANDS)] + [("bag info", "zstd-honest")]
)
def test_every_command_refuses_a_bomb_with_exit_2(command: str, kind: str, tmp_path: Path) -> None:
    path = BOMBS[kind](tmp_path / "bomb.mcap")
    rc, stderr, seconds, rss_kib = run_measured(COMMANDS[command](path, tmp_path), timeout=60)
    assert rc == 2, stderr
    assert "Traceback" not in stderr and f"{path}: the chunk at offset " in stderr, stderr
    assert seconds < 30  # eval imports torch; the refusal itself takes milliseconds
    assert rss_kib < 1_500_000, f"{rss_kib} KiB"  # the bomb asks for 2 GiB


# --------------------------------------------------------------------------- corruption campaign


def corrupted_cases(data: bytes, count: int, seed: int) -> list[tuple[str, bytes]]:
    """Truncations and single-byte changes at ``count`` offsets spread over the file."""
    rng = random.Random(seed)
    offsets = sorted({rng.randrange(len(data)) for _ in range(count)} | {0, 7, 8, 9, 16, len(data) - 1})
    cases: list[tuple[str, bytes]] = []
    for off in offsets:
        cases.append((f"truncated at {off}", data[:off]))
        flip = bytes([data[off] ^ (1 << rng.randrange(8))])
        cases.append((f"bit flipped at {off}", data[:off] + flip + data[off + 1 :]))
        cases.append((f"byte 0xff at {off}", data[:off] + b"\xff" + data[off + 1 :]))
    return cases


def campaign(source: Path, tmp_path: Path, count: int, seed: int) -> tuple[int, int, int]:
    """(cases, read, refused) for ``Bag.info`` and reading every message of each corrupted copy.
    Anything other than success or a FormatError fails the test; so does a case over 2 s."""
    data = source.read_bytes()
    read = refused = 0
    cases = corrupted_cases(data, count, seed)
    for label, content in cases:
        path = tmp_path / f"case{source.suffix}"
        path.write_bytes(content)
        t0 = time.monotonic()
        try:
            with Bag(path) as bag:
                bag.info()
                for raw in bag.messages():
                    raw.decode()
            read += 1
        except FormatError:
            refused += 1
        assert time.monotonic() - t0 < 2.0, f"{source.name} {label}: took {time.monotonic() - t0:.1f} s"
    return len(cases), read, refused


def test_corrupted_mcap_bags_are_read_or_refused_cleanly(tmp_path: Path) -> None:
    source = tmp_path / "good.mcap"
    with BagWriter(source, chunk_size=20_000) as writer:
        for k, (topic, msg) in enumerate(list(testpattern.sample_messages(5).items()) * 2):
            writer.write(topic, dataclasses.replace(msg, stamp_ns=msg.stamp_ns + k), 1_000 + k)
    cases, read, refused = campaign(source, tmp_path, count=int(os.environ.get("BAG_CAMPAIGN_OFFSETS", "60")), seed=1)
    print(f"mcap {source.stat().st_size} bytes: {cases} cases, {read} read, {refused} refused with FormatError")
    assert read + refused == cases and refused > 0


SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "rosbag1_luminar" / "test.bag").exists(), reason="shared data not present")
def test_corrupted_ros1_bags_are_read_or_refused_cleanly(tmp_path: Path) -> None:
    source = SHARED / "rosbag1_luminar" / "test.bag"
    cases, read, refused = campaign(source, tmp_path, count=int(os.environ.get("BAG_CAMPAIGN_OFFSETS", "15")), seed=2)
    print(f"ros1 {source.stat().st_size} bytes: {cases} cases, {read} read, {refused} refused with FormatError")
    assert read + refused == cases and refused > 0


def test_a_crc_mismatch_in_a_chunk_is_damage(tmp_path: Path) -> None:
    records = record(0x05, struct.pack("<HIQQ", 1, 0, 700, 700) + b"\x00\x01\x00\x00" + struct.pack("<I", 0))
    good = chunk(zstandard.compress(records), "zstd", len(records))
    crc = struct.pack("<I", zlib.crc32(records) ^ 1)
    bad = good[: 9 + 24] + crc + good[9 + 28 :]
    with Bag(write_mcap(tmp_path / "ok.mcap", good)) as bag:
        assert bag.info().message_count == 2
    with Bag(write_mcap(tmp_path / "crc.mcap", bad)) as bag:
        assert "CRC does not match" in bag.info().problem


ROS2_METADATA = """rosbag2_bagfile_information:
  version: 5
  storage_identifier: mcap
  relative_file_paths: [data.mcap]
  duration: {nanoseconds: 1500}
  starting_time: {nanoseconds_since_epoch: 500}
  message_count: 2
  topics_with_message_count:
    - topic_metadata: {name: /blob, type: t/msg/Blob, serialization_format: cdr, offered_qos_profiles: ""}
      message_count: 2
  compression_format: ""
  compression_mode: ""
"""


@pytest.mark.parametrize("kind", ["zstd-frame-says-2GiB-indexed", "zstd-honest", "lz4-lying"])
def test_a_ros2_bag_with_mcap_storage_is_checked_before_rosbags_inflates_it(kind: str, tmp_path: Path) -> None:
    """rosbags' own MCAP storage reader trusts the zstd frame header and bounds lz4 not at all."""
    (tmp_path / "metadata.yaml").write_text(ROS2_METADATA)
    BOMBS[kind](tmp_path / "data.mcap")
    t0 = time.monotonic()
    with pytest.raises(BagLimitError, match=r"data\.mcap: the chunk at offset \d+"):
        Bag(tmp_path)
    assert time.monotonic() - t0 < 2.0
