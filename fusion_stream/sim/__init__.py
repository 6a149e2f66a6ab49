"""The simulated driving world (a pure function of scenario, seed and time) and sensor models.

Names load on first use: the camera model compiles numba kernels and the recorder needs the bag
writer, which a program that only steps the world should not pay for."""

from typing import TYPE_CHECKING

from fusion_stream.core.lazy import lazy_exports

if TYPE_CHECKING:
    from fusion_stream.sim.camera import CameraModel
    from fusion_stream.sim.lidar import LidarSpec
    from fusion_stream.sim.radar import RadarSpec
    from fusion_stream.sim.recording import record_sim
    from fusion_stream.sim.sensors import SimParams
    from fusion_stream.sim.snapshot import write_snapshot
    from fusion_stream.sim.world import Actor, ActorState, Scenario, World, ground_truth

__all__ = [
    "Actor",
    "ActorState",
    "CameraModel",
    "LidarSpec",
    "RadarSpec",
    "Scenario",
    "SimParams",
    "World",
    "ground_truth",
    "record_sim",
    "write_snapshot",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Actor": "fusion_stream.sim.world",
        "ActorState": "fusion_stream.sim.world",
        "CameraModel": "fusion_stream.sim.camera",
        "LidarSpec": "fusion_stream.sim.lidar",
        "RadarSpec": "fusion_stream.sim.radar",
        "Scenario": "fusion_stream.sim.world",
        "SimParams": "fusion_stream.sim.sensors",
        "World": "fusion_stream.sim.world",
        "ground_truth": "fusion_stream.sim.world",
        "record_sim": "fusion_stream.sim.recording",
        "write_snapshot": "fusion_stream.sim.snapshot",
    },
)
