"""The synchronizer as a reusable stage: messages in (by topic), :class:`SyncedFrame` out.

The sync node wraps it with sockets; replay and evaluation can drive it directly with bag
time. It builds the configured policy, tells it each message's duration (audio chunks) and
arrival time, turns emitted sets into ``SyncedFrame`` messages and keeps the numbers the
diagnostics report.

A message that is not a sensor message (a misrouted topic, another program publishing its own
type on an input's topic) cannot join a set: it is dropped, logged once per input and type, and
counted (``sync.in.NAME.wrong_type``), never an exception per message.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Literal, cast

from fusion_stream.core import msgs
from fusion_stream.core.wire import check_topic
from fusion_stream.errors import ParamError, TopicNameError, UnknownNameError
from fusion_stream.sync.approximate import ApproximateTimePolicy
from fusion_stream.sync.reference import InputConfig, ReferenceWindowPolicy
from fusion_stream.sync.stats import InputStats

log = logging.getLogger(__name__)

PolicyName = Literal["reference", "approximate"]


@dataclass(frozen=True)
class SyncInput(InputConfig):
    """One input of the stage: how it joins the set (see :class:`InputConfig`) and its topic."""

    topic: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            check_topic(self.topic)
        except TopicNameError as err:
            raise ParamError("topic", f"input {self.name!r}: {err}") from err


@dataclass(frozen=True)
class SyncConfig:
    """The stage's settings in nanoseconds: inputs, policy, frame, deadline, queue and interval bounds."""

    inputs: tuple[SyncInput, ...]
    policy: PolicyName = "reference"
    frame_id: str = "base_link"
    deadline_ns: int = 100_000_000
    queue_size: int = 32
    max_interval_ns: int | None = None
    age_penalty: float = 0.1
    reset_jump_ns: int = 1_000_000_000

    def __post_init__(self) -> None:
        if len(self.inputs) < 2:
            raise ParamError("inputs", f"a synchronizer needs at least 2 inputs, got {len(self.inputs)}")
        topics = [i.topic for i in self.inputs]
        for j, topic in enumerate(topics):
            if topic in topics[:j]:
                raise ParamError(f"inputs[{j}].topic", f"each input needs its own topic, got {topics}")
        if self.policy not in ("reference", "approximate"):
            raise ParamError("policy", f"must be 'reference' or 'approximate', got {self.policy!r}")


@dataclass(frozen=True)
class Emitted:
    """A set the stage completed, with when its last member arrived (for latency reports)."""

    frame: msgs.SyncedFrame
    last_arrival_ns: int
    """When the set's last member arrived (the caller's clock)."""


_Item = tuple[int, msgs.SensorMessage]  # (arrival_ns, message)


class SyncStage:
    """Synchronization by topic: offer each message with the time it arrived, poll on a clock;
    both return the :class:`Emitted` sets they completed. What the sync node and the fusion node run."""

    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self.names = tuple(i.name for i in config.inputs)
        self._index = {i.topic: n for n, i in enumerate(config.inputs)}
        self.sets = 0
        self.partial = 0
        self.missing: Counter[str] = Counter()
        self.wrong_type: Counter[tuple[str, str]] = Counter()
        """Messages dropped because they are not sensor messages, by (input name, type name)."""
        self._reference: ReferenceWindowPolicy[_Item] | None = None
        self._approx: ApproximateTimePolicy[_Item] | None = None
        if config.policy == "reference":
            self._reference = ReferenceWindowPolicy(
                config.inputs,
                deadline_ns=config.deadline_ns,
                max_queue=config.queue_size,
                reset_jump_ns=config.reset_jump_ns,
            )
        else:
            self._approx = ApproximateTimePolicy(
                len(config.inputs), config.queue_size, config.max_interval_ns, config.age_penalty
            )

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(i.topic for i in self.config.inputs)

    @property
    def input_stats(self) -> list[InputStats]:
        policy = self._reference or self._approx
        assert policy is not None
        return policy.stats

    @property
    def resets(self) -> int:
        return self._reference.resets if self._reference is not None else 0

    def offer(self, topic: str, msg: msgs.Message, now_ns: int) -> list[Emitted]:
        """Feed one message received on ``topic`` at ``now_ns``; the frames it completes (none for
        a message that is not a sensor message: it is counted in :attr:`wrong_type`)."""
        index = self._index.get(topic)
        if index is None:
            raise UnknownNameError(
                "topic", topic, f"topic {topic!r} is not an input of this synchronizer ({list(self._index)})"
            )
        if not isinstance(msg, msgs.SENSOR_TYPES):
            key = (self.names[index], type(msg).__name__)
            if not self.wrong_type[key]:
                log.warning(
                    "input %s (%s): dropping %s messages, which cannot be synchronized (sensor messages only: %s); "
                    "further ones are counted in sync.in.%s.wrong_type",
                    key[0],
                    topic,
                    key[1],
                    ", ".join(t.__name__ for t in msgs.SENSOR_TYPES),
                    key[0],
                )
            self.wrong_type[key] += 1
            return []
        item: _Item = (now_ns, cast(msgs.SensorMessage, msg))
        if self._reference is not None:
            duration = msg.duration_ns if isinstance(msg, msgs.AudioChunk) else 0
            return [
                self._frame(s.stamp_ns, s.members, s.missing, s.last_arrival_ns)
                for s in self._reference.add(index, msg.stamp_ns, item, now_ns, duration)
            ]
        assert self._approx is not None
        out = []
        for members in self._approx.add(index, msg.stamp_ns, item):
            by_name: dict[str, tuple[_Item, ...]] = {name: (m,) for name, m in zip(self.names, members, strict=True)}
            out.append(self._frame(members[0][1].stamp_ns, by_name, (), max(m[0] for m in members)))
        return out

    def poll(self, now_ns: int) -> list[Emitted]:
        """Frames whose deadline passed by ``now_ns`` (reference policy; none for approximate)."""
        if self._reference is None:
            return []
        return [self._frame(s.stamp_ns, s.members, s.missing, s.last_arrival_ns) for s in self._reference.poll(now_ns)]

    def _frame(
        self, stamp_ns: int, members: dict[str, tuple[_Item, ...]], missing: tuple[str, ...], last_arrival: int
    ) -> Emitted:
        self.sets += 1
        if missing:
            self.partial += 1
            self.missing.update(missing)
        frame = msgs.SyncedFrame(
            stamp_ns=stamp_ns,
            frame_id=self.config.frame_id,
            members={name: tuple(m for _, m in items) for name, items in members.items()},
            missing=missing,
        )
        return Emitted(frame, last_arrival)

    def diagnostics(self) -> dict[str, msgs.ScalarValue]:
        values: dict[str, msgs.ScalarValue] = {
            "sync.sets": self.sets,
            "sync.partial": self.partial,
            "sync.resets": self.resets,
            "sync.stand_ins": self._reference.stand_ins if self._reference is not None else 0,
        }
        for name, st in zip(self.names, self.input_stats, strict=True):
            values[f"sync.in.{name}.received"] = st.received
            values[f"sync.in.{name}.used"] = st.used
            values[f"sync.in.{name}.pending"] = st.pending
            values[f"sync.in.{name}.missing"] = self.missing[name]
            for reason, n in st.dropped.items():
                values[f"sync.in.{name}.dropped.{reason}"] = n
            wrong = sum(n for (input_name, _), n in self.wrong_type.items() if input_name == name)
            if wrong:
                values[f"sync.in.{name}.wrong_type"] = wrong
        return values
