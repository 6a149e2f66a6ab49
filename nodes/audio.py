"""Audio node: ``AudioChunk`` (channels × samples) from a microphone array, stamped by sample
count so consumers can prove that no sample was lost or repeated.

``source: sim`` hears the simulated world's sirens and road noise (48 kHz, 20 ms chunks)."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.errors import ParamError
from fusion_stream.launch import NodeTopics
from fusion_stream.node import Node
from fusion_stream.runner import run_node
from fusion_stream.sim import audio
from fusion_stream.sim.capture import audio_chunk
from fusion_stream.sim.sensors import FrameGrid, SimParams, open_sensor, open_world

_MAX_CATCH_UP = 25
"""Chunks produced in one go after a stall; beyond that the gap is skipped (and counted)."""


@dataclass(frozen=True)
class Params(SimParams):
    sensor: str = "mic_array"
    topic: str = "/audio/array/chunk"
    sample_rate: int = 48_000
    chunk_ms: float = 20.0


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


def setup(node: Node, p: Params) -> None:
    world = open_world(p)
    sensor = open_sensor(p, p.sensor, "microphones")
    assert sensor.microphones is not None  # calib.load guarantees it
    samples = round(p.sample_rate * p.chunk_ms / 1000)
    if samples <= 0:
        raise ParamError("chunk_ms", f"{p.chunk_ms} ms is less than one sample at {p.sample_rate} Hz")
    if samples * 1_000_000_000 % p.sample_rate:
        raise ParamError("chunk_ms", f"{p.chunk_ms} ms is not a whole number of nanoseconds at {p.sample_rate} Hz")
    try:
        spec = audio.ArraySpec(sample_rate=p.sample_rate, chunk_samples=samples)
    except ValueError as err:
        raise ParamError("sample_rate", str(err)) from err
    pub = node.publisher(p.topic)
    grid = FrameGrid(samples * 1_000_000_000 // p.sample_rate, p.epoch_ns)
    state = {"skipped": 0}
    node.add_diagnostics(lambda: {"chunks_skipped": state["skipped"]})

    def tick() -> None:
        previous = grid.last
        k = grid.due(node.clock.now_ns(), ready_after_ns=grid.period_ns)  # a chunk is done when its last sample is
        if k is None:
            return
        first = k if previous is None else max(previous + 1, k - _MAX_CATCH_UP + 1)
        state["skipped"] += first - (k if previous is None else previous + 1)
        for i in range(first, k + 1):
            pub.publish(audio_chunk(world, sensor, spec, i, p.epoch_ns))

    node.timer(grid.period_ns / 1e9, tick, phase_ns=p.epoch_ns)


if __name__ == "__main__":
    raise SystemExit(run_node("audio", Params, setup))
