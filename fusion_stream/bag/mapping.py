"""Which recorded topic is which sensor, and the stream of fusion_stream messages from a bag.

A topic-mapping file (YAML) names, for topics of a ROS bag, the fusion_stream topic they become
and optionally the sensor kind and frame::

    topics:
      /luminar_pointcloud: {topic: /lidar/top/points, kind: lidar, frame_id: lidar_top}
      /camera/fisheye1/image_raw: {topic: /camera/front/image}

Our own bags need no map. Topics not in a map keep their names; types we have no message for
(IMU, odometry, raw packets) are skipped and counted.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion_stream.bag import convert
from fusion_stream.bag.reader import Bag, RawMessage
from fusion_stream.core import msgs, wire, yamlio
from fusion_stream.errors import FileKeyError, FormatError, TopicNameError

log = logging.getLogger(__name__)

KINDS = ("lidar", "radar", "camera", "audio", "detections", "diagnostics")


@dataclass(frozen=True)
class TopicRule:
    topic: str
    kind: str = ""
    frame_id: str = ""

    @property
    def cloud_kind(self) -> convert.Kind | None:
        """What a PointCloud2 on this topic is, when the map says (else guessed from its fields)."""
        return self.kind if self.kind in ("lidar", "radar") else None  # type: ignore[return-value]

    def convert(self, typename: str, ros: Any) -> msgs.Message:
        """The recorded ROS message as ours, with the map's kind and frame id."""
        msg = convert.from_ros(typename, ros, kind=self.cloud_kind)
        if self.frame_id and isinstance(msg, msgs.Header):
            return dataclasses.replace(msg, frame_id=self.frame_id)
        return msg


@dataclass(frozen=True)
class TopicMap:
    """Which bag topics to read and as what (kind, frame id, new name), from a topic map file."""

    rules: Mapping[str, TopicRule] = field(default_factory=dict)
    path: Path | None = None

    def check(self, bag_topics: Iterable[str]) -> None:
        """Every mapped topic must be in the bag (a typo would otherwise replay nothing)."""
        present = set(bag_topics)
        for name in self.rules:
            if name not in present:
                raise FileKeyError(
                    str(self.path or "topic map"),
                    f"topics.{name}",
                    f"no such topic in the bag; it has {sorted(present)}",
                )

    def rename(self, topic: str) -> str:
        rule = self.rules.get(topic)
        return rule.topic if rule else topic


def load_map(path: Path | str) -> TopicMap:
    """Read and validate a topic-mapping file; errors name the file and key."""
    p = Path(path)
    doc = yamlio.read(p, lambda reason: FileKeyError(str(p), "(file)", reason), missing="no such topic-mapping file")
    if not isinstance(doc, dict) or not isinstance(doc.get("topics"), dict):
        raise FileKeyError(str(p), "topics", "must be a mapping of recorded topic → {topic, kind, frame_id}")
    rules = {}
    for name, raw in doc["topics"].items():
        key = f"topics.{name}"
        spec = {"topic": raw} if isinstance(raw, str) else raw
        if not isinstance(spec, dict) or "topic" not in spec:
            raise FileKeyError(str(p), key, "must be a topic name or {topic: NAME, kind: ..., frame_id: ...}")
        unknown = set(spec) - {"topic", "kind", "frame_id"}
        if unknown:
            raise FileKeyError(str(p), key, f"unknown keys {sorted(unknown)}; allowed: topic, kind, frame_id")
        try:
            wire.check_topic(str(spec["topic"]))
        except TopicNameError as err:
            raise FileKeyError(str(p), f"{key}.topic", str(err)) from err
        kind = str(spec.get("kind", ""))
        if kind and kind not in KINDS:
            raise FileKeyError(str(p), f"{key}.kind", f"must be one of {list(KINDS)}, got {kind!r}")
        rules[str(name)] = TopicRule(str(spec["topic"]), kind, str(spec.get("frame_id", "")))
    return TopicMap(rules, p)


@dataclass(frozen=True, slots=True)
class Converted:
    topic: str
    """The fusion_stream topic (after the map's renaming)."""
    log_ns: int
    message: msgs.Message


@dataclass
class StreamStats:
    converted: Counter[str] = field(default_factory=Counter)
    skipped_types: Counter[str] = field(default_factory=Counter)
    """``topic (type)`` → messages of types with no fusion_stream message."""
    failed: Counter[str] = field(default_factory=Counter)
    """``topic`` → messages that did not decode or convert (each logged once per topic)."""


def count_failure(failed: Counter[str], bag: Bag, raw: RawMessage, err: Exception) -> None:
    """Count a message that did not decode or convert; the first of each topic is logged with
    the file, topic and log time, the rest only counted (a broken stream must not flood the log)."""
    if not failed[raw.topic]:
        log.warning(
            "%s: topic %s at log time %d: %s (further failures are counted)", bag.path, raw.topic, raw.log_ns, err
        )
    failed[raw.topic] += 1


def messages(
    bag: Bag,
    topic_map: TopicMap | None = None,
    *,
    topics: Iterable[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    stats: StreamStats | None = None,
) -> Iterator[Converted]:
    """fusion_stream messages of a bag in log-time order. ``topics`` selects by recorded name.

    A message that fails to decode is counted in ``stats.failed`` and logged (once per topic)
    with the file and topic; the stream goes on."""
    tmap = topic_map or TopicMap()
    stats = stats if stats is not None else StreamStats()
    skip_types = {"fusion_stream_msgs/msg/SyncedFrame"}
    for raw in bag.messages(topics, start_ns=start_ns, end_ns=end_ns):
        if raw.typename not in convert.CONVERTIBLE or raw.typename in skip_types:
            key = f"{raw.topic} ({raw.typename})"
            if not stats.skipped_types[key]:
                log.info("%s: skipping %s: no fusion_stream message for %s", bag.path, raw.topic, raw.typename)
            stats.skipped_types[key] += 1
            continue
        rule = tmap.rules.get(raw.topic) or TopicRule(raw.topic)
        try:
            msg = rule.convert(raw.typename, raw.decode())
        except FormatError as err:
            count_failure(stats.failed, bag, raw, err)
            continue
        stats.converted[raw.topic] += 1
        yield Converted(rule.topic, raw.log_ns, msg)
