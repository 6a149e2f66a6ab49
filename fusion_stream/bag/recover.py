"""Rebuild a whole, indexed MCAP file from one whose writer died (``kill -9``, power loss).

Every record up to the first damaged or missing one is read linearly; the messages of complete
chunks (each chunk carries its own CRC and length) are written to a new file with schemas,
channels, index and statistics. The damaged original is left as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mcap.records import Channel, Message, Schema
from mcap.writer import CompressionType, Writer

from fusion_stream.bag.reader import BagLimitError, BagTruncatedError, mcap_records
from fusion_stream.bag.writer import LIBRARY, PROFILE
from fusion_stream.errors import FormatError


@dataclass(frozen=True)
class Recovered:
    output: Path
    messages: int
    channels: int
    stopped_at: str
    """What ended the read: ``"end of file"`` or the damage found."""


def default_output(path: Path) -> Path:
    return path.with_name(f"{path.stem}.recovered.mcap")


def recover(path: Path | str, output: Path | str | None = None) -> Recovered:
    src = Path(path)
    dst = Path(output) if output is not None else default_output(src)
    if dst.resolve() == src.resolve():
        raise FormatError(f"recover writes a new file; choose an output other than {src}")
    if not src.is_file():
        raise FormatError(f"{src}: no such file")
    tmp = dst.with_name(f".{dst.name}.partial")
    schemas: dict[int, int] = {}
    channels: dict[int, int] = {}
    count = 0
    stopped = "end of file"
    try:
        with open(src, "rb") as f, open(tmp, "wb") as out:
            writer = Writer(out, compression=CompressionType.ZSTD)
            writer.start(profile=PROFILE, library=LIBRARY)
            try:
                # every length checked, chunks inflated within their declared size and CRC-checked
                for record in mcap_records(f, src):
                    if isinstance(record, Schema) and record.id not in schemas:
                        schemas[record.id] = writer.register_schema(record.name, record.encoding, record.data)
                    elif isinstance(record, Channel) and record.id not in channels:
                        sid = schemas.get(record.schema_id, 0)
                        channels[record.id] = writer.register_channel(
                            record.topic, record.message_encoding, sid, metadata=record.metadata
                        )
                    elif isinstance(record, Message) and record.channel_id in channels:
                        writer.add_message(
                            channels[record.channel_id],
                            record.log_time,
                            record.data,
                            record.publish_time,
                            record.sequence,
                        )
                        count += 1
            except BagTruncatedError:
                stopped = "the end of the last complete record (the file was cut short)"
            except BagLimitError:
                raise  # a bomb is not a torn end: refuse rather than salvage around it
            except FormatError as err:  # damage ends the read; what came before is kept
                stopped = f"damage: {err}"
            writer.finish()  # type: ignore[no-untyped-call]
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)
    return Recovered(dst, count, len(channels), stopped)
