"""Loans (``Publisher.loan``): a producer writes into a shared-memory slot and publishes it with
no copy. Real processes and segments in /dev/shm; misuse refused with TransportError."""

from __future__ import annotations

import gc
import json
import time

import numpy as np
import pytest

from fusion_stream.core import msgs
from fusion_stream.errors import TransportError
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.shm import DEFAULT_SLOTS, SHM_DIR
from fusion_stream.runtime.transport import Publisher, Subscriber
from tests.conftest import Procs
from tests.loan_publisher import SHAPE, checksum, pattern
from tests.test_shm_transport import mapped, segments

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="no /dev/shm on this machine")


def image(data: np.ndarray, i: int = 1) -> msgs.Image:
    return msgs.Image(stamp_ns=i, frame_id="cam", data=data, encoding="rgb8")


def test_loaned_images_from_another_process_arrive_intact_locally_and_over_tcp(
    procs: Procs, registry: Registry
) -> None:
    child = procs.python("-m", "tests.loan_publisher", "/loan/image", stdin=-1)
    assert child.stdout is not None and child.stdin is not None
    remote_ep = json.loads(child.stdout.readline())["remote"]
    got = {"local": 0, "remote": 0}
    with (
        Subscriber("/loan/image", registry=registry, timeout=10.0) as local,
        Subscriber("/loan/image", endpoints=[remote_ep], timeout=10.0) as remote,
    ):
        local.wait_for_publishers(10.0)
        deadline = time.monotonic() + 30.0
        while (got["local"] < 20 or got["remote"] < 5) and time.monotonic() < deadline and child.poll() is None:
            for name, sub in (("local", local), ("remote", remote)):
                msg = sub.recv(timeout=0.05)
                if msg is None:
                    continue
                assert isinstance(msg, msgs.Image)
                assert mapped(msg.data) == (name == "local")  # local: a view of the producer's slot
                assert msg.frame_id == checksum(msg.data) and np.array_equal(msg.data, pattern(msg.stamp_ns))
                got[name] += 1
        assert got["local"] >= 20 and got["remote"] >= 5, got
        assert not remote.stats.malformed
        assert set(local.stats.malformed) <= {"stale"}  # a queued message whose slot was lent again
        (src,) = {e.src for e in registry.lookup("/loan/image")}
        assert len(segments(registry, src)) == 1
    out, err = child.communicate("stop\n", timeout=20)
    assert child.returncode == 0, err
    counts = json.loads(out.splitlines()[-1])
    assert counts["loans"] + counts["fallbacks"] == counts["published"] >= 20
    assert counts["loans"] > 0 and counts["segment"].endswith("-0")  # the pool never grew


def test_a_loan_is_published_without_a_copy_and_only_once(registry: Registry) -> None:
    with Publisher("/loan/once", registry=registry, shm=True, shm_threshold=2 << 20) as pub:
        data = pub.loan(SHAPE, np.uint8)
        assert mapped(data) and data.flags.writeable
        data[...] = pattern(3)
        assert pub.publish(image(data)) < 1000 and not data.flags.writeable  # a descriptor: no copy
        assert pub.stats.shm_loans == 1
        with pytest.raises(TransportError, match="already published or released"):
            pub.publish(image(data))
        view = data[1:]
        with pytest.raises(TransportError, match="already published or released"):
            pub.publish(image(view))
        second = pub.loan(SHAPE, np.uint8)
        pub.release(second)
        with pytest.raises(TransportError, match="already published or released"):
            pub.publish(image(second))
        with pytest.raises(TransportError, match="not a loan"):
            pub.release(second)
        assert pub.stats.shm_loans == 1 and pub.stats.shm_fallback == 0


def test_a_loan_bigger_than_a_slot_grows_the_pool_unless_smaller_loans_are_out(registry: Registry) -> None:
    too_big = pytest.raises(TransportError, match=r"loan of 3000000 bytes exceeds .* slot size of 1048576 bytes")
    with Publisher("/loan/big", registry=registry, shm=True, shm_threshold=1 << 20) as pub:
        small = pub.loan((1000, 1000), np.uint8)
        with too_big:
            pub.loan((1000, 1000, 3), np.uint8)
        pub.release(small)
        big = pub.loan((1000, 1000, 3), np.uint8)  # nothing lent: a segment of bigger slots
        assert mapped(big) and pub.shm_segment is not None and pub.shm_segment.endswith("-1")
        big[...] = 7
        pub.publish(image(big))
        assert pub.stats.shm_loans == 1


def test_unpublished_loans_return_to_the_pool_and_a_full_pool_lends_plain_arrays(registry: Registry) -> None:
    with Publisher("/loan/gc", registry=registry, shm=True, shm_threshold=2 << 20) as pub:
        held = [pub.loan(SHAPE, np.uint8) for _ in range(DEFAULT_SLOTS)]
        assert all(mapped(a) for a in held) and len({a.ctypes.data for a in held}) == DEFAULT_SLOTS
        plain = pub.loan(SHAPE, np.uint8)  # every slot lent: a plain array, the same code works
        assert not mapped(plain) and pub.stats.shm_fallback == 1
        plain[...] = 5
        pub.publish(image(plain))
        del held
        gc.collect()
        with pub.loaned(SHAPE, np.uint8) as data:  # garbage-collected loans freed their slots
            assert mapped(data)
        with pub.loaned(SHAPE, np.uint8) as again:  # the with block released the last one
            assert mapped(again)
            pub.publish(image(again))
        assert pub.stats.shm_loans == 1
        assert pub.shm_segment is not None and pub.shm_segment.endswith("-0")  # loans never grow the pool


def test_without_shm_a_loan_is_a_plain_array_and_nothing_changes(registry: Registry) -> None:
    with Publisher("/loan/plain", registry=registry, shm=False) as pub:
        with Subscriber("/loan/plain", registry=registry, timeout=5.0) as sub:
            sub.wait_for_publishers(5.0)
            deadline = time.monotonic() + 10.0
            msg = None
            while msg is None and time.monotonic() < deadline:
                with pub.loaned(SHAPE, np.uint8) as data:
                    data[...] = pattern(4)
                    pub.publish(image(data, 4))
                msg = sub.recv(timeout=0.1)
            assert isinstance(msg, msgs.Image) and np.array_equal(msg.data, pattern(4)) and not mapped(msg.data)
        assert pub.shm_segment is None and pub.stats.shm_loans == 0 and pub.stats.shm_fallback == 0


def test_a_leading_slice_of_a_loan_goes_as_the_loan_and_a_strided_view_is_refused(registry: Registry) -> None:
    with (
        Publisher("/loan/rows", registry=registry, shm=True) as pub,
        Subscriber("/loan/rows", registry=registry, timeout=5.0) as sub,
    ):
        sub.wait_for_publishers(5.0)
        rows = pub.loan((40_000, 6), np.float32)
        rows[...] = np.arange(rows.size, dtype=np.float32).reshape(rows.shape)
        sent = msgs.PointCloud(
            stamp_ns=1, frame_id="l", data=rows[:25_000], fields=("x", "y", "z", "intensity", "a", "b")
        )
        assert pub.publish(sent) < 1000 and pub.stats.shm_loans == 1  # the filled prefix, no copy
        got = sub.recv(timeout=5.0)
        assert isinstance(got, msgs.PointCloud) and mapped(got.data) and np.array_equal(got.data, rows[:25_000])
        strided = pub.loan((40_000, 6), np.float32)
        with pytest.raises(TransportError, match="not contiguous"):
            pub.publish(msgs.PointCloud(stamp_ns=2, frame_id="l", data=strided[:, :4]))
        assert pub.stats.shm_loans == 1


def test_a_published_loan_collected_late_does_not_unlock_a_later_loan_of_its_slot(registry: Registry) -> None:
    with Publisher("/loan/late", registry=registry, shm=True, shm_slots=2, shm_threshold=2 << 20) as pub:
        first = pub.loan(SHAPE, np.uint8)
        pub.publish(image(first))  # kept alive here, as a message someone still holds would be
        pub.publish(image(pub.loan(SHAPE, np.uint8)))
        third = pub.loan(SHAPE, np.uint8)  # the first one's slot, at the same address
        assert third.ctypes.data == first.ctypes.data
        del first
        gc.collect()  # its finalizer runs now: the third loan must stay lent (and write-locked)
        third[...] = pattern(3)
        assert pub.publish(image(third, 3)) < 1000 and pub.stats.shm_loans == 3
