"""ApproximateTimePolicy against hand-worked cases of ROS 2 message_filters' ApproximateTime.

Each case lists the arrivals (input, stamp in seconds) and the expected emissions as
(index of the ``add`` call that emits the set, stamps of the set in input order). The sets are
the ones message_filters' own tests expect for the same arrivals; the emitting calls follow the
algorithm step by step (worked through in the comments for the first cases).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_stream.sync import ApproximateTimePolicy

S = 1_000_000_000

Arrivals = list[tuple[int, float]]
Emissions = list[tuple[int, tuple[float, ...]]]


def run(
    arrivals: Arrivals, n: int = 2, queue: int = 10, **kw: object
) -> tuple[Emissions, ApproximateTimePolicy[float]]:
    policy: ApproximateTimePolicy[float] = ApproximateTimePolicy(n, queue, **kw)  # type: ignore[arg-type]
    out: Emissions = []
    for call, (i, t) in enumerate(arrivals):
        out.extend((call, s) for s in policy.add(i, int(t * S), t))
    return out, policy


CASES: dict[str, tuple[Arrivals, dict[str, object], Emissions]] = {
    # a A b B c C at 0,0,3,3,6,6: both heads equal -> the span cannot shrink, publish at once.
    "exact match": ([(0, 0), (1, 0), (0, 3), (1, 3), (0, 6), (1, 6)], {}, [(1, (0, 0)), (3, (3, 3)), (5, (6, 6))]),
    # a(0) A(1): candidate (a, A), pivot A; a later b could pair better, so wait. b(3) shows the
    # next span would be larger: (a, A) goes out at b's call; (c, C) waits for what follows.
    "perfect match": ([(0, 0), (1, 1), (0, 3), (1, 4), (0, 6), (1, 7)], {}, [(2, (0, 1)), (4, (3, 4))]),
    "imperfect match": ([(0, 0), (1, 1), (0, 2), (0, 3), (1, 5), (0, 6), (1, 7)], {}, [(2, (0, 1)), (5, (6, 5))]),
    "acceleration": ([(0, 0), (1, 7), (0, 12), (1, 15), (0, 17), (1, 18)], {}, [(2, (12, 7)), (5, (17, 18))]),
    # B(3) then b(3) in one call: (a, A) is completed and then (b, B) at once.
    "double publish": ([(0, 0), (1, 1), (1, 3), (0, 3)], {}, [(3, (0, 1)), (3, (3, 3))]),
    "dropped messages, queue 1": (
        [(0, 0), (1, 1), (1, 3), (0, 4), (1, 7), (0, 8), (0, 10), (1, 11), (0, 13), (1, 14)],
        {"queue": 1},
        [(4, (4, 3)), (8, (10, 11))],
    ),
    "dropped messages, queue 2": (
        [(0, 0), (1, 1), (1, 3), (0, 4), (1, 7), (0, 8), (0, 10), (1, 11), (0, 13), (1, 14)],
        {"queue": 2},
        [(3, (0, 1)), (4, (4, 3)), (7, (8, 7)), (8, (10, 11))],
    ),
    "long queue": (
        [(0, t) for t in range(9)] + [(1, 3), (0, 9), (0, 10), (0, 11), (0, 12), (1, 10), (0, 13)],
        {"queue": 5},
        [(14, (10, 10))],
    ),
    "four inputs": (
        [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3),
            (0, 5),
            (3, 5),
            (1, 6),
            (2, 6),
            (0, 8),
            (1, 9),
            (2, 10),
            (3, 11),
            (0, 10),
            (0, 13),
            (1, 14),
        ],
        {"n": 4},
        [(6, (0, 1, 2, 3)), (8, (5, 6, 6, 5)), (14, (10, 9, 10, 11))],
    ),
    "early publish, four inputs": ([(0, 0), (1, 1), (2, 2), (3, 3), (0, 7)], {"n": 4}, [(4, (0, 1, 2, 3))]),
    "rate bound 1.5 s on input 0": (
        [(0, 0), (1, 1), (0, 3), (1, 4), (0, 6), (1, 7)],
        {"min_period_ns": [int(1.5 * S), 0]},
        [(2, (0, 1)), (4, (3, 4))],
    ),
    # with a 2 s bound the policy knows no message of input 0 can come before 8 s, so (c, C)
    # is provably optimal as soon as C arrives: published one call earlier than without bound.
    "rate bound 2 s on input 0": (
        [(0, 0), (1, 1), (0, 3), (1, 4), (0, 6), (1, 7)],
        {"min_period_ns": [2 * S, 0]},
        [(1, (0, 1)), (3, (3, 4)), (5, (6, 7))],
    ),
    # max interval: a and A are 5 s apart, over the 2 s limit, so a is dropped unused.
    "max interval": ([(0, 0), (1, 5), (0, 6), (1, 9), (0, 10)], {"max_interval_ns": 2 * S}, [(3, (6, 5))]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hand_worked_cases(name: str) -> None:
    arrivals, kw, expected = CASES[name]
    out, policy = run(arrivals, **kw)
    assert out == expected
    for st_ in policy.stats:
        assert st_.received == st_.used + st_.dropped_total + st_.pending
    assert sum(s.pending for s in policy.stats) == policy.pending()


def test_accounting_names_the_reasons() -> None:
    arrivals = [(0, t) for t in range(9)] + [(1, 3), (0, 9), (0, 10), (0, 11), (0, 12), (1, 10), (0, 13)]
    _, policy = run(arrivals, queue=5)
    a, b = policy.stats
    assert (a.received, a.used, dict(a.dropped), a.pending) == (14, 1, {"queue_overflow": 8, "superseded": 2}, 3)
    assert (b.received, b.used, dict(b.dropped), b.pending) == (2, 1, {"unmatched": 1}, 0)


def test_max_interval_drop_is_counted_as_unmatched() -> None:
    _, policy = run([(0, 0), (1, 5), (0, 6), (1, 9), (0, 10)], max_interval_ns=2 * S)
    assert policy.stats[0].dropped["unmatched"] == 1


def test_out_of_order_stamps_are_counted_not_fatal() -> None:
    _, policy = run([(0, 5), (0, 3), (1, 4), (1, 4), (0, 6)])
    assert policy.stats[0].out_of_order == 1
    assert policy.stats[0].received == policy.stats[0].used + policy.stats[0].dropped_total + policy.stats[0].pending


@pytest.mark.parametrize(
    "kw",
    [
        {"num_inputs": 1, "queue_size": 3},
        {"num_inputs": 2, "queue_size": 0},
        {"num_inputs": 2, "queue_size": 3, "age_penalty": -1},
        {"num_inputs": 2, "queue_size": 3, "min_period_ns": [1]},
    ],
)
def test_bad_configuration(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ApproximateTimePolicy(**kw)  # type: ignore[arg-type]


def test_reset_drops_what_is_queued() -> None:
    _, policy = run([(0, 0), (1, 1), (0, 3)])
    pending = policy.pending()
    policy.reset()
    assert policy.pending() == 0
    assert sum(s.dropped_total for s in policy.stats) >= pending


stream = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 50)),  # (input, step)
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(stream, st.integers(1, 6), st.sampled_from([None, 0, 3 * S, 10 * S]), st.integers(2, 4))
def test_properties(arrivals: list[tuple[int, int]], queue: int, max_interval: int | None, n: int) -> None:
    policy: ApproximateTimePolicy[tuple[int, int]] = ApproximateTimePolicy(n, queue, max_interval_ns=max_interval)
    clock = [0] * n
    seen: set[tuple[int, int]] = set()
    last: list[int] = [-1] * n
    for raw_index, step in arrivals:
        i = raw_index % n
        clock[i] += step * S // 10  # stamps non-decreasing per input, duplicates allowed
        for s in policy.add(i, clock[i], (i, clock[i] * 1000 + policy.stats[i].received)):
            stamps = [m[1] // 1000 for m in s]
            assert [m[0] for m in s] == list(range(n))  # one message per input, in input order
            for m in s:
                assert m not in seen, "a message was used in two sets"
                seen.add(m)
            if max_interval is not None:
                assert max(stamps) - min(stamps) <= max_interval
            for k in range(n):  # sets move forward in time on every input
                assert stamps[k] >= last[k]
                last[k] = stamps[k]
        assert policy.pending() <= n * (queue + 1)  # memory bounded
        for st_ in policy.stats:
            assert st_.received == st_.used + st_.dropped_total + st_.pending
