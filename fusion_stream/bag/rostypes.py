"""ROS 2 message types for bags: the standard ones from ``rosbags`` plus those it lacks.

Our MCAP files carry each channel's full ``.msg`` definition (``ros2msg`` schema encoding), so
Foxglove, ``ros2 bag``, ``rosbags`` and ``mcap`` read them without this package. The extra
definitions here are ``vision_msgs`` (not in the standard store), our two custom types (audio has
no ROS message; a synced set is recorded as an index of its members), and the packet types of
common LiDAR/radar drivers, so ROS 2 bags that lack embedded definitions can still be converted.
"""

from __future__ import annotations

import functools
import re
import threading

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from fusion_stream.errors import FormatError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"
DETECTION3D_ARRAY = "vision_msgs/msg/Detection3DArray"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
AUDIO_CHUNK = "fusion_stream_msgs/msg/AudioChunk"
SYNCED_FRAME = "fusion_stream_msgs/msg/SyncedFrame"
CLOCK = "rosgraph_msgs/msg/Clock"

EXTRA_DEFINITIONS: dict[str, str] = {
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"
    ),
    "vision_msgs/msg/BoundingBox3D": "geometry_msgs/Pose center\ngeometry_msgs/Vector3 size\n",
    "vision_msgs/msg/Detection3D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
        "vision_msgs/BoundingBox3D bbox\nstring id\n"
    ),
    DETECTION3D_ARRAY: "std_msgs/Header header\nvision_msgs/Detection3D[] detections\n",
    AUDIO_CHUNK: (
        "# Multichannel audio, planar (channel after channel), little-endian samples.\n"
        "std_msgs/Header header\n"
        "uint32 sample_rate\n"
        "uint64 first_sample   # samples since the stream started: gaps and repeats are visible\n"
        "uint32 channels\n"
        "uint32 samples\n"
        "string encoding       # float32 | int16\n"
        "uint8[] data\n"
    ),
    "fusion_stream_msgs/msg/SyncedMember": (
        "string input\nbuiltin_interfaces/Time[] stamps   # header stamps of the messages used\n"
    ),
    SYNCED_FRAME: (
        "# Which messages the synchronizer put together (the messages are on their own topics).\n"
        "std_msgs/Header header\n"
        "fusion_stream_msgs/SyncedMember[] members\n"
        "string[] missing\n"
    ),
    # Driver packet types, so bags recorded without embedded definitions still convert.
    "velodyne_msgs/msg/VelodynePacket": "builtin_interfaces/Time stamp\nuint8[1206] data\n",
    "velodyne_msgs/msg/VelodyneScan": "std_msgs/Header header\nvelodyne_msgs/VelodynePacket[] packets\n",
    "nebula_msgs/msg/NebulaPacket": "builtin_interfaces/Time stamp\nuint8[] data\n",
    "nebula_msgs/msg/NebulaPackets": "std_msgs/Header header\nnebula_msgs/NebulaPacket[] packets\n",
}

_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The ROS 2 Humble store with :data:`EXTRA_DEFINITIONS` registered (built once)."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for name, text in EXTRA_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


@functools.lru_cache(maxsize=64)
def schema_text(typename: str) -> str:
    """The ``ros2msg`` schema for an MCAP channel: the definition followed by every dependency."""
    try:
        text, _ = typestore().generate_msgdef(typename, ros_version=2)
    except KeyError as err:
        raise FormatError(f"no definition for message type {typename!r}") from err
    return text


_SEPARATOR = re.compile(r"^={10,}\s*$", re.MULTILINE)


def register_schema(typename: str, text: str) -> None:
    """Register a type (and its dependencies) from a concatenated ``.msg`` schema, as found in an
    MCAP file or a ROS 1 bag's connection header, unless already known."""
    store = typestore()
    if typename in store.types:
        return
    types = {}
    try:
        for i, part in enumerate(_SEPARATOR.split(text)):
            body = part.strip("\n")
            if i == 0:
                types.update(get_types_from_msg(body, typename))
                continue
            first, _, rest = body.partition("\n")
            if not first.startswith("MSG: "):
                raise FormatError(f"schema of {typename!r}: section {i} does not start with 'MSG: '")
            name = first[5:].strip()
            if "/msg/" not in name:
                pkg, _, short = name.partition("/")
                name = f"{pkg}/msg/{short}"
            if name not in store.types:
                types.update(get_types_from_msg(rest, name))
    except FormatError:
        raise
    except Exception as err:  # rosbags raises its own parse errors; report them as ours
        raise FormatError(f"cannot parse the schema of {typename!r}: {err}") from err
    with _LOCK:
        store.register(types)
