"""``bag convert``: a ROS 1 or ROS 2 bag (or any MCAP) to our MCAP.

Every message is kept. Topics named in the topic map become fusion_stream topics with our
canonical layouts (float32 PointCloud2 fields, rig frame ids); all others are copied as ROS 2
CDR with their definitions, so IMU, odometry or raw driver packets survive for other tools.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fusion_stream.bag import convert
from fusion_stream.bag.mapping import TopicMap, count_failure
from fusion_stream.bag.reader import Bag
from fusion_stream.bag.writer import BagWriter, Compression, check_writable
from fusion_stream.errors import FormatError

log = logging.getLogger(__name__)


@dataclass
class ConvertStats:
    converted: Counter[str] = field(default_factory=Counter)
    copied: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)


def convert_bag(
    src: Path | str,
    dst: Path | str,
    *,
    topic_map: TopicMap | None = None,
    compression: Compression = "zstd",
    on_progress: Callable[[int, int], None] | None = None,
) -> ConvertStats:
    """Write ``src`` as MCAP to ``dst`` (written to a temporary name, renamed when complete)."""
    dst = Path(dst)
    check_writable(dst)
    tmap = topic_map or TopicMap()
    stats = ConvertStats()
    tmp = dst.with_name(f".{dst.stem}.partial.mcap")
    with Bag(src) as bag:
        info = bag.info()
        tmap.check(t.topic for t in info.topics)
        total = info.message_count
        try:
            with BagWriter(tmp, compression=compression, flush_s=float("inf")) as writer:
                for n, raw in enumerate(bag.messages(), start=1):
                    rule = tmap.rules.get(raw.topic)
                    try:
                        if rule is not None and raw.typename in convert.CONVERTIBLE:
                            msg = rule.convert(raw.typename, raw.decode())
                            writer.write(rule.topic, msg, raw.log_ns, publish_ns=raw.publish_ns or raw.log_ns)
                            stats.converted[rule.topic] += 1
                        else:
                            writer.write_raw(
                                raw.topic,
                                raw.typename,
                                raw.cdr(),
                                raw.log_ns,
                                publish_ns=raw.publish_ns or raw.log_ns,
                                schema=bag.schema_text(raw.typename),
                            )
                            stats.copied[raw.topic] += 1
                    except FormatError as err:
                        count_failure(stats.failed, bag, raw, err)
                    if on_progress is not None:
                        on_progress(n, total)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, dst)
    return stats
