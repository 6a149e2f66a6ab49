"""One process: transport, registry, security, clocks, the Node and its runner, parameters,
introspection, process statistics and the numba compile helper. Imports core and errors.

:class:`NodeHarness` runs a node type's ``setup`` in-process, without sockets, for unit tests.
The transport loads with the package (``import fusion_stream`` needs it); the node, its runner
and the harness load on first use."""

from typing import TYPE_CHECKING

from fusion_stream.core.lazy import lazy_exports
from fusion_stream.runtime.clock import Clock, ReplayClock, TopicClock, WallClock
from fusion_stream.runtime.registry import Registry, TopicEntry
from fusion_stream.runtime.security import CurveKeys
from fusion_stream.runtime.transport import Publisher, PublisherStats, Subscriber, SubscriberStats

if TYPE_CHECKING:
    from fusion_stream.runtime.node import DIAGNOSTICS_TOPIC, Node
    from fusion_stream.runtime.nodetypes import NodeTopics, NodeType
    from fusion_stream.runtime.runner import run_node
    from fusion_stream.runtime.testing import NodeHarness

__all__ = [
    "DIAGNOSTICS_TOPIC",
    "Clock",
    "CurveKeys",
    "Node",
    "NodeHarness",
    "NodeTopics",
    "NodeType",
    "Publisher",
    "PublisherStats",
    "Registry",
    "ReplayClock",
    "Subscriber",
    "SubscriberStats",
    "TopicClock",
    "TopicEntry",
    "WallClock",
    "run_node",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DIAGNOSTICS_TOPIC": "fusion_stream.runtime.node",
        "Node": "fusion_stream.runtime.node",
        "run_node": "fusion_stream.runtime.runner",
        "NodeHarness": "fusion_stream.runtime.testing",
        "NodeTopics": "fusion_stream.runtime.nodetypes",
        "NodeType": "fusion_stream.runtime.nodetypes",
    },
)
