"""The ApproximateTime policy of ROS 2 message_filters, as a pure Python object.

It picks, among queued messages, sets with one message per input whose time span is as small
as possible, with a pivot (the input whose head message ends the candidate span), an age
penalty that trades a slightly larger span for an earlier answer, optional per-input lower
bounds on the message period that let it publish before the next message proves optimality,
an optional maximum span, and per-input queues that drop their oldest message on overflow. The
same input produces the same sets, emitted at the same ``add`` call, as the C++ policy.
(Durations are scaled exactly, ``trunc(d * (1 + age_penalty))`` in integer nanoseconds, where
rclcpp uses ``long double``; they can differ only by rounding a product within 2**-64 of an
integer.)

No clock and no I/O: feed ``add(index, stamp_ns, msg)`` and get back the sets that call emits.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from fractions import Fraction
from typing import Generic, TypeVar

from fusion_stream.errors import ParamError
from fusion_stream.sync.stats import QUEUE_OVERFLOW, SUPERSEDED, UNMATCHED, InputStats

log = logging.getLogger(__name__)

T = TypeVar("T")
_Entry = tuple[int, T]  # (stamp_ns, message)


class ApproximateTimePolicy(Generic[T]):
    """Approximate time synchronization of ``num_inputs`` streams (see the module docstring).

    ``max_interval_ns``: largest span of an emitted set (None: unbounded). ``min_period_ns``: per
    input, a lower bound on the time between consecutive messages (0 = unknown).
    """

    def __init__(
        self,
        num_inputs: int,
        queue_size: int,
        max_interval_ns: int | None = None,
        age_penalty: float = 0.1,
        min_period_ns: Sequence[int] | None = None,
    ) -> None:
        if num_inputs < 2:
            raise ParamError("num_inputs", f"must be >= 2, got {num_inputs}")
        if queue_size < 1:
            raise ParamError("queue_size", f"must be >= 1, got {queue_size}")
        if age_penalty < 0:
            raise ParamError("age_penalty", f"must be >= 0, got {age_penalty}")
        if max_interval_ns is not None and max_interval_ns < 0:
            raise ParamError("max_interval_ns", "must be >= 0")
        bounds = list(min_period_ns) if min_period_ns is not None else [0] * num_inputs
        if len(bounds) != num_inputs or any(b < 0 for b in bounds):
            raise ParamError("min_period_ns", f"needs {num_inputs} values >= 0, got {bounds}")
        self.num_inputs = num_inputs
        self.queue_size = queue_size
        self.max_interval_ns = max_interval_ns
        self.age_penalty = age_penalty
        self.min_period_ns = tuple(bounds)
        scale = Fraction(1.0 + age_penalty)  # the double the C++ computes, exactly
        self._num, self._den = scale.numerator, scale.denominator
        self.stats = [InputStats() for _ in range(num_inputs)]
        self._init_state()

    def reset(self) -> None:
        """Drop every queued message (counted as unmatched) and start afresh."""
        for i in range(self.num_inputs):
            n = len(self._deques[i]) + len(self._past[i])
            if n:
                self.stats[i].dropped[UNMATCHED] += n
        self._init_state()

    def _init_state(self) -> None:
        self._deques: list[deque[_Entry[T]]] = [deque() for _ in range(self.num_inputs)]
        self._past: list[list[_Entry[T]]] = [[] for _ in range(self.num_inputs)]
        self._non_empty = 0
        self._candidate: list[_Entry[T]] | None = None
        self._cand_start = 0
        self._cand_end = 0
        self._pivot: int | None = None
        self._pivot_time = 0
        self._has_dropped = [False] * self.num_inputs
        self._warned = [False] * self.num_inputs
        self._out: list[tuple[T, ...]] = []

    # ------------------------------------------------------------------ public

    def add(self, index: int, stamp_ns: int, msg: T) -> list[tuple[T, ...]]:
        """Queue ``msg`` of input ``index``; return the sets (messages in input order) it completes."""
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} out of range 0..{self.num_inputs - 1}")
        st = self.stats[index]
        st.received += 1
        q = self._deques[index]
        q.append((stamp_ns, msg))
        if len(q) == 1:
            self._non_empty += 1
            if self._non_empty == self.num_inputs:
                self._process()
        else:
            self._check_bound(index)
        past = self._past[index]
        if len(q) + len(past) > self.queue_size:
            self._non_empty = 0
            self._recover_all()
            q.popleft()
            st.dropped[QUEUE_OVERFLOW] += 1
            self._has_dropped[index] = True
            if self._pivot is not None:
                self._candidate = None
                self._pivot = None
                self._process()
        out, self._out = self._out, []
        return out

    def pending(self) -> int:
        """Messages queued and not yet used or dropped, over all inputs."""
        return sum(len(q) + len(p) for q, p in zip(self._deques, self._past, strict=True))

    # ------------------------------------------------------------------ the algorithm

    def _scaled(self, d: int) -> int:
        """``d * (1 + age_penalty)`` truncated toward zero, as rclcpp's Duration * double."""
        return d * self._num // self._den if d >= 0 else -((-d * self._num) // self._den)

    def _check_bound(self, i: int) -> None:
        q = self._deques[i]
        t, prev = q[-1][0], q[-2][0]
        if t < prev:
            self.stats[i].out_of_order += 1
        if self._warned[i]:
            return
        if t < prev:
            log.warning("input %d: messages arrived out of order (%d after %d); warning once", i, t, prev)
            self._warned[i] = True
        elif t - prev < self.min_period_ns[i]:
            log.warning(
                "input %d: messages %d ns apart, closer than the lower bound %d ns; warning once",
                i,
                t - prev,
                self.min_period_ns[i],
            )
            self._warned[i] = True

    def _boundary(self, end: bool) -> tuple[int, int]:
        """Index and stamp of the latest (``end``) or earliest head; ties: last resp. first index."""
        deques = self._deques
        index, time = 0, deques[0][0][0]
        for i in range(1, self.num_inputs):
            t = deques[i][0][0]
            if (t < time) != end:
                index, time = i, t
        return index, time

    def _virtual_time(self, i: int) -> int:
        q = self._deques[i]
        if q:
            return q[0][0]
        bound = self._past[i][-1][0] + self.min_period_ns[i]
        return bound if bound > self._pivot_time else self._pivot_time

    def _virtual_boundary(self, end: bool) -> tuple[int, int]:
        times = [self._virtual_time(i) for i in range(self.num_inputs)]
        index, time = 0, times[0]
        for i in range(1, self.num_inputs):
            if (times[i] < time) != end:
                index, time = i, times[i]
        return index, time

    def _delete_front(self, i: int) -> None:
        q = self._deques[i]
        q.popleft()
        self.stats[i].dropped[UNMATCHED] += 1
        if not q:
            self._non_empty -= 1

    def _move_front_to_past(self, i: int) -> None:
        q = self._deques[i]
        self._past[i].append(q.popleft())
        if not q:
            self._non_empty -= 1

    def _make_candidate(self) -> None:
        self._candidate = [q[0] for q in self._deques]
        for i, past in enumerate(self._past):
            if past:
                self.stats[i].dropped[SUPERSEDED] += len(past)
                past.clear()

    def _recover_all(self) -> None:
        for q, past in zip(self._deques, self._past, strict=True):
            q.extendleft(reversed(past))
            past.clear()
            if q:
                self._non_empty += 1

    def _recover(self, moves: list[int]) -> None:
        for q, past, n in zip(self._deques, self._past, moves, strict=True):
            for _ in range(n):
                q.appendleft(past.pop())
            if q:
                self._non_empty += 1

    def _publish(self) -> None:
        candidate = self._candidate
        assert candidate is not None
        self._out.append(tuple(entry[1] for entry in candidate))
        self._candidate = None
        self._pivot = None
        self._non_empty = 0
        for i, (q, past) in enumerate(zip(self._deques, self._past, strict=True)):
            q.extendleft(reversed(past))
            past.clear()
            used = q.popleft()
            assert used is candidate[i]
            self.stats[i].used += 1
            if q:
                self._non_empty += 1

    def _process(self) -> None:
        n = self.num_inputs
        while self._non_empty == n:
            end_index, end_time = self._boundary(end=True)
            start_index, start_time = self._boundary(end=False)
            for i in range(n):
                if i != end_index:
                    self._has_dropped[i] = False
            if self._pivot is None:
                if self.max_interval_ns is not None and end_time - start_time > self.max_interval_ns:
                    self._delete_front(start_index)
                    continue
                if self._has_dropped[end_index]:
                    self._delete_front(start_index)
                    continue
                self._make_candidate()
                self._cand_start, self._cand_end = start_time, end_time
                self._pivot, self._pivot_time = end_index, end_time
                self._move_front_to_past(start_index)
            elif self._scaled(end_time - self._cand_end) >= start_time - self._cand_start:
                self._move_front_to_past(start_index)
            else:
                self._make_candidate()
                self._cand_start, self._cand_end = start_time, end_time
                self._move_front_to_past(start_index)
            # Publish when the pivot's own message is the oldest head (no other set can use this
            # pivot), or when any later set would span more than the candidate: it is optimal.
            if (
                start_index == self._pivot
                or self._scaled(end_time - self._cand_end) >= self._pivot_time - self._cand_start
            ):
                self._publish()
            elif self._non_empty < n:  # an input ran dry: try to prove optimality with the rate bounds
                self._virtual_search()

    def _virtual_search(self) -> None:
        """Use the period lower bounds to prove the candidate optimal before more messages come."""
        moves = [0] * self.num_inputs
        while True:
            _, end_time = self._virtual_boundary(end=True)
            start_index, start_time = self._virtual_boundary(end=False)
            growth = self._scaled(end_time - self._cand_end)
            if growth >= self._pivot_time - self._cand_start:
                self._publish()
                return
            if growth < start_time - self._cand_start:
                self._non_empty = 0
                self._recover(moves)
                return
            self._move_front_to_past(start_index)
            moves[start_index] += 1
