"""Sync node: aligns sensor topics into SyncedFrame messages on /sync/frames.

Parameters (YAML)::

    policy: reference          # or approximate (ROS message_filters ApproximateTime)
    deadline_ms: 100           # reference: emit partial sets this long after the sweep's stamp
    inputs:
      - {name: lidar,  topic: /lidar/top/points,  mode: reference}
      - {name: camera, topic: /camera/front/image, mode: nearest, slop_ms: 20, period_ms: 30}
      - {name: audio,  topic: /audio/array/chunk,  mode: window,  window_ms: 100}
    calib: calib/sim_rig.yaml  # optional: inputs with `sensor: NAME` get that sensor's time offset
"""

from __future__ import annotations

import time

from fusion_stream import msgs
from fusion_stream.launch import NodeTopics
from fusion_stream.node import Node
from fusion_stream.runner import run_node
from fusion_stream.sync.settings import InputParams, Params, config_from
from fusion_stream.sync.stage import Emitted, SyncStage
from fusion_stream.wire import Envelope

__all__ = ["InputParams", "Params", "config_from", "setup", "topics"]


def topics(p: Params) -> NodeTopics:
    return NodeTopics(inputs=tuple(i.topic for i in p.inputs), outputs=(p.output,))


def setup(node: Node, p: Params) -> None:
    stage = SyncStage(config_from(p))
    pub = node.publisher(p.output, msgs.SyncedFrame)
    latency_ns: list[int] = []
    window = {"sets": 0, "partial": 0}

    def publish(emitted: list[Emitted]) -> None:
        for e in emitted:
            pub.publish(e.frame)
            latency_ns.append(time.time_ns() - e.last_arrival_ns)
            window["sets"] += 1
            window["partial"] += bool(e.frame.missing)

    def on_message(env: Envelope) -> None:
        publish(stage.offer(env.topic, env.message, node.clock.now_ns()))

    reported_wrong = {"n": 0}

    def report() -> dict[str, msgs.ScalarValue]:
        values = stage.diagnostics()
        lat = sorted(latency_ns)
        values["sync.added_latency_ms_p50"] = round(lat[len(lat) // 2] / 1e6, 3) if lat else 0.0
        values["sync.added_latency_ms_max"] = round(lat[-1] / 1e6, 3) if lat else 0.0
        wrong = sum(stage.wrong_type.values())
        problems = []
        if wrong > reported_wrong["n"]:  # logged once per input and type: the status says it goes on
            inputs = sorted({name for name, _ in stage.wrong_type})
            problems.append(f"{wrong - reported_wrong['n']} messages of a wrong type on {', '.join(inputs)}")
            reported_wrong["n"] = wrong
        if window["partial"]:
            problems.append(f"{window['partial']} of {window['sets']} sets partial")
        node.set_status(msgs.Level.WARN if problems else msgs.Level.OK, "; ".join(problems))
        latency_ns.clear()
        window.update(sets=0, partial=0)
        return values

    node.subscribe(stage.topics, on_message, queue_size=p.queue_size)
    node.timer(0.005, lambda: publish(stage.poll(node.clock.now_ns())))
    node.add_diagnostics(report)


if __name__ == "__main__":
    raise SystemExit(run_node("sync", Params, setup))
