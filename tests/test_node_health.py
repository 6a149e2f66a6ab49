"""A node's reports go out on time whatever its callbacks do, and say what the node costs and
whether a source keeps its rate."""

from __future__ import annotations

import threading
import time

from fusion_stream.core import msgs
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.procstats import RateWatch
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sources import testpattern

from .conftest import wait_for


def _reports(registry: Registry, node: Node, seconds: float, feed: Publisher | None = None) -> list[msgs.Diagnostics]:
    """Spin ``node`` for ``seconds`` (feeding it 50 messages/s) and collect its reports."""
    got: list[msgs.Diagnostics] = []
    with Subscriber("/diagnostics", registry=registry, queue_size=1000) as sub:
        wait_for(lambda: sub.endpoints, 5, "diagnostics link")
        time.sleep(0.3)  # ZeroMQ joins late: let the link settle before anything counts
        stop = threading.Event()

        def feeder() -> None:
            while feed is not None and not stop.is_set():
                feed.publish(testpattern.radar_scan(time.time_ns()))
                time.sleep(0.02)

        t = threading.Thread(target=feeder, daemon=True)
        t.start()
        spinner = threading.Thread(target=node.spin, args=(seconds,), daemon=True)
        spinner.start()
        deadline = time.monotonic() + seconds + 1.0
        while time.monotonic() < deadline:
            msg = sub.recv(timeout=0.1)
            if isinstance(msg, msgs.Diagnostics) and msg.node == node.name:
                got.append(msg)
        stop.set()
        spinner.join(5)
        t.join(2)
    return got


def test_a_slow_latest_subscriber_still_reports_every_period(registry: Registry) -> None:
    """A 120 ms callback with a newer message always waiting: reports used to wait for 64 of them."""
    node = Node("slow", registry=registry, handle_signals=False, diagnostics_period_s=0.25)
    node.subscribe("/in", lambda env: time.sleep(0.12), latest=True)
    with Publisher("/in", registry=registry) as pub:
        reports = [r for r in _reports(registry, node, 3.0, pub) if "busy_s" not in r.values]
    # ~12 reports in 3 s at 0.25 s; before, none came between the 64-message batches (7.7 s each)
    assert len(reports) >= 6, len(reports)
    handled = sum(float(r.values.get("sub./in.rate_hz", 0)) > 0 for r in reports)
    assert handled >= 4


def test_one_long_callback_is_reported_busy_by_the_watchdog(registry: Registry) -> None:
    node = Node("stuck", registry=registry, handle_signals=False, diagnostics_period_s=0.2)
    node.timer(0.05, lambda: time.sleep(1.5) if not node.errors else None)
    reports = _reports(registry, node, 1.2)
    busy = [r for r in reports if "busy_s" in r.values]
    assert busy, [r.message for r in reports]
    assert all(r.level == msgs.Level.WARN and r.values["busy_in"] == "timer" for r in busy)
    assert max(float(r.values["busy_s"]) for r in busy) >= 0.3


def test_reports_carry_cpu_and_memory(registry: Registry) -> None:
    node = Node("meter", registry=registry, handle_signals=False)
    try:
        node.diagnostics()
        t0, wall0 = time.process_time(), time.monotonic()
        while time.process_time() - t0 < 0.3:  # burn CPU on this thread
            pass
        values = node.diagnostics().values
        # what this process really got: on a busy machine a busy thread gets less than a core
        got_pct = 100 * (time.process_time() - t0) / (time.monotonic() - wall0)
    finally:
        node.close()
    assert got_pct * 0.7 - 5 <= float(values["cpu_pct"]) <= got_pct * 1.3 + 10, (values["cpu_pct"], got_pct)
    assert 10 < float(values["rss_mb"]) < 4096


def test_a_source_below_its_nominal_rate_or_skipping_frames_reports_warn(registry: Registry) -> None:
    node = Node("cam", registry=registry, handle_signals=False)
    skipped = [0]
    pub = node.publisher("/cam", msgs.RadarScan, nominal_hz=15.0, skipped=lambda: skipped[0])
    try:
        watch = node._watched[0].rate
        assert watch is not None
        watch.window_s = 0.5  # judge over half a second for the test
        node.diagnostics()
        for _ in range(3):  # 3 messages in 0.6 s: 5 Hz of 15
            pub.publish(testpattern.radar_scan(1))
            time.sleep(0.2)
        slow = node.diagnostics()
        assert slow.level == msgs.Level.WARN and "/cam at" in slow.message and "of 15" in slow.message
        skipped[0] = 7
        report = node.diagnostics()
        assert "7 frames skipped on /cam" in report.message
        assert report.values["pub./cam.nominal_hz"] == 15.0
    finally:
        node.close()


def test_rate_watch_judges_a_full_window_only() -> None:
    watch = RateWatch(10.0, window_s=5.0)
    assert watch.add(0.0, 1) is None
    assert watch.add(2.0, 21) is None  # not a full window yet
    rate = watch.add(5.0, 46)
    assert rate == 9.0 and not watch.short(rate)
    rate = watch.add(10.0, 76)  # 30 in the last 5 s: 6 Hz
    assert rate is not None and abs(rate - 6.0) < 0.6 and watch.short(rate)
