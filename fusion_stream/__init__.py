"""fusion_stream: streaming multi-sensor fusion over ZeroMQ.

The public API most programs need is re-exported here::

    from fusion_stream import Subscriber
    for dets in Subscriber("/detections", timeout=5.0):
        print(dets.stamp_ns, len(dets))
"""

from fusion_stream.core.msgs import (
    AudioChunk,
    Box3D,
    ClockTick,
    CompressedImage,
    Detections,
    Diagnostics,
    Image,
    Level,
    Message,
    PointCloud,
    RadarScan,
    SyncedFrame,
)
from fusion_stream.errors import (
    FusionStreamError,
    MessageError,
    ParamError,
    TopicNameError,
    TopicNotFoundError,
    TransportError,
    WireError,
)
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Publisher, Subscriber

__version__ = "0.1.0"

__all__ = [
    "AudioChunk",
    "Box3D",
    "ClockTick",
    "CompressedImage",
    "Detections",
    "Diagnostics",
    "FusionStreamError",
    "Image",
    "Level",
    "Message",
    "MessageError",
    "ParamError",
    "PointCloud",
    "Publisher",
    "RadarScan",
    "Registry",
    "Subscriber",
    "SyncedFrame",
    "TopicNameError",
    "TopicNotFoundError",
    "TransportError",
    "WireError",
    "__version__",
]
