"""A node that republishes ``testpattern.sample_messages(seed)`` every ``period_s``: one message
of every type, each on its own topic, so another process can check they arrive unchanged."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.runtime.node import Node
from fusion_stream.runtime.runner import run_node
from fusion_stream.sources.testpattern import sample_messages


@dataclass(frozen=True)
class Params:
    seed: int = 0
    period_s: float = 0.05


def setup(node: Node, p: Params) -> None:
    samples = sample_messages(p.seed)
    # /diagnostics is the node's own topic; publish the sample Diagnostics under another name
    pubs = {t: node.publisher("/samples/diagnostics" if t == "/diagnostics" else t) for t in samples}

    def tick() -> None:
        for topic, msg in samples.items():
            pubs[topic].publish(msg)

    node.timer(p.period_s, tick)


if __name__ == "__main__":
    raise SystemExit(run_node("samples", Params, setup))
