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

from fusion_stream.core import msgs
from fusion_stream.core.wire import Envelope
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics
from fusion_stream.runtime.runner import run_node
from fusion_stream.sync.live import SyncReport
from fusion_stream.sync.settings import InputParams, Params, config_from
from fusion_stream.sync.stage import Emitted, SyncStage

__all__ = ["InputParams", "Params", "check", "config_from", "setup", "topics"]


def topics(p: Params) -> NodeTopics:
    return NodeTopics(inputs=tuple(i.topic for i in p.inputs), outputs=(p.output,))


def check(p: Params) -> None:
    """What can be judged before the node starts: the policy, the inputs and the calibration
    (``fusion-stream launch`` calls it; setup builds the same config)."""
    config_from(p)


def setup(node: Node, p: Params) -> None:
    stage = SyncStage(config_from(p))
    pub = node.publisher(p.output, msgs.SyncedFrame)
    sync_report = SyncReport(stage)

    def publish(emitted: list[Emitted]) -> None:
        for e in emitted:
            pub.publish(e.frame)
            sync_report.emitted(e, node.clock.now_ns())

    def on_message(env: Envelope) -> None:
        publish(stage.offer(env.topic, env.message, node.clock.now_ns()))

    def report() -> dict[str, msgs.ScalarValue]:
        values, level, message = sync_report.report()
        node.set_status(level, message)
        return values

    node.subscribe(stage.topics, on_message, queue_size=p.queue_size)
    node.timer(0.005, lambda: publish(stage.poll(node.clock.now_ns())))
    node.add_diagnostics(report)


if __name__ == "__main__":
    raise SystemExit(run_node("sync", Params, setup))
