"""ReferenceWindowPolicy: hand-worked cases, bad input, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_stream.sync import InputConfig, ReferenceWindowPolicy, SyncedSet

MS = 1_000_000

INPUTS = [
    InputConfig("lidar", "reference"),
    InputConfig("camera", "nearest", slop_ns=20 * MS),
    InputConfig("audio", "window", window_ns=100 * MS),
]
LIDAR, CAMERA, AUDIO = 0, 1, 2


def policy(reference_period_ns: int = 0, **kw: int) -> ReferenceWindowPolicy[str]:
    inputs = [InputConfig("lidar", "reference", period_ns=reference_period_ns), *INPUTS[1:]]
    return ReferenceWindowPolicy(inputs, deadline_ns=kw.pop("deadline_ns", 50 * MS), **kw)


def names(s: SyncedSet[str]) -> dict[str, tuple[str, ...]]:
    return dict(s.members)


def check_accounting(p: ReferenceWindowPolicy[str]) -> None:
    for st_ in p.stats:
        assert st_.received == st_.used + st_.dropped_total + st_.pending
    assert p.pending() == sum(s.pending for s in p.stats)


def test_complete_set_as_soon_as_every_input_is_decided() -> None:
    p = policy()
    assert p.add(AUDIO, 0, "a0", now_ns=21 * MS, duration_ns=20 * MS) == []
    assert p.add(LIDAR, 100 * MS, "L100", now_ns=101 * MS) == []  # camera and audio undecided
    assert p.add(CAMERA, 95 * MS, "c95", now_ns=102 * MS) == []  # a nearer frame may still come
    for k in range(1, 5):
        assert p.add(AUDIO, k * 20 * MS, f"a{k * 20}", now_ns=(k * 20 + 21) * MS, duration_ns=20 * MS) == []
    [s] = p.add(CAMERA, 105 * MS, "c105", now_ns=106 * MS)  # audio covers up to 100 already
    assert s.stamp_ns == 100 * MS and s.complete
    assert s.members["camera"] == ("c95",)  # 5 ms either side: the earlier wins the tie
    assert s.members["audio"] == ("a0", "a20", "a40", "a60", "a80")
    # the last *member* arrived at 102 ms; waiting for c105 to rule out a nearer frame cost 4 ms
    assert s.last_arrival_ns == 102 * MS
    assert p.stats[CAMERA].dropped == {}
    check_accounting(p)


def test_deadline_emits_a_partial_set_with_the_missing_inputs_named() -> None:
    p = policy(deadline_ns=50 * MS)
    p.add(LIDAR, 100 * MS, "L", now_ns=102 * MS)
    p.add(CAMERA, 101 * MS, "c", now_ns=104 * MS)
    assert p.poll(149 * MS) == []
    [s] = p.poll(150 * MS)
    assert s.missing == ("audio",) and s.members["camera"] == ("c",)
    check_accounting(p)


def test_sets_never_go_back_in_time_and_late_messages_are_dropped() -> None:
    p = policy()
    p.add(LIDAR, 100 * MS, "L100", now_ns=101 * MS)
    [s] = p.poll(200 * MS)
    assert s.missing == ("camera", "audio")
    assert p.add(LIDAR, 90 * MS, "L90", now_ns=201 * MS) == []  # older than what was emitted
    assert p.stats[LIDAR].dropped["late"] == 1
    p.add(CAMERA, 70 * MS, "c70", now_ns=202 * MS)  # can no longer be nearest to anything new
    assert p.stats[CAMERA].dropped["late"] == 1
    check_accounting(p)


def test_out_of_order_arrival_inside_the_deadline_is_used() -> None:
    p = policy()
    p.add(LIDAR, 100 * MS, "L", now_ns=101 * MS)
    p.add(CAMERA, 130 * MS, "c130", now_ns=131 * MS)  # decides camera... but 130 is beyond slop
    p.add(CAMERA, 99 * MS, "c99", now_ns=132 * MS)  # arrives late, still inside the deadline
    [s] = p.poll(150 * MS)
    assert s.members["camera"] == ("c99",)
    assert p.stats[CAMERA].out_of_order == 1
    check_accounting(p)


def test_duplicates_future_stamps_and_time_offsets() -> None:
    p = ReferenceWindowPolicy(
        [InputConfig("lidar", "reference"), InputConfig("camera", "nearest", slop_ns=5 * MS, offset_ns=-30 * MS)],
        deadline_ns=50 * MS,
    )
    p.add(1, 130 * MS, "c", now_ns=131 * MS)  # camera clock runs 30 ms ahead: rig time 100
    p.add(1, 130 * MS, "dup", now_ns=131 * MS)
    assert p.stats[1].dropped["duplicate"] == 1
    p.add(1, 10**13, "far", now_ns=132 * MS)
    assert p.stats[1].dropped["future"] == 1
    [s] = p.add(0, 100 * MS, "L", now_ns=133 * MS)
    assert s.members["camera"] == ("c",) and s.complete
    check_accounting(p)


def test_a_sensor_that_stops_and_returns() -> None:
    p = policy()
    sets: list[SyncedSet[str]] = []
    for k in range(30):  # 3 s at 10 Hz; camera dead from 1 s to 2 s
        t = k * 100 * MS
        sets += p.add(AUDIO, t - 100 * MS, f"a{k}", now_ns=t + 1 * MS, duration_ns=100 * MS) if k else []
        if not 10 <= k < 20:
            sets += p.add(CAMERA, t + 2 * MS, f"c{k}", now_ns=t + 3 * MS)
        sets += p.add(LIDAR, t, f"L{k}", now_ns=t + 4 * MS)
        sets += p.poll(t + 60 * MS)
    missing = [s.stamp_ns // (100 * MS) for s in sets if "camera" in s.missing]
    assert missing == list(range(10, 20))
    assert all(s.complete for s in sets if s.stamp_ns // (100 * MS) >= 21)
    check_accounting(p)


def test_a_sensor_at_ten_times_its_rate_stays_bounded() -> None:
    p = policy(max_queue=16)
    for k in range(2000):  # camera at 300 Hz, no lidar at all
        p.add(CAMERA, k * 3 * MS, f"c{k}", now_ns=k * 3 * MS + MS)
    assert p.pending() <= 16
    assert p.stats[CAMERA].dropped["queue_overflow"] == 2000 - 16
    check_accounting(p)


def test_clock_jump_backwards_resets_like_a_looping_bag() -> None:
    p = policy()
    for k in range(20):  # 2 s of bag
        p.add(LIDAR, k * 100 * MS, f"L{k}", now_ns=k * 100 * MS)
        p.poll(k * 100 * MS + 60 * MS)
    p.add(CAMERA, 1950 * MS, "c", now_ns=1960 * MS)
    assert p.add(LIDAR, 0, "L0-again", now_ns=5 * MS) == []  # the bag starts over
    [s] = p.poll(60 * MS)
    assert p.resets == 1
    assert s.stamp_ns == 0
    assert p.stats[CAMERA].dropped["reset"] == 1
    check_accounting(p)


def test_one_old_frame_of_another_input_is_late_not_a_new_timeline() -> None:
    """A camera whose first frame took 1.5 s to render must not reset the live sets."""
    p = policy()
    for k in range(20):
        p.add(LIDAR, k * 100 * MS, f"L{k}", now_ns=k * 100 * MS + MS)
        p.poll(k * 100 * MS + 60 * MS)
    p.add(AUDIO, 1900 * MS, "a1900", now_ns=1950 * MS, duration_ns=20 * MS)
    assert p.add(CAMERA, 400 * MS, "c400", now_ns=1960 * MS) == []
    assert p.resets == 0 and p.stats[CAMERA].dropped["late"] == 1
    assert p.stats[AUDIO].dropped.get("reset", 0) == 0
    check_accounting(p)


@pytest.mark.parametrize(
    "inputs",
    [
        [InputConfig("a", "nearest"), InputConfig("b", "nearest")],
        [InputConfig("a", "reference"), InputConfig("a", "nearest")],
        [InputConfig("a", "reference"), InputConfig("b", "reference")],
    ],
)
def test_bad_configuration(inputs: list[InputConfig]) -> None:
    with pytest.raises(ValueError):
        ReferenceWindowPolicy(inputs)


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        InputConfig("x", "sometimes")  # type: ignore[arg-type]


events = st.lists(
    st.tuples(st.integers(0, 2), st.integers(-30, 200), st.integers(0, 40)),  # input, jitter ms, delay ms
    max_size=150,
)


@settings(max_examples=200, deadline=None)
@given(events, st.integers(1, 20), st.sampled_from([0, 100 * MS]))
def test_properties(evts: list[tuple[int, int, int]], max_queue: int, reference_period: int) -> None:
    p = policy(reference_period, max_queue=max_queue)
    now = 0
    last = -1
    for n, (i, jitter, delay) in enumerate(evts):
        now += delay * MS
        stamp = max(0, now - jitter * MS)
        sets = p.add(i, stamp, f"{i}:{n}", now_ns=now, duration_ns=20 * MS if i == AUDIO else 0)
        sets += p.poll(now)
        for s in sets:
            assert s.stamp_ns > last, "sets went back in time"
            last = s.stamp_ns
            assert set(s.members) | set(s.missing) == {"lidar", "camera", "audio"}
            assert not set(s.members) & set(s.missing)
        assert p.pending() <= 3 * max_queue
        check_accounting(p)


def test_a_known_period_decides_without_waiting_for_the_next_frame() -> None:
    slow = ReferenceWindowPolicy(
        [InputConfig("lidar", "reference"), InputConfig("camera", "nearest", slop_ns=20 * MS)], deadline_ns=90 * MS
    )
    fast = ReferenceWindowPolicy(
        [InputConfig("lidar", "reference"), InputConfig("camera", "nearest", slop_ns=20 * MS, period_ns=33 * MS)],
        deadline_ns=90 * MS,
    )
    for p in (slow, fast):
        p.add(1, 95 * MS, "c95", now_ns=97 * MS)
    assert slow.add(0, 100 * MS, "L", now_ns=101 * MS) == []  # c128 might still be nearer... it is not
    [s] = fast.add(0, 100 * MS, "L", now_ns=101 * MS)  # the next frame is >= 128: 28 ms > 5 ms
    assert s.members["camera"] == ("c95",)
    [s] = slow.add(1, 128 * MS, "c128", now_ns=130 * MS)
    assert s.members["camera"] == ("c95",)
    # nothing within slop and the next frame cannot be: missing, decided at once
    p = ReferenceWindowPolicy(
        [InputConfig("lidar", "reference"), InputConfig("camera", "nearest", slop_ns=5 * MS, period_ns=50 * MS)],
    )
    p.add(1, 80 * MS, "c80", now_ns=81 * MS)
    [s] = p.add(0, 100 * MS, "L", now_ns=101 * MS)
    assert s.missing == ("camera",)


def feed_without_lidar(p: ReferenceWindowPolicy[str], start_ms: int, end_ms: int) -> list[SyncedSet[str]]:
    """Camera every 33 ms and audio every 20 ms from ``start_ms``, each arriving 2 ms after its stamp."""
    events = [(t, CAMERA, 0) for t in range(start_ms, end_ms, 33)]
    events += [(t, AUDIO, 20 * MS) for t in range(start_ms, end_ms, 20)]
    out: list[SyncedSet[str]] = []
    for t, i, duration in sorted(events):
        out += p.add(i, t * MS, f"{'ca'[i - 1]}{t}", now_ns=(t + 2) * MS, duration_ns=duration)
    return out


def test_a_silent_reference_with_a_period_gets_stand_in_sets_until_it_returns() -> None:
    p = policy(reference_period_ns=100 * MS, deadline_ns=50 * MS)
    sets = []
    for t in (0, 100, 200):  # the LiDAR runs, then dies after the sweep at 200 ms
        sets += p.add(LIDAR, t * MS, f"L{t}", now_ns=(t + 1) * MS)
    sets += feed_without_lidar(p, 0, 700)
    stamps = [s.stamp_ns // MS for s in sets]
    # silent once nothing arrived for a period + the deadline (from 351 ms); each stand-in is
    # then due at its stamp + the deadline, like a real set
    assert stamps == [0, 100, 200, 300, 400, 500, 600], stamps
    stand_ins = sets[3:]
    assert all(s.missing == ("lidar",) for s in stand_ins)
    assert [s.members["camera"] for s in stand_ins] == [("c297",), ("c396",), ("c495",), ("c594",)]
    assert stand_ins[0].members["audio"] == ("a200", "a220", "a240", "a260", "a280")
    assert p.stand_ins == 4
    # the LiDAR comes back: its sweeps make ordinary sets again, and no stand-in comes between
    sets = p.add(LIDAR, 700 * MS, "L700", now_ns=702 * MS)
    sets += feed_without_lidar(p, 700, 800) + p.poll(851 * MS)
    assert [(s.stamp_ns // MS, s.missing) for s in sets] == [(700, ())]
    check_accounting(p)


def test_no_stand_ins_without_a_reference_period_or_without_anything_to_send() -> None:
    p = policy(deadline_ns=50 * MS)
    p.add(LIDAR, 0, "L0", now_ns=MS)
    assert [s.stamp_ns for s in feed_without_lidar(p, 0, 1000)] == [0]  # only the real sweep
    q = policy(reference_period_ns=100 * MS, deadline_ns=50 * MS)
    assert len(q.add(LIDAR, 0, "L0", now_ns=MS) + q.poll(200 * MS)) == 1
    assert q.poll(5_000 * MS) == [] and q.stand_ins == 0  # every sensor silent: nothing to send
    # a long pause of the clock does not release a burst of stand-ins for the time gone by
    assert [s.stamp_ns // MS for s in feed_without_lidar(q, 5_000, 5_300)] == [5_000, 5_100, 5_200]


def test_a_sweep_later_than_its_stand_in_is_dropped_as_late() -> None:
    p = policy(reference_period_ns=100 * MS, deadline_ns=50 * MS)
    p.add(LIDAR, 0, "L0", now_ns=MS)
    sets = feed_without_lidar(p, 0, 300)
    assert [s.stamp_ns // MS for s in sets] == [0, 100, 200]  # silent from 151 ms
    assert p.add(LIDAR, 100 * MS, "L100", now_ns=300 * MS) == []  # 200 ms late: its stand-in went out
    assert p.stats[LIDAR].dropped["late"] == 1
    check_accounting(p)


def test_sweeps_that_keep_coming_late_are_never_replaced_by_stand_ins() -> None:
    """A slow LiDAR driver (sweeps 160 ms after their stamp, deadline 50 ms) is late, not dead."""
    p = policy(reference_period_ns=100 * MS, deadline_ns=50 * MS)
    events = [(t + 160, LIDAR, t, 0) for t in range(0, 3000, 100)]
    events += [(t + 2, CAMERA, t, 0) for t in range(0, 3000, 33)]
    events += [(t + 22, AUDIO, t, 20 * MS) for t in range(0, 3000, 20)]
    sets: list[SyncedSet[str]] = []
    for now, i, t, duration in sorted(events):
        sets += p.add(i, t * MS, f"{i}:{t}", now_ns=now * MS, duration_ns=duration)
    assert p.stand_ins == 0 and p.stats[LIDAR].dropped == {}
    assert all("lidar" in s.members for s in sets) and len(sets) >= 29
    check_accounting(p)
