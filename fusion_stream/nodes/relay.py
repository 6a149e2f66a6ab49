"""Relay: republishes one topic under another name, optionally keeping only the newest message.

The ROS ``topic_tools relay`` equivalent; handy to rename a topic or to put a keep-latest
buffer in front of a slow consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.core.wire import Envelope
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics
from fusion_stream.runtime.runner import run_node


@dataclass(frozen=True)
class Params:
    input: str
    output: str
    latest: bool = False


def topics(p: Params) -> NodeTopics:
    return NodeTopics(inputs=(p.input,), outputs=(p.output,))


def setup(node: Node, p: Params) -> None:
    pub = node.publisher(p.output)

    def forward(env: Envelope) -> None:
        pub.publish(env.message)

    node.subscribe(p.input, forward, latest=p.latest)


if __name__ == "__main__":
    raise SystemExit(run_node("relay", Params, setup))
