"""Node runtime, params, clocks and the pure introspection helpers, in one process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fusion_stream.core import msgs
from fusion_stream.core.wire import Envelope
from fusion_stream.errors import ParamError
from fusion_stream.runtime import params
from fusion_stream.runtime.clock import ReplayClock, WallClock
from fusion_stream.runtime.introspect import RateMeter, describe, to_jsonable
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber
from fusion_stream.sources import testpattern

from .conftest import wait_for


@dataclass(frozen=True)
class P:
    topic: str
    rate_hz: float = 10.0
    sizes: tuple[int, ...] = (1, 2)


def test_params_merge_files_then_overrides(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("topic: /a\nrate_hz: 5\n")
    b = tmp_path / "b.yaml"
    b.write_text("rate_hz: 7\n")
    assert params.load(P, files=[a, b]) == P("/a", 7.0)
    assert params.load(P, files=[a], overrides=["rate_hz:=12", "sizes:=[3, 4]"]) == P("/a", 12.0, (3, 4))


@pytest.mark.parametrize(
    ("content", "overrides", "key", "text"),
    [
        ("topic: /a\nrate: 5\n", [], "rate", "unknown parameter"),
        ("rate_hz: 5\n", [], "topic", "missing"),
        ("topic: /a\nrate_hz: fast\n", [], "rate_hz", "Expected `float`"),
        ("- a\n- b\n", [], "<file>", "mapping"),
        ("topic: [unclosed\n", [], "<file>", "cannot read"),
        ("topic: /a\n", ["rate_hz"], "rate_hz", "KEY:=VALUE"),
    ],
)
def test_param_errors_name_the_key_and_file(
    tmp_path: Path, content: str, overrides: list[str], key: str, text: str
) -> None:
    f = tmp_path / "node.yaml"
    f.write_text(content)
    with pytest.raises(ParamError) as info:
        params.load(P, files=[f], overrides=overrides)
    assert info.value.key == key
    assert text in str(info.value)
    if key != "rate_hz" or overrides == []:
        assert info.value.path in (str(f), None)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match="file not found"):
        params.load(P, files=[tmp_path / "nope.yaml"])


def test_replay_clock_follows_bag_time_and_refuses_to_go_back() -> None:
    clock = ReplayClock(100)
    assert clock.now_ns() == 100
    woke = threading.Event()

    def sleeper() -> None:
        clock.sleep_until(500)
        woke.set()

    t = threading.Thread(target=sleeper)
    t.start()
    clock.set(300)
    assert not woke.wait(0.1)
    clock.set(500)
    assert woke.wait(2.0)
    t.join()
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(400)
    clock.set(10, reset=True)
    assert clock.now_ns() == 10
    stop = threading.Event()
    stop.set()
    assert clock.sleep_until(10**9, stop) is False


def test_wall_clock() -> None:
    c = WallClock()
    t = c.now_ns()
    assert abs(t - time.time_ns()) < 10**8
    assert c.sleep_until(t + 1_000_000)
    assert c.now_ns() >= t + 1_000_000


def test_node_dispatches_callbacks_runs_timers_and_reports(registry: Registry) -> None:
    node = Node("unit", registry=registry, handle_signals=False, diagnostics_period_s=3600)
    pub = node.publisher("/in")
    seen: list[int] = []
    ticks: list[int] = []

    def on_msg(env: Envelope) -> None:
        if env.message.stamp_ns == 13:
            raise RuntimeError("boom")  # a buggy callback must not kill the node
        seen.append(env.message.stamp_ns)

    node.subscribe("/in", on_msg)
    node.timer(0.01, lambda: ticks.append(1))
    try:

        def step() -> bool:
            pub.publish(testpattern.radar_scan(1))
            node.spin_once(0.05)
            return bool(seen)

        wait_for(step, 5.0, "node to receive")
        for stamp in (12, 13, 14):
            pub.publish(testpattern.radar_scan(stamp))
        wait_for(lambda: (node.spin_once(0.05), 14 in seen)[1], 5.0, "messages")
        assert 13 not in seen and node.errors == 1
        t_end = time.monotonic() + 0.1
        while time.monotonic() < t_end:
            node.spin_once(0.02)
        assert 3 <= len(ticks) <= 12
        report = node.diagnostics()
        assert report.node == "unit"
        assert report.values["errors"] == 1
        assert report.values["sub./in.received"] == len(seen) + 1
        assert report.values["pub./in.sent"] == pub.stats.sent
        assert float(report.values["sub./in.proc_ms_max"]) >= 0
    finally:
        node.close()
    assert registry.entries() == []


def test_node_spin_stops_on_request_within_the_poll_bound(registry: Registry) -> None:
    node = Node("stopper", registry=registry, handle_signals=False)
    threading.Timer(0.2, node.request_stop).start()
    t0 = time.monotonic()
    assert node.spin() == 0
    assert time.monotonic() - t0 < 1.0


def test_node_publishes_diagnostics_every_period(registry: Registry) -> None:
    node = Node("diag", registry=registry, handle_signals=False, diagnostics_period_s=0.1)
    with Subscriber("/diagnostics", registry=registry) as sub:
        thread = threading.Thread(target=node.spin, args=(2.0,))
        thread.start()
        reports = [m for m in iter(lambda: sub.recv(timeout=1.0), None) if isinstance(m, msgs.Diagnostics)]
        thread.join()
    assert len(reports) >= 5
    assert reports[-1].level == msgs.Level.STALE and "duration elapsed" in reports[-1].message


def test_to_jsonable_summarises_big_arrays() -> None:
    img = testpattern.image(0, 64, 48)
    j = to_jsonable(img)
    assert j["type"] == "Image" and j["data"]["shape"] == [48, 64, 3] and "head" in j["data"]
    small = to_jsonable(np.arange(3, dtype=np.int16))
    assert small == {"dtype": "int16", "shape": [3], "data": [0, 1, 2]}
    diag = to_jsonable(msgs.Diagnostics(stamp_ns=1, node="n", level=msgs.Level.ERROR))
    assert diag["level"] == "ERROR"
    for topic, m in testpattern.sample_messages().items():
        assert describe(m), topic


def test_rate_meter() -> None:
    meter = RateMeter(window=10)
    assert meter.rate() is None
    for i in range(20):
        meter.add(i * 100_000_000, nbytes=1000)
    rate = meter.rate()
    assert rate is not None
    assert rate.rate_hz == pytest.approx(10.0)
    assert rate.window == 10 and rate.std_period_s == pytest.approx(0.0)
    assert rate.bytes_per_s == pytest.approx(10_000)
