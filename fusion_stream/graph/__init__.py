"""Many processes: launch files and the supervisor that runs them. Imports runtime, core, errors."""

from fusion_stream.graph.launch import LaunchFile, NodeSpec
from fusion_stream.graph.supervisor import Supervisor

__all__ = ["LaunchFile", "NodeSpec", "Supervisor"]
