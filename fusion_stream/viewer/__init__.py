"""Watching a running graph: a tap on every topic, live rates and health, pictures, a web page and a
Foxglove bridge. Names load on first use (the bridge needs foxglove-sdk)."""

from typing import TYPE_CHECKING

from fusion_stream.core.lazy import lazy_exports

if TYPE_CHECKING:
    from fusion_stream.viewer.foxglove_bridge import FoxgloveBridge
    from fusion_stream.viewer.live import GraphWatcher
    from fusion_stream.viewer.server import serve, write_pngs
    from fusion_stream.viewer.tap import TopicTap

__all__ = [
    "FoxgloveBridge",
    "GraphWatcher",
    "TopicTap",
    "serve",
    "write_pngs",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "FoxgloveBridge": "fusion_stream.viewer.foxglove_bridge",
        "GraphWatcher": "fusion_stream.viewer.live",
        "TopicTap": "fusion_stream.viewer.tap",
        "serve": "fusion_stream.viewer.server",
        "write_pngs": "fusion_stream.viewer.server",
    },
)
