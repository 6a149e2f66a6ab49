"""A bounded-latency live policy keyed on a reference input (the LiDAR sweep).

For each reference message at rig time ``t`` it gathers, per other input, either the nearest
message within ``±slop`` (cameras, radar) or every message overlapping ``[t - window, t)``
(audio chunks), after shifting each stamp by the input's time offset from calibration. A set is
emitted as soon as every input is decided, and at the latest when the caller's clock passes
``t + deadline``; inputs with nothing by then are listed as missing, so one dead sensor never
stalls the pipeline.

If the reference input has a ``period_ns``, a silent reference (a dead LiDAR) does not stop the
sets either: once no reference message has *arrived* for a period plus the deadline (so a LiDAR
whose sweeps keep coming, however late, is never pre-empted), the policy emits sets on stand-in
stamps one period apart after the last set, with the reference listed as missing, until the
reference comes back (only after a first reference message: before it there is no timeline).
Downstream (the fusion node) keeps working on the other sensors, which is what a vehicle needs
while a LiDAR driver restarts.

The caller passes ``now_ns`` (wall time live, bag time in replay). Sets come out in reference
order and never go back in time; a jump backwards beyond ``reset_jump_ns`` of the clock or of
the reference input (a looping bag) resets the state. Every message is accounted for in
:attr:`stats` (see :mod:`fusion_stream.sync.stats`), and queues are bounded.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from fusion_stream.errors import ParamError
from fusion_stream.sync.stats import (
    DUPLICATE,
    FUTURE,
    LATE,
    QUEUE_OVERFLOW,
    RESET,
    SUPERSEDED,
    UNMATCHED,
    InputStats,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
_MAX_STAND_IN_BURST = 3
Mode = Literal["reference", "nearest", "window"]


@dataclass(frozen=True)
class InputConfig:
    """How one input joins a set. Times in integer nanoseconds."""

    name: str
    mode: Mode = "nearest"
    slop_ns: int = 50_000_000
    """``nearest``: the largest allowed |stamp - reference stamp|."""
    window_ns: int = 100_000_000
    """``window``: the set takes every message overlapping [t - window_ns, t)."""
    offset_ns: int = 0
    """Added to this input's stamps to get rig time (a sensor's known clock offset or delay)."""
    period_ns: int = 0
    """``nearest``: a lower bound on the time between messages (0: unknown). Knowing it, the
    policy can tell that no better match can still come without waiting for the next message."""

    def __post_init__(self) -> None:
        if self.mode not in ("reference", "nearest", "window"):
            raise ParamError(
                "mode", f"input {self.name!r}: mode must be reference, nearest or window, got {self.mode!r}"
            )
        for key in ("slop_ns", "window_ns", "period_ns"):
            if getattr(self, key) < 0:
                raise ParamError(key, f"input {self.name!r}: must be >= 0")


@dataclass(frozen=True)
class SyncedSet(Generic[T]):
    """One emitted set: the reference stamp (rig time), members per input name, what is missing."""

    stamp_ns: int
    members: dict[str, tuple[T, ...]]
    missing: tuple[str, ...]
    last_arrival_ns: int
    """The caller's clock when the last member arrived, to measure the latency the policy adds."""

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass
class _Entry(Generic[T]):
    t: int  # rig time of the first sample
    end: int  # rig time just after the last sample (== t for instantaneous messages)
    arrival: int
    msg: T
    used: bool = False

    def __lt__(self, other: _Entry[T]) -> bool:
        return self.t < other.t

    @property
    def reach(self) -> int:
        """End of the covered time, at least one ns, so instantaneous messages overlap too."""
        return max(self.end, self.t + 1)


@dataclass
class _Buffer(Generic[T]):
    cfg: InputConfig
    stats: InputStats
    entries: list[_Entry[T]] = field(default_factory=list)
    floor: int | None = None
    """Stamp of the last message a ``nearest`` input contributed; nothing older is used again."""


class ReferenceWindowPolicy(Generic[T]):
    """See the module docstring. Exactly one input must have ``mode="reference"``."""

    def __init__(
        self,
        inputs: Sequence[InputConfig],
        *,
        deadline_ns: int = 100_000_000,
        max_queue: int = 64,
        reset_jump_ns: int = 1_000_000_000,
        max_future_ns: int = 10_000_000_000,
    ) -> None:
        # ParamError keys are the arguments' names (``inputs[2].name`` for an input's field)
        refs = [i for i, c in enumerate(inputs) if c.mode == "reference"]
        if len(refs) != 1:
            raise ParamError("inputs", f"exactly one input must have mode 'reference', got {len(refs)}")
        names = [c.name for c in inputs]
        for j, name in enumerate(names):
            if name in names[:j]:
                raise ParamError(f"inputs[{j}].name", f"input names must be unique, got {names}")
        if deadline_ns < 0:
            raise ParamError("deadline_ns", "must be >= 0")
        if max_queue < 1:
            raise ParamError("max_queue", f"must be >= 1, got {max_queue}")
        if reset_jump_ns <= 0:
            raise ParamError("reset_jump_ns", "must be > 0")
        self.inputs = tuple(inputs)
        self.reference = refs[0]
        self.deadline_ns = deadline_ns
        self.max_queue = max_queue
        self.reset_jump_ns = reset_jump_ns
        self.max_future_ns = max_future_ns
        self.stats = [InputStats() for _ in inputs]
        self.resets = 0
        self._buffers: list[_Buffer[T]] = [_Buffer(c, s) for c, s in zip(inputs, self.stats, strict=True)]
        self._last_emitted: int | None = None
        self._last_now: int | None = None
        self.stand_ins = 0
        """Sets emitted on a stand-in stamp because the reference input was silent."""
        self._ref_arrival: int | None = None  # when the last reference message arrived

    # ------------------------------------------------------------------ public

    def add(self, index: int, stamp_ns: int, msg: T, now_ns: int, duration_ns: int = 0) -> list[SyncedSet[T]]:
        """Offer ``msg`` of input ``index`` (covering ``duration_ns`` from ``stamp_ns``) at time
        ``now_ns``; return the sets that are ready now."""
        if not 0 <= index < len(self.inputs):
            raise IndexError(f"input index {index} out of range 0..{len(self.inputs) - 1}")
        self._check_clock(now_ns)
        buf = self._buffers[index]
        buf.stats.received += 1
        t = stamp_ns + buf.cfg.offset_ns
        entry = _Entry(t, t + max(0, duration_ns), now_ns, msg)
        if t > now_ns + self.max_future_ns:
            self._drop(buf, FUTURE, f"stamp {t} is {(t - now_ns) / 1e9:.1f} s ahead of the clock")
            return self.poll(now_ns)
        # Only the reference (or the clock) going back means a new timeline (a looping bag); one
        # old message of another input is just late, like a camera's first frame after a slow start.
        if index == self.reference and self._last_emitted is not None and t < self._last_emitted - self.reset_jump_ns:
            self._reset(f"input {buf.cfg.name!r} went back {(self._last_emitted - t) / 1e9:.1f} s in time")
        if index == self.reference:
            self._ref_arrival = now_ns  # after any reset: the reference is alive, late or not
        if self._too_late(buf.cfg, entry) or (buf.floor is not None and t <= buf.floor):
            self._drop(buf, LATE, f"stamp {t} arrived after its set was emitted")
            return self.poll(now_ns)
        entries = buf.entries
        pos = bisect.bisect_left(entries, entry)
        if pos < len(entries) and entries[pos].t == t:
            self._drop(buf, DUPLICATE, f"stamp {t} is already queued")
            return self.poll(now_ns)
        if entries and t < entries[-1].t:
            buf.stats.out_of_order += 1
        entries.insert(pos, entry)
        if len(entries) > self.max_queue:
            old = entries.pop(0)
            if not old.used:
                self._drop(buf, QUEUE_OVERFLOW, "queue full")
        return self.poll(now_ns)

    def poll(self, now_ns: int) -> list[SyncedSet[T]]:
        """Emit the sets that are complete or whose deadline has passed at ``now_ns``."""
        self._check_clock(now_ns)
        out: list[SyncedSet[T]] = []
        ref_buf = self._buffers[self.reference]
        while ref_buf.entries:
            ready = self._build(ref_buf.entries[0], now_ns)
            if ready is None:
                break
            out.append(ready)
        if not ref_buf.entries:
            out.extend(self._stand_ins(now_ns))
        return out

    def pending(self) -> int:
        """Messages queued and not yet used or dropped, over all inputs."""
        return sum(1 for b in self._buffers for e in b.entries if not e.used)

    # ------------------------------------------------------------------ internals

    def _drop(self, buf: _Buffer[T], reason: str, detail: str, count: int = 1) -> None:
        first = buf.stats.dropped[reason] == 0
        buf.stats.dropped[reason] += count
        if first:
            log.info("sync input %r: dropping (%s): %s; further drops are only counted", buf.cfg.name, reason, detail)

    def _check_clock(self, now_ns: int) -> None:
        if self._last_now is not None and now_ns < self._last_now - self.reset_jump_ns:
            self._reset(f"clock went back {(self._last_now - now_ns) / 1e9:.1f} s")
        self._last_now = now_ns if self._last_now is None else max(self._last_now, now_ns)
        if self._last_now - now_ns > self.reset_jump_ns:  # after a reset, follow the new time
            self._last_now = now_ns

    def _reset(self, why: str) -> None:
        log.warning("sync reset: %s; %d queued message(s) discarded", why, self.pending())
        self.resets += 1
        for buf in self._buffers:
            unused = sum(1 for e in buf.entries if not e.used)
            if unused:
                buf.stats.dropped[RESET] += unused
            buf.entries.clear()
            buf.floor = None
        self._last_emitted = None
        self._last_now = None
        self._ref_arrival = None

    def _too_late(self, cfg: InputConfig, e: _Entry[T]) -> bool:
        """Whether no future set (reference stamp > last emitted) can use this message."""
        last = self._last_emitted
        if last is None:
            return False
        if cfg.mode == "reference":
            return e.t <= last
        if cfg.mode == "nearest":
            return e.t <= last - cfg.slop_ns
        return e.reach <= last + 1 - cfg.window_ns

    def _build(self, ref: _Entry[T], now_ns: int) -> SyncedSet[T] | None:
        """The set for ``ref`` if it is decided or due, else None (emitting it retires messages)."""
        due = now_ns >= ref.t + self.deadline_ns
        decided: list[bool] = []
        chosen = self._choose(ref.t, decided)
        if not due and not all(decided):
            return None
        return self._emit(ref, ref.t, chosen)

    def _choose(self, t: int, decided: list[bool] | None = None) -> dict[int, list[_Entry[T]]]:
        """Per non-reference input, the messages for a set at ``t``; appends to ``decided``
        whether each choice is final (no message still to come could change it)."""
        chosen: dict[int, list[_Entry[T]]] = {}
        for i, buf in enumerate(self._buffers):
            if i == self.reference:
                continue
            cfg, entries = buf.cfg, buf.entries
            if cfg.mode == "nearest":
                near = [e for e in entries if abs(e.t - t) <= cfg.slop_ns]
                best = min(near, key=lambda e: (abs(e.t - t), e.t)) if near else None
                chosen[i] = [best] if best is not None else []
                # in-order arrivals: once one is at or past t, none to come can be nearer; with a
                # known period, the next message's earliest stamp may already be too far
                final = bool(entries) and entries[-1].t >= t
                if not final and entries and cfg.period_ns:
                    earliest_next = entries[-1].t + cfg.period_ns
                    limit = abs(best.t - t) if best is not None else cfg.slop_ns
                    final = earliest_next - t > limit
            else:
                # the window is [t - window, t): decided once something covers up to t
                final = any(e.reach >= t for e in entries)
                start = t - cfg.window_ns
                chosen[i] = [e for e in entries if e.t < t and e.reach > start]
            if decided is not None:
                decided.append(final)
        return chosen

    def _stand_ins(self, now_ns: int) -> list[SyncedSet[T]]:
        """Sets on stand-in stamps while the reference is silent (only with a reference period)."""
        period = self._buffers[self.reference].cfg.period_ns
        last, arrival = self._last_emitted, self._ref_arrival
        if not period or last is None or arrival is None:
            return []
        if now_ns - arrival <= period + self.deadline_ns:  # not silent: late sweeps still come
            return []
        behind = (now_ns - self.deadline_ns - last) // period  # stand-in stamps that are due
        if behind < 1:
            return []
        if behind > _MAX_STAND_IN_BURST:  # after a stall (a paused clock): only the newest
            last += (behind - 1) * period
            self._last_emitted = last
            behind = 1
        out = []
        for k in range(1, behind + 1):
            t = last + k * period
            chosen = self._choose(t)
            if any(chosen.values()):
                out.append(self._emit(None, t, chosen))
                self.stand_ins += 1
            else:  # nothing at all to send: move on silently
                self._last_emitted = t
        return out

    def _emit(self, ref: _Entry[T] | None, t: int, chosen: dict[int, list[_Entry[T]]]) -> SyncedSet[T]:
        """Emit the set at ``t`` for ``ref`` (None: a stand-in stamp, the reference missing)."""
        ref_buf = self._buffers[self.reference]
        members: dict[str, tuple[T, ...]] = {}
        missing: list[str] = []
        if ref is not None:
            ref_buf.entries.pop(0)
            ref_buf.stats.used += 1
            members[ref_buf.cfg.name] = (ref.msg,)
            last_arrival = ref.arrival
        else:
            missing.append(ref_buf.cfg.name)
            last_arrival = max((e.arrival for picked in chosen.values() for e in picked), default=0)
        for i, picked in chosen.items():
            buf = self._buffers[i]
            if not picked:
                missing.append(buf.cfg.name)
                continue
            members[buf.cfg.name] = tuple(e.msg for e in picked)
            for e in picked:
                if not e.used:
                    e.used = True
                    buf.stats.used += 1
                last_arrival = max(last_arrival, e.arrival)
            if buf.cfg.mode == "nearest":
                # a nearest input never goes back in time: older messages can no longer be chosen
                floor = picked[0].t
                older = sum(1 for e in buf.entries if e.t < floor)
                if older:
                    self._drop(buf, SUPERSEDED, "a later message was nearer to the reference", older)
                buf.entries = [e for e in buf.entries if e.t > floor]
                buf.floor = floor
        self._last_emitted = t
        self._retire()
        return SyncedSet(t, members, tuple(missing), last_arrival)

    def _retire(self) -> None:
        """Forget messages that no future set can use."""
        for buf in self._buffers:
            keep: list[_Entry[T]] = []
            stale = 0
            for e in buf.entries:
                if buf.cfg.mode != "reference" and self._too_late(buf.cfg, e):
                    stale += not e.used
                else:
                    keep.append(e)
            if stale:
                self._drop(buf, UNMATCHED, "too far from every reference", stale)
            buf.entries = keep
