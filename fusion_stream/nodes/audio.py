"""Audio node: ``AudioChunk`` (channels × samples) from a microphone array, stamped by sample
count so consumers can prove that no sample was lost or repeated.

``source`` picks where samples come from:

* ``sim`` hears the simulated world's sirens and road noise (48 kHz, 20 ms chunks);
* ``wav`` plays the WAV file ``path`` (any channel count; 8/16/24/32-bit PCM or float) in real
  time on the chunk grid, looping unless ``loop: false`` (then the node exits 0 after the last,
  possibly shorter, chunk). A file whose rate or channel count differs from ``sample_rate`` /
  ``channels`` is refused (0 accepts the file's);
* ``device`` records the sound card ``device`` (index or name; empty: the default) through
  ``sounddevice`` (``pip install 'fusion-stream[audio]'`` and the PortAudio library).

``dtype: auto`` keeps 16-bit samples as int16; ``float32`` converts everything to ±1 floats."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream.core.msgs import AudioChunk
from fusion_stream.errors import FormatError, ParamError
from fusion_stream.runtime.node import Node
from fusion_stream.runtime.nodetypes import NodeTopics
from fusion_stream.runtime.params import existing
from fusion_stream.runtime.runner import run_node
from fusion_stream.sim import audio
from fusion_stream.sim.capture import audio_chunk
from fusion_stream.sim.sensors import FrameGrid, SimParams, check_sim, open_sensor, open_world
from fusion_stream.sources import audio as sources

_MAX_CATCH_UP = 25
"""Chunks produced in one go after a stall; beyond that the gap is skipped (and counted)."""
SOURCES = ("sim", "wav", "device")
DTYPES = ("auto", "float32")


@dataclass(frozen=True)
class Params(SimParams):
    sensor: str = "mic_array"
    """Rig sensor name; also the ``frame_id`` of real-source chunks."""
    topic: str = "/audio/array/chunk"
    sample_rate: int = 48_000
    chunk_ms: float = 20.0
    channels: int = 0
    """Channels expected of a WAV file or opened on a device (0: the file's / the device's)."""
    path: str = ""
    device: int | str = ""
    loop: bool = True
    dtype: str = "auto"


def topics(p: Params) -> NodeTopics:
    return NodeTopics(outputs=(p.topic,))


def check(p: Params) -> None:
    """What can be judged before the node starts (``fusion-stream launch`` calls it; so does setup)."""
    if p.source not in SOURCES:
        raise ParamError("source", f"must be one of {', '.join(SOURCES)}, got {p.source!r}")
    if p.source == "sim":
        check_sim(p, p.sensor, "microphones")
        _sim_spec(p)
        return
    if p.dtype not in DTYPES:
        raise ParamError("dtype", f"must be one of {', '.join(DTYPES)}, got {p.dtype!r}")
    if p.sample_rate < 0 or p.channels < 0:
        raise ParamError("sample_rate" if p.sample_rate < 0 else "channels", "must be >= 0 (0: accept the input's)")
    if p.source == "wav":
        path = existing("path", p.path, "a WAV file (source: wav)")
        try:
            sources.read_wav_format(path)  # the header only: cheap
        except FormatError as err:
            raise ParamError("path", str(err)) from err


def setup(node: Node, p: Params) -> None:
    check(p)
    if p.source == "sim":
        setup_sim(node, p)
        return
    if p.source == "wav":
        wav = sources.open_wav(existing("path", p.path, "a WAV file"), sample_rate=p.sample_rate, channels=p.channels)
        samples = sources.chunk_samples(wav.sample_rate, p.chunk_ms)  # a ParamError names chunk_ms
        node.log.info(
            "playing %s: %d channels, %d Hz, %.2f s", wav.path, wav.channels, wav.sample_rate, wav.format.duration_s
        )
        sources.publish_wav(
            node,
            p.topic,
            wav,
            samples,
            epoch_ns=p.epoch_ns,
            loop=p.loop,
            frame_id=p.sensor,
            dtype=p.dtype,  # type: ignore[arg-type]
        )
    else:
        sources.chunk_samples(p.sample_rate or 48_000, p.chunk_ms)  # a ParamError names chunk_ms
        sources.publish_microphone(
            node,
            p.topic,
            p.device if p.device != "" else None,
            sample_rate=p.sample_rate,
            channels=p.channels,
            chunk_ms=p.chunk_ms,
            frame_id=p.sensor,
            float32=p.dtype == "float32",
        )


def _sim_spec(p: Params) -> audio.ArraySpec:
    samples = round(p.sample_rate * p.chunk_ms / 1000)
    if samples <= 0:
        raise ParamError("chunk_ms", f"{p.chunk_ms} ms is less than one sample at {p.sample_rate} Hz")
    if samples * 1_000_000_000 % p.sample_rate:
        raise ParamError("chunk_ms", f"{p.chunk_ms} ms is not a whole number of nanoseconds at {p.sample_rate} Hz")
    return audio.ArraySpec(sample_rate=p.sample_rate, chunk_samples=samples)  # a ParamError names sample_rate


def setup_sim(node: Node, p: Params) -> None:
    world = open_world(p)
    sensor = open_sensor(p, p.sensor, "microphones")
    assert sensor.microphones is not None  # calib.load guarantees it
    spec = _sim_spec(p)
    samples = spec.chunk_samples
    pub = node.publisher(p.topic, AudioChunk)
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
