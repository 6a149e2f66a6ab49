"""Bags: MCAP and ROS 1/2 reading, MCAP writing, ours ⇄ ROS messages, topic maps, recording,
replay, recovery and transcoding. Names load on first use (rosbags and mcap only when needed)."""

from typing import TYPE_CHECKING

from fusion_stream.core.lazy import lazy_exports

if TYPE_CHECKING:
    from fusion_stream.bag.mapping import TopicMap, load_map
    from fusion_stream.bag.reader import Bag, BagInfo, BagLimitError, BagTruncatedError, open_bag
    from fusion_stream.bag.recorder import Recorder
    from fusion_stream.bag.replay import Replayer, ReplayOptions
    from fusion_stream.bag.transcode import convert_bag
    from fusion_stream.bag.writer import BagWriter

__all__ = [
    "Bag",
    "BagInfo",
    "BagLimitError",
    "BagTruncatedError",
    "BagWriter",
    "Recorder",
    "ReplayOptions",
    "Replayer",
    "TopicMap",
    "convert_bag",
    "load_map",
    "open_bag",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Bag": "fusion_stream.bag.reader",
        "BagInfo": "fusion_stream.bag.reader",
        "BagLimitError": "fusion_stream.bag.reader",
        "BagTruncatedError": "fusion_stream.bag.reader",
        "BagWriter": "fusion_stream.bag.writer",
        "Recorder": "fusion_stream.bag.recorder",
        "ReplayOptions": "fusion_stream.bag.replay",
        "Replayer": "fusion_stream.bag.replay",
        "TopicMap": "fusion_stream.bag.mapping",
        "convert_bag": "fusion_stream.bag.transcode",
        "load_map": "fusion_stream.bag.mapping",
        "open_bag": "fusion_stream.bag.reader",
    },
)
