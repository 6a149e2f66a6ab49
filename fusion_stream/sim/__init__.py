"""The simulated driving world (a pure function of scenario, seed and time) and sensor models."""

from fusion_stream.sim.world import Actor, ActorState, Scenario, World, ground_truth

__all__ = ["Actor", "ActorState", "Scenario", "World", "ground_truth"]
