"""Pure data, no processes and no sockets: messages, the wire format, calibration, file formats
(PCD, WAV, KITTI, YAML reading), shared geometry and pictures. Imports only ``fusion_stream.errors``.

Messages and the wire load with the package; calibration, file formats and geometry (which read
YAML) load on first use. The wire's byte layout is specified in ``docs/wire.md``."""

from typing import TYPE_CHECKING

from fusion_stream.core.lazy import lazy_exports
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
    SensorMessage,
    SyncedFrame,
)
from fusion_stream.core.wire import WIRE_VERSION, Envelope, check_topic

if TYPE_CHECKING:
    from fusion_stream.core.calib import Intrinsics, Rig, Sensor, Transform
    from fusion_stream.core.formats import read_pcd, write_pcd, write_wav
    from fusion_stream.core.geometry import box_corners, quaternion_to_yaw, yaw_to_quaternion
    from fusion_stream.core.kitti import KittiFolder

__all__ = [
    "WIRE_VERSION",
    "AudioChunk",
    "Box3D",
    "ClockTick",
    "CompressedImage",
    "Detections",
    "Diagnostics",
    "Envelope",
    "Image",
    "Intrinsics",
    "KittiFolder",
    "Level",
    "Message",
    "PointCloud",
    "RadarScan",
    "Rig",
    "Sensor",
    "SensorMessage",
    "SyncedFrame",
    "Transform",
    "box_corners",
    "check_topic",
    "quaternion_to_yaw",
    "read_pcd",
    "write_pcd",
    "write_wav",
    "yaw_to_quaternion",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Intrinsics": "fusion_stream.core.calib",
        "Rig": "fusion_stream.core.calib",
        "Sensor": "fusion_stream.core.calib",
        "Transform": "fusion_stream.core.calib",
        "read_pcd": "fusion_stream.core.formats",
        "write_pcd": "fusion_stream.core.formats",
        "write_wav": "fusion_stream.core.formats",
        "box_corners": "fusion_stream.core.geometry",
        "quaternion_to_yaw": "fusion_stream.core.geometry",
        "yaw_to_quaternion": "fusion_stream.core.geometry",
        "KittiFolder": "fusion_stream.core.kitti",
    },
)
