"""Real sensor sources: recordings (pcap, image folders, video, WAV, detection lists, KITTI) and
live devices (UDP, cameras, sound cards), each turning its input into fusion_stream messages.

Sources are plain iterators or small classes with no sockets of their own (live UDP aside), so
nodes stay thin and tests feed them files directly. Decoders come from maintained libraries
(velodyne-decoder, ouster-sdk, OpenCV) installed as optional extras; a missing one is a clear
error naming the extra to install. Names load on first use."""

from typing import TYPE_CHECKING

from fusion_stream.core.lazy import lazy_exports

if TYPE_CHECKING:
    from fusion_stream.sources.audio import Microphone, WavFile
    from fusion_stream.sources.camera import ImageFolder, LiveCamera, VideoFile
    from fusion_stream.sources.ouster import OusterDecoder, OusterPcap
    from fusion_stream.sources.playback import publish_recording
    from fusion_stream.sources.pointfiles import LiveLidar, kitti_sweeps, pcd_files
    from fusion_stream.sources.radar import RadarRecording
    from fusion_stream.sources.testpattern import sample_messages
    from fusion_stream.sources.velodyne import VelodyneDecoder, VelodynePcap

__all__ = [
    "ImageFolder",
    "LiveCamera",
    "LiveLidar",
    "Microphone",
    "OusterDecoder",
    "OusterPcap",
    "RadarRecording",
    "VelodyneDecoder",
    "VelodynePcap",
    "VideoFile",
    "WavFile",
    "kitti_sweeps",
    "pcd_files",
    "publish_recording",
    "sample_messages",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ImageFolder": "fusion_stream.sources.camera",
        "LiveCamera": "fusion_stream.sources.camera",
        "LiveLidar": "fusion_stream.sources.pointfiles",
        "Microphone": "fusion_stream.sources.audio",
        "OusterDecoder": "fusion_stream.sources.ouster",
        "OusterPcap": "fusion_stream.sources.ouster",
        "RadarRecording": "fusion_stream.sources.radar",
        "VelodyneDecoder": "fusion_stream.sources.velodyne",
        "VelodynePcap": "fusion_stream.sources.velodyne",
        "VideoFile": "fusion_stream.sources.camera",
        "WavFile": "fusion_stream.sources.audio",
        "kitti_sweeps": "fusion_stream.sources.pointfiles",
        "pcd_files": "fusion_stream.sources.pointfiles",
        "publish_recording": "fusion_stream.sources.playback",
        "sample_messages": "fusion_stream.sources.testpattern",
    },
)
