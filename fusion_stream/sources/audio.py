"""Audio sources: WAV recordings and live sound cards, as ``AudioChunk`` streams stamped by sample
count.

A chunk's stamp is ``start + first_sample × 1e9 // rate``, never the time it was read: host
clocks jitter by milliseconds, a sample counter does not, and consumers (direction finding,
siren detection) prove continuity from ``first_sample`` alone.

WAV files are parsed here rather than with :mod:`wave`, which reads neither IEEE-float nor
WAVE_FORMAT_EXTENSIBLE files (what most multi-channel recorders write). The samples are
memory-mapped, so an hour-long array recording costs no RAM until played. 16-bit PCM stays
int16 (``dtype="auto"``); 8-, 24- and 32-bit PCM and float files become float32 (full scale ±1),
the two sample types :class:`~fusion_stream.core.msgs.AudioChunk` carries.

Live capture uses ``sounddevice`` (the ``audio`` extra), which needs the PortAudio system
library; either one missing is a :class:`FusionStreamError` saying what to install.
"""

from __future__ import annotations

import importlib
import queue
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fusion_stream.core.msgs import AudioChunk
from fusion_stream.errors import FormatError, FusionStreamError, ParamError

if TYPE_CHECKING:
    from fusion_stream.runtime.node import Node

Dtype = Literal["auto", "float32"]
"""``auto``: int16 for 16-bit PCM files, float32 otherwise; ``float32``: always float32."""

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_STREAMING_SIZES = (0, 0xFFFFFFFF)
"""``data`` sizes written by recorders that could not seek back: the samples run to the end."""

MISSING_SOUNDDEVICE = (
    "live audio capture needs the sounddevice package and the PortAudio library: "
    "pip install 'fusion-stream[audio]' and, on Debian/Ubuntu, apt-get install libportaudio2 "
    "(macOS: brew install portaudio)"
)


# --------------------------------------------------------------------------- WAV files (pure)


@dataclass(frozen=True)
class WavFormat:
    """What a WAV header says: layout of the sample frames and where they are in the file."""

    sample_rate: int
    channels: int
    bits: int
    is_float: bool
    frames: int
    """Sample frames (one sample per channel) in the file."""
    data_offset: int

    @property
    def block_align(self) -> int:
        return self.channels * self.bits // 8

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _parse_fmt(path: Path, body: bytes) -> tuple[int, int, int, bool]:
    """(sample_rate, channels, bits, is_float) from a ``fmt `` chunk."""
    if len(body) < 16:
        raise FormatError(f"{path}: fmt chunk is {len(body)} bytes, a WAV needs at least 16")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise FormatError(f"{path}: WAVE_FORMAT_EXTENSIBLE fmt chunk is {len(body)} bytes, expected 40")
        tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the plain format tag
    if tag not in (_PCM, _FLOAT):
        raise FormatError(f"{path}: WAV format tag 0x{tag:04x} is compressed; only PCM and IEEE float are read")
    is_float = tag == _FLOAT
    allowed = (32, 64) if is_float else (8, 16, 24, 32)
    if bits not in allowed:
        kind = "float" if is_float else "PCM"
        raise FormatError(f"{path}: {bits}-bit {kind} samples; supported are {', '.join(map(str, allowed))}-bit")
    if channels < 1 or rate < 1:
        raise FormatError(f"{path}: {channels} channels at {rate} Hz in the header; the file is damaged")
    if block_align != channels * bits // 8:
        raise FormatError(f"{path}: block align {block_align} ≠ {channels} channels × {bits // 8} bytes")
    return rate, channels, bits, is_float


def read_wav_format(path: Path | str) -> WavFormat:
    """The header of a RIFF/WAVE file; anything damaged or unsupported is a :class:`FormatError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        f = path.open("rb")
    except OSError as err:
        raise FormatError(f"{path}: cannot open the WAV file ({err.strerror or err})") from err
    with f:
        riff = f.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise FormatError(f"{path}: not a WAV file (no RIFF/WAVE header)")
        fmt: tuple[int, int, int, bool] | None = None
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise FormatError(f"{path}: no data chunk (the file is truncated or not a WAV recording)")
            chunk_id, chunk_size = head[:4], struct.unpack("<I", head[4:])[0]
            if chunk_id == b"fmt ":
                fmt = _parse_fmt(path, f.read(chunk_size))
                f.seek(chunk_size & 1, 1)
            elif chunk_id == b"data":
                if fmt is None:
                    raise FormatError(f"{path}: data chunk before the fmt chunk")
                offset = f.tell()
                available = size - offset
                if chunk_size in _STREAMING_SIZES:
                    chunk_size = available
                elif chunk_size > available:
                    raise FormatError(
                        f"{path}: truncated: the header announces {chunk_size} bytes of samples, "
                        f"the file has {available}"
                    )
                rate, channels, bits, is_float = fmt
                frames = chunk_size // (channels * bits // 8)
                if frames == 0:
                    raise FormatError(f"{path}: the WAV file holds no samples")
                return WavFormat(rate, channels, bits, is_float, frames, offset)
            else:
                f.seek(chunk_size + (chunk_size & 1), 1)  # chunks are padded to an even size


class WavFile:
    """A PCM or float WAV file, memory-mapped, read as channels × samples arrays."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.format = read_wav_format(self.path)
        f = self.format
        self._raw = np.memmap(
            self.path, dtype=np.uint8, mode="r", offset=f.data_offset, shape=(f.frames * f.block_align,)
        )

    @property
    def sample_rate(self) -> int:
        return self.format.sample_rate

    @property
    def channels(self) -> int:
        return self.format.channels

    @property
    def frames(self) -> int:
        return self.format.frames

    def native_dtype(self, dtype: Dtype = "auto") -> np.dtype[Any]:
        """The sample type :meth:`read` returns for ``dtype``."""
        if dtype == "auto" and self.format.bits == 16 and not self.format.is_float:
            return np.dtype(np.int16)
        return np.dtype(np.float32)

    def read(self, start: int, count: int, dtype: Dtype = "auto") -> np.ndarray:
        """Samples ``start … start+count−1`` (clipped to the file) as channels × samples."""
        f = self.format
        start = max(0, min(start, f.frames))
        count = max(0, min(count, f.frames - start))
        raw = np.asarray(self._raw[start * f.block_align : (start + count) * f.block_align])
        values: np.ndarray
        if f.is_float:
            values = raw.view("<f4" if f.bits == 32 else "<f8").astype(np.float32)
        elif f.bits == 8:  # unsigned, 128 is silence
            values = (raw.astype(np.float32) - 128.0) / 128.0
        elif f.bits == 16:
            ints = raw.view("<i2")
            values = ints.astype(np.int16) if self.native_dtype(dtype) == np.int16 else ints / np.float32(32768.0)
        elif f.bits == 24:
            b = raw.reshape(-1, 3).astype(np.int32)
            ints = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 8  # sign-extend 24 → 32 bits
            values = ints.astype(np.float32) / np.float32(2.0**23)
        else:
            values = (raw.view("<i4").astype(np.float64) / 2.0**31).astype(np.float32)
        return np.ascontiguousarray(values.reshape(count, f.channels).T)

    def read_looped(self, start: int, count: int, dtype: Dtype = "auto") -> np.ndarray:
        """``count`` samples from ``start`` of the file played over and over (wrapping at its end)."""
        out = np.empty((self.channels, count), self.native_dtype(dtype))
        done, pos = 0, start % self.frames
        while done < count:
            n = min(count - done, self.frames - pos)
            out[:, done : done + n] = self.read(pos, n, dtype)
            done += n
            pos = 0
        return out


def open_wav(path: Path | str, *, sample_rate: int = 0, channels: int = 0) -> WavFile:
    """A WAV file checked against what the node expects (0: accept the file's value)."""
    wav = WavFile(path)
    if sample_rate and wav.sample_rate != sample_rate:
        raise FormatError(
            f"{wav.path}: {wav.sample_rate} Hz but the microphone array is configured for {sample_rate} Hz; "
            f"resample it or set sample_rate: {wav.sample_rate} (0 accepts the file's rate)"
        )
    if channels and wav.channels != channels:
        raise FormatError(
            f"{wav.path}: {wav.channels} channels but the microphone array is configured for {channels}; "
            f"use a {channels}-channel recording or set channels: {wav.channels} (0 accepts the file's)"
        )
    return wav


def chunk_samples(sample_rate: int, chunk_ms: float) -> int:
    """Samples in a ``chunk_ms`` chunk; a ParamError naming ``chunk_ms`` when that is less than one sample."""
    n = round(sample_rate * chunk_ms / 1000)
    if n <= 0:
        raise ParamError("chunk_ms", f"{chunk_ms} ms is less than one sample at {sample_rate} Hz")
    return n


def stamp_of(start_ns: int, first_sample: int, sample_rate: int) -> int:
    """Capture time of sample ``first_sample`` of a stream whose sample 0 was captured at ``start_ns``."""
    return start_ns + first_sample * 1_000_000_000 // sample_rate


def file_chunks(
    wav: WavFile, samples: int, *, start_ns: int = 0, frame_id: str = "", dtype: Dtype = "auto"
) -> Iterator[AudioChunk]:
    """The whole file once, in chunks of ``samples`` (the last one shorter if the file ends there)."""
    if samples <= 0:
        raise ParamError("samples", f"chunks need at least one sample, got {samples}")
    for first in range(0, wav.frames, samples):
        yield AudioChunk(
            stamp_ns=stamp_of(start_ns, first, wav.sample_rate),
            frame_id=frame_id,
            data=wav.read(first, samples, dtype),
            sample_rate=wav.sample_rate,
            first_sample=first,
        )


class WavPlayback:
    """A WAV file played as a live stream on the chunk grid: chunk ``k`` is captured at
    ``epoch_ns + k × chunk period`` and published once its last sample is (real time).

    Looping, the stream is the file repeated forever from ``epoch_ns``: chunk ``k`` holds stream
    samples ``k·n …`` (file position modulo its length), so every process of a graph, restarted
    or not, plays the same samples at the same stamps — the audio counterpart of
    :func:`~fusion_stream.sources.playback.frame_index`. Once (``loop=False``), the file starts at
    the first chunk boundary at or after ``start_ns``, sample counts start at 0, the last partial
    chunk is published too, then :attr:`finished` is set.
    """

    MAX_CATCH_UP = 25
    """Chunks produced in one go after a stall; older ones are skipped (and counted)."""

    def __init__(
        self,
        wav: WavFile,
        samples: int,
        *,
        epoch_ns: int = 0,
        start_ns: int = 0,
        loop: bool = True,
        frame_id: str = "",
        dtype: Dtype = "auto",
    ) -> None:
        if samples <= 0:
            raise ParamError("samples", f"chunks need at least one sample, got {samples}")
        if samples * 1_000_000_000 % wav.sample_rate:
            raise ParamError(
                "samples",
                f"{samples} samples at {wav.sample_rate} Hz is not a whole number of nanoseconds; "
                "pick a chunk length that is",
            )
        self.wav, self.samples, self.loop, self.frame_id, self.dtype = wav, samples, loop, frame_id, dtype
        self.epoch_ns = epoch_ns
        self.period_ns = samples * 1_000_000_000 // wav.sample_rate
        # the grid index of the stream's sample 0
        self.first_k = 0 if loop else -(-(start_ns - epoch_ns) // self.period_ns)
        self.last_k: int | None = None
        self.skipped = 0
        self.finished = False

    @property
    def start_ns(self) -> int:
        """Capture time of the stream's sample 0."""
        return self.epoch_ns + self.first_k * self.period_ns

    def chunk(self, j: int) -> AudioChunk | None:
        """Chunk ``j`` of the stream (None past the end of a file played once)."""
        first = j * self.samples
        if self.loop:
            data = self.wav.read_looped(first, self.samples, self.dtype)
        elif first >= self.wav.frames:
            return None
        else:
            data = self.wav.read(first, self.samples, self.dtype)
        return AudioChunk(
            stamp_ns=stamp_of(self.start_ns, first, self.wav.sample_rate),
            frame_id=self.frame_id,
            data=data,
            sample_rate=self.wav.sample_rate,
            first_sample=first,
        )

    def due(self, now_ns: int) -> list[AudioChunk]:
        """The chunks completed by ``now_ns`` and not yet returned."""
        if self.finished:
            return []
        k = (now_ns - self.period_ns - self.epoch_ns) // self.period_ns  # its last sample is in by now
        # a looping stream joins at the newest chunk; a file played once starts at its start
        first_call = k if self.loop else self.first_k
        begin = first_call if self.last_k is None else self.last_k + 1
        if k < begin:
            return []
        first = max(begin, k - self.MAX_CATCH_UP + 1)
        self.skipped += first - begin
        self.last_k = k
        out: list[AudioChunk] = []
        for kk in range(first, k + 1):
            c = self.chunk(kk - self.first_k)
            if c is None:
                self.finished = True
                break
            out.append(c)
        if not self.loop and (k + 1 - self.first_k) * self.samples >= self.wav.frames:
            self.finished = True
        return out


# --------------------------------------------------------------------------- live capture


def import_sounddevice() -> Any:
    """The ``sounddevice`` module, or a :class:`FusionStreamError` saying what to install."""
    try:
        sounddevice = importlib.import_module("sounddevice")
    except ImportError as err:
        raise FusionStreamError(f"{MISSING_SOUNDDEVICE} (import failed: {err})") from err
    except OSError as err:  # the package is there but the PortAudio shared library is not
        raise FusionStreamError(f"{MISSING_SOUNDDEVICE} ({err})") from err
    return sounddevice


class Microphone:
    """A live sound card (``sounddevice.InputStream``), read as chunks stamped by sample count.

    Sample 0's capture time comes from PortAudio's ADC time of the first block mapped onto the
    node's clock (or the arrival time minus one block where the driver gives none); every later
    chunk is ``start + first_sample / rate`` from it. PortAudio calls back on its own thread;
    chunks wait in a bounded queue for :meth:`chunks`. A chunk dropped because the node fell
    behind shows as a jump in ``first_sample`` (and in :attr:`dropped`); an overrun inside the
    driver is counted in :attr:`overflows`.
    """

    def __init__(
        self,
        device: int | str | None,
        *,
        sample_rate: int = 0,
        channels: int = 0,
        samples: int = 960,
        float32: bool = False,
        frame_id: str = "",
        clock: Callable[[], int] = time.time_ns,
        queue_chunks: int = 100,
    ) -> None:
        sd = import_sounddevice()
        self.frame_id = frame_id
        self._clock = clock
        self._queue: queue.Queue[tuple[np.ndarray, int]] = queue.Queue(maxsize=queue_chunks)
        self._next_sample = 0
        self.start_ns: int | None = None
        self.overflows = 0
        self.dropped = 0
        self.device = device
        try:
            self._stream = sd.InputStream(
                device=device,
                samplerate=sample_rate or None,
                channels=channels or None,
                dtype="float32" if float32 else "int16",
                blocksize=samples,
                callback=self._callback,
            )
        except (sd.PortAudioError, ValueError) as err:
            raise FusionStreamError(
                f"audio device {device if device is not None else '(default)'}: cannot open it for "
                f"{channels or 'its'} channels at {sample_rate or 'its default'} Hz ({err}); "
                "`python -m sounddevice` lists the devices"
            ) from err
        self.sample_rate = int(self._stream.samplerate)
        self.channels = int(self._stream.channels)

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if self.start_ns is None:
            now = self._clock()
            adc, current = float(time_info.inputBufferAdcTime), float(time_info.currentTime)
            age_ns = (
                round((current - adc) * 1e9)
                if adc > 0 and current >= adc
                else frames * 1_000_000_000 // max(1, self.sample_rate)
            )
            self.start_ns = now - age_ns
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        first = self._next_sample
        self._next_sample += frames
        try:
            self._queue.put_nowait((np.ascontiguousarray(indata.T), first))
        except queue.Full:
            self.dropped += 1

    def start(self) -> None:
        self._stream.start()

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()

    def chunks(self) -> list[AudioChunk]:
        """Every chunk captured since the last call, oldest first."""
        out: list[AudioChunk] = []
        while True:
            try:
                data, first = self._queue.get_nowait()
            except queue.Empty:
                return out
            assert self.start_ns is not None  # set by the callback before it queues anything
            out.append(
                AudioChunk(
                    stamp_ns=stamp_of(self.start_ns, first, self.sample_rate),
                    frame_id=self.frame_id,
                    data=data,
                    sample_rate=self.sample_rate,
                    first_sample=first,
                )
            )


# --------------------------------------------------------------------------- node helpers


def publish_wav(
    node: Node,
    topic: str,
    wav: WavFile,
    samples: int,
    *,
    epoch_ns: int = 0,
    loop: bool = True,
    frame_id: str = "",
    dtype: Dtype = "auto",
) -> WavPlayback:
    """Publish a WAV file on ``topic`` in real time on the chunk grid (see :class:`WavPlayback`);
    played once, the node stops after the last chunk."""
    try:
        playback = WavPlayback(
            wav,
            samples,
            epoch_ns=epoch_ns,
            start_ns=epoch_ns or node.clock.now_ns(),
            loop=loop,
            frame_id=frame_id,
            dtype=dtype,
        )
    except ParamError as err:  # the chunk length in samples is the node's chunk_ms
        raise ParamError("chunk_ms", err.reason) from err
    pub = node.publisher(topic, AudioChunk)
    node.add_diagnostics(lambda: {"chunks_skipped": playback.skipped})

    def tick() -> None:
        for c in playback.due(node.clock.now_ns()):
            pub.publish(c)
        if playback.finished:
            node.request_stop(f"played {wav.path.name} once")

    node.timer(playback.period_ns / 1e9, tick, phase_ns=epoch_ns)
    return playback


def publish_microphone(
    node: Node,
    topic: str,
    device: int | str | None,
    *,
    sample_rate: int,
    channels: int,
    chunk_ms: float,
    frame_id: str = "",
    float32: bool = False,
) -> Microphone:
    """Publish a live sound card on ``topic``, chunk by chunk as PortAudio delivers them."""
    samples = chunk_samples(sample_rate or 48_000, chunk_ms)
    mic = Microphone(
        device,
        sample_rate=sample_rate,
        channels=channels,
        samples=samples,
        float32=float32,
        frame_id=frame_id,
        clock=node.clock.now_ns,
    )
    pub = node.publisher(topic, AudioChunk)
    node.add_diagnostics(lambda: {"overflows": mic.overflows, "chunks_dropped": mic.dropped})

    def tick() -> None:
        for c in mic.chunks():
            pub.publish(c)

    node.timer(chunk_ms / 2000, tick)
    mic.start()
    return mic
