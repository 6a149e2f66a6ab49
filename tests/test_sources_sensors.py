"""Real camera, audio and radar sources: WAV chunking by sample count, KITTI and video frames,
live-device errors, radar detection lists to sensor-frame points, and the three nodes as real
processes publishing over ZeroMQ."""

from __future__ import annotations

import math
import mmap
import struct
import sys
import time
import types
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from fusion_stream.core import msgs
from fusion_stream.core.formats import write_wav
from fusion_stream.errors import FormatError, FusionStreamError
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber
from fusion_stream.sources import audio, camera, radar

from .conftest import ROOT, Procs, collect_topics, wait_for

DATA = ROOT.parent / "shared" / "data"
KITTI = DATA / "kitti"
SIREN = DATA / "audio_siren" / "102853-8-0-0.wav"
ARS548 = DATA / "radar_ars548" / "1708578204_202447652_detection.yaml"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data {path} is not here (see ../shared/data/README.md)")
    return path


# --------------------------------------------------------------------------- audio


def _pcm_wav(path: Path, ints: np.ndarray, rate: int, width: int) -> Path:
    """channels × samples integers as a PCM WAV of ``width`` bytes per sample, with :mod:`wave`."""
    if width == 1:
        raw = (ints + 128).astype(np.uint8).T.tobytes()
    elif width == 3:
        le = ints.T.astype("<i4").reshape(-1, 1).view(np.uint8)
        raw = le[:, :3].tobytes()
    else:
        raw = ints.T.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(ints.shape[0])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def test_wav_chunks_reassemble_to_the_files_samples_with_sample_count_stamps(tmp_path: Path) -> None:
    rate, n = 8000, 1000  # 20 ms = 160 samples: 6 full chunks and a last one of 40
    rng = np.random.default_rng(1)
    path = write_wav(tmp_path / "three.wav", rng.uniform(-0.9, 0.9, (3, n)), rate)
    with wave.open(str(path)) as r:
        expected = np.frombuffer(r.readframes(n), "<i2").reshape(n, 3).T
    wav = audio.open_wav(path, sample_rate=rate, channels=3)
    start = 1_700_000_000_123_456_789
    chunks = list(audio.file_chunks(wav, audio.chunk_samples(rate, 20.0), start_ns=start, frame_id="mics"))
    assert [c.samples for c in chunks] == [160] * 6 + [40], "the last partial chunk is published, not dropped"
    assert all(c.data.dtype == np.int16 and c.channels == 3 and c.sample_rate == rate for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks], axis=1), expected)
    assert [c.first_sample for c in chunks] == list(range(0, n, 160))
    assert all(c.stamp_ns == start + c.first_sample * 1_000_000_000 // rate for c in chunks)
    assert set(np.diff([c.stamp_ns for c in chunks])) == {20_000_000}
    floats = np.concatenate([c.data for c in audio.file_chunks(wav, 160, dtype="float32")], axis=1)
    assert floats.dtype == np.float32
    np.testing.assert_allclose(floats, expected / 32768.0, atol=1e-7)


def test_the_siren_recording_reassembles_exactly() -> None:
    path = _need(SIREN)
    with wave.open(str(path)) as r:
        expected = np.frombuffer(r.readframes(r.getnframes()), "<i2").reshape(-1, 2).T
    wav = audio.open_wav(path, sample_rate=44_100, channels=2)
    chunks = list(audio.file_chunks(wav, audio.chunk_samples(44_100, 20.0)))
    assert len(chunks) == 200 and chunks[1].stamp_ns == 20_000_000  # 4 s of 882-sample chunks
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks], axis=1), expected)


@pytest.mark.parametrize("width", [1, 3, 4])
def test_wav_8_24_32_bit_pcm_read_as_float32(tmp_path: Path, width: int) -> None:
    full = 2 ** (8 * width - 1)
    ints = np.array([[0, 1, -1, full - 1, -full, full // 2], [-(full // 4), 3, 0, -2, 5, -full]], np.int64)
    wav = audio.open_wav(_pcm_wav(tmp_path / f"{width}.wav", ints, 16_000, width))
    assert wav.format.bits == 8 * width and wav.native_dtype() == np.float32
    np.testing.assert_allclose(wav.read(0, 6), ints / full, rtol=0, atol=1e-7)


def test_float_wav_with_the_extensible_header(tmp_path: Path) -> None:
    samples = np.array([[0.5, -0.25, 1.0], [0.0, 0.125, -1.0]], np.float32)
    guid = struct.pack("<H", 3) + bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 2, 22_050, 22_050 * 8, 8, 32, 22, 32, 3) + guid
    data = samples.T.astype("<f4").tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path = tmp_path / "float.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    wav = audio.open_wav(path)
    assert (wav.sample_rate, wav.channels, wav.frames, wav.format.is_float) == (22_050, 2, 3, True)
    np.testing.assert_array_equal(wav.read(0, 3), samples)


def test_wav_rate_or_channel_mismatch_is_a_format_error_naming_the_file(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "siren.wav", np.zeros((2, 441)), 44_100)
    with pytest.raises(FormatError, match=r"siren\.wav: 44100 Hz but .* 48000 Hz.*sample_rate: 44100"):
        audio.open_wav(path, sample_rate=48_000)
    with pytest.raises(FormatError, match=r"siren\.wav: 2 channels but .* 4.*channels: 2"):
        audio.open_wav(path, channels=4)
    assert audio.open_wav(path).sample_rate == 44_100  # 0 accepts the file's
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00JUNK")
    with pytest.raises(FormatError, match=r"bad\.wav: not a WAV file"):
        audio.open_wav(tmp_path / "bad.wav")


def test_wav_playback_loops_on_the_grid_and_plays_once_to_the_last_partial_chunk(tmp_path: Path) -> None:
    wav = audio.open_wav(write_wav(tmp_path / "a.wav", np.linspace(-0.5, 0.5, 250)[None], 1000))
    period = 100_000_000  # 100 samples at 1 kHz
    looped = audio.WavPlayback(wav, 100, loop=True)
    out = looped.due(period + 1)  # chunk 0 is complete; a looping stream joins at the newest chunk
    out += looped.due(7 * period + 1)  # … then 1 … 6
    assert [c.first_sample for c in out] == [0, 100, 200, 300, 400, 500, 600]
    assert [c.stamp_ns for c in out] == [k * period for k in range(7)]
    stream = np.concatenate([c.data for c in out], axis=1)[0]
    np.testing.assert_array_equal(stream, np.tile(wav.read(0, 250)[0], 3)[:700])  # wraps through the file's end
    assert looped.due(7 * period + 5) == [] and looped.skipped == 0
    late = audio.WavPlayback(wav, 100, loop=True)  # joining a stream that started long ago
    (c,) = late.due(10**6 * period + 1)
    assert c.first_sample == (10**6 - 1) * 100 and late.skipped == 0
    np.testing.assert_array_equal(c.data, wav.read_looped((10**6 - 1) * 100, 100))
    once = audio.WavPlayback(wav, 100, start_ns=10 * period + 3, loop=False)
    assert once.start_ns == 11 * period
    got = once.due(20 * period)
    assert [(c.first_sample, c.samples, c.stamp_ns) for c in got] == [
        (0, 100, 11 * period),
        (100, 100, 12 * period),
        (200, 50, 13 * period),
    ]
    assert once.finished


def test_missing_sounddevice_or_portaudio_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    try:  # here sounddevice is installed but PortAudio is not: importing it raises OSError
        audio.import_sounddevice()
        real_error = None
    except FusionStreamError as err:
        real_error = str(err)
    if real_error is not None:
        assert "pip install 'fusion-stream[audio]'" in real_error and "libportaudio2" in real_error
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # the package itself absent
    with pytest.raises(FusionStreamError, match=r"pip install 'fusion-stream\[audio\]'.*apt-get install libportaudio2"):
        audio.Microphone(None, sample_rate=48_000, channels=2)


def test_microphone_stamps_by_sample_count_from_the_stream_start(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeStream:
        def __init__(self, **kw: Any) -> None:
            self.samplerate, self.channels, self.blocksize = kw["samplerate"], kw["channels"], kw["blocksize"]
            self.callback = kw["callback"]

        def start(self) -> None:
            for i in range(4):
                block = np.full((self.blocksize, self.channels), i, np.int16)
                # adc time of the first block: 5 ms before the callback runs
                info = types.SimpleNamespace(inputBufferAdcTime=10.0 + i * 0.02, currentTime=10.005 + i * 0.02)
                self.callback(block, self.blocksize, info, None)

    fake = types.SimpleNamespace(InputStream=FakeStream, PortAudioError=RuntimeError)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    mic = audio.Microphone(None, sample_rate=48_000, channels=4, samples=960, clock=lambda: 1_000_000_000_000)
    mic.start()
    chunks = mic.chunks()
    assert [c.first_sample for c in chunks] == [0, 960, 1920, 2880]
    assert [c.stamp_ns for c in chunks] == [999_995_000_000 + k * 20_000_000 for k in range(4)]
    assert all(c.channels == 4 and c.data[0, 0] == k for k, c in enumerate(chunks))


# --------------------------------------------------------------------------- camera


def test_kitti_folder_yields_its_three_images_in_order() -> None:
    folder = camera.ImageFolder(_need(KITTI))
    assert [p.parent.name for p in folder.paths] == ["000000", "000001", "000002"]
    images = [folder.message(i, stamp_ns=i, frame_id="camera_left") for i in range(len(folder))]
    assert [(m.width, m.height) for m in images if isinstance(m, msgs.Image)] == [(1224, 370), (1242, 375), (1242, 375)]
    assert all(isinstance(m, msgs.Image) and m.encoding == "rgb8" for m in images)
    jpeg = folder.message(2, stamp_ns=2, frame_id="camera_left", jpeg=True, quality=80)
    assert isinstance(jpeg, msgs.CompressedImage) and jpeg.format == "jpeg"


def test_plain_image_folder_sorted_and_jpeg_passthrough(tmp_path: Path) -> None:
    cv2 = camera.cv2_module()
    for name, value in (("b_01.png", 10), ("a_02.jpg", 200), ("c_00.png", 90)):
        cv2.imwrite(str(tmp_path / name), np.full((8, 12, 3), value, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    folder = camera.ImageFolder(tmp_path)
    assert [p.name for p in folder.paths] == ["a_02.jpg", "b_01.png", "c_00.png"]
    first = folder.message(0, 5, "cam")
    assert isinstance(first, msgs.Image) and abs(int(first.data.mean()) - 200) <= 2
    jpeg = folder.message(0, 5, "cam", jpeg=True)
    assert isinstance(jpeg, msgs.CompressedImage) and jpeg.data == (tmp_path / "a_02.jpg").read_bytes()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match=r"empty: no images"):
        camera.ImageFolder(tmp_path / "empty")


def _write_video(path: Path, colours: list[tuple[int, int, int]], fps: float = 10.0) -> Path:
    cv2 = camera.cv2_module()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for rgb in colours:
        writer.write(np.full((48, 64, 3), rgb[::-1], np.uint8))  # OpenCV writes BGR
    writer.release()
    return path


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (40, 90, 160)]


def test_video_file_reads_back_frame_by_frame_with_file_time_stamps(tmp_path: Path) -> None:
    video = camera.VideoFile(_write_video(tmp_path / "colours.avi", COLOURS))
    frames = video.frames()
    video.close()
    assert len(frames) == len(COLOURS) and video.fps == 10.0
    for (bgr, _), rgb in zip(frames, COLOURS, strict=True):
        msg = camera.to_message(bgr, 0, "cam")
        assert isinstance(msg, msgs.Image)
        assert np.abs(msg.data.reshape(-1, 3).mean(axis=0) - rgb).max() < 6, "colours survive (MJPG is lossy)"
    assert [t for _, t in frames] == [0, 100_000_000, 200_000_000, 300_000_000, 400_000_000]


def test_a_video_played_by_the_camera_node_reaches_subscribers_through_loans(
    procs: Procs, registry: Registry, tmp_path: Path
) -> None:
    """OpenCV converts each frame straight into a loan of the publisher's pool: subscribers on
    this machine get views of shared memory, with the colours of the file."""
    video = _write_video(tmp_path / "colours.avi", COLOURS)
    topic = "/camera/video/image"
    procs.python(
        "-m", "fusion_stream.nodes.camera", "--name", "video", "-p", "source:=video", "-p", f"path:={video}",
        "-p", f"topic:={topic}",
    )  # fmt: skip
    with Subscriber([topic, "/diagnostics"], registry=registry, timeout=20.0) as sub:
        got = collect_topics(sub, [topic, "/diagnostics"], 1.5)
        images = [m for m in got[topic] if isinstance(m, msgs.Image)]
        assert len(images) >= 5

        def shared(m: msgs.Image) -> bool:
            base: object = m.data
            while isinstance(base, np.ndarray | memoryview):
                base = base.base if isinstance(base, np.ndarray) else base.obj
            return isinstance(base, mmap.mmap)

        # the test holds every frame: once the 8 slots are held, frames come as bytes (counted)
        assert shared(images[0]) and sum(map(shared, images)) >= 5
        means = {tuple(np.round(m.data.reshape(-1, 3).mean(axis=0) / 40)) for m in images}
        assert means <= {tuple(np.round(np.array(c) / 40)) for c in COLOURS}
    reports = [m for m in got["/diagnostics"] if isinstance(m, msgs.Diagnostics) and m.node == "video"]
    assert reports and int(reports[-1].values.get(f"pub.{topic}.shm_loans", 0)) >= 5


def test_video_playback_is_real_time_and_loops_with_continuing_stamps(tmp_path: Path) -> None:
    play = camera.VideoPlayback(_write_video(tmp_path / "v.avi", COLOURS[:3]), loop=True)
    t0 = 1_000_000_000
    first = play.due(t0)
    assert first is not None and first[1] == t0
    assert play.due(t0 + 50_000_000) is None
    newest = play.due(t0 + 250_000_000)  # frames at +100 and +200 ms are due: the newest wins
    assert newest is not None and newest[1] == t0 + 200_000_000 and play.skipped == 1
    again = play.due(t0 + 300_000_000)  # second pass starts one frame period after the last frame
    assert again is not None and again[1] == t0 + 300_000_000 and play.passes == 2
    play.close()
    once = camera.VideoPlayback(tmp_path / "v.avi", loop=False)
    once.due(0)
    once.due(10**9)
    assert once.finished


def test_a_missing_camera_is_a_clear_error_and_is_retried(tmp_path: Path) -> None:
    with pytest.raises(camera.CameraError, match=r"camera device 987.*(does not exist|cannot open)"):
        camera.open_capture(987)
    with pytest.raises(FormatError, match=r"nothing\.avi: no such video file"):
        camera.VideoFile(tmp_path / "nothing.avi")
    live = camera.LiveCamera(987, backoff=camera.Backoff(0.01, 0.05)).start()
    try:
        wait_for(lambda: live.failures >= 3, 10.0, "three attempts to open the camera")
        assert not live.connected and live.error is not None and "camera device 987" in live.error
        assert live.take() == []
    finally:
        live.stop()
    b = camera.Backoff(0.5, 4.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_camera_that_disappears_is_reopened() -> None:
    class FakeCapture:
        def __init__(self, frames: int) -> None:
            self.left = frames

        def grab(self) -> bool:
            time.sleep(0.002)
            self.left -= 1
            return self.left >= 0

        def retrieve(self) -> tuple[bool, np.ndarray]:
            return True, np.full((4, 6, 3), self.left % 256, np.uint8)

        def release(self) -> None:
            pass

    attempts: list[str] = []

    def opener(source: int | str, fps: float) -> FakeCapture:
        attempts.append("open")
        if len(attempts) in (2, 3):  # unplugged for two attempts after the first session
            raise camera.CameraError(camera.describe(source), "cannot open it: /dev/video3 does not exist")
        return FakeCapture(3 if len(attempts) == 1 else 1000)

    ticks = iter(range(10**6))
    live = camera.LiveCamera(3, clock=lambda: next(ticks), backoff=camera.Backoff(0.01, 0.02), opener=opener)
    seen: list[str | None] = []
    frames: list[tuple[np.ndarray, int]] = []
    live.start()
    try:
        deadline = time.monotonic() + 10
        while live.opens < 2 or live.error is not None or len(frames) < 5:
            assert time.monotonic() < deadline, f"no recovery: {seen}"
            if not seen or seen[-1] != live.error:
                seen.append(live.error)
            frames += live.take()
            time.sleep(0.001)
    finally:
        live.stop()
    assert len(attempts) == 4 and live.opens == 2 and live.failures == 3  # 1 loss + 2 failed opens
    assert any(e and "stopped delivering frames" in e for e in seen) or any(e and "/dev/video3" in e for e in seen)
    stamps = [t for _, t in frames]
    assert stamps == sorted(stamps), "host stamps at grab increase"


# --------------------------------------------------------------------------- radar


def test_ars548_detection_list_to_sensor_frame_points() -> None:
    scans = radar.read_file(_need(ARS548), frame_id="radar_front")
    assert len(scans) == 1
    scan = scans[0]
    assert len(scan) == 308 and scan.fields == radar.FIELDS and scan.frame_id == "radar_front"
    assert scan.stamp_ns == 1_708_578_204_202_447_652  # header.stamp as recorded
    r = scan.field("range")
    assert r.min() == pytest.approx(3.37381) and r.max() == pytest.approx(292.677, abs=0.01)
    v = scan.field("radial_velocity")
    assert v.min() > -52 and v.max() < -3.4  # driving forward: the world approaches
    # first detection: range 3.37381 m, azimuth -0.918583 rad, elevation 0.184710 rad, worked by hand:
    # r·cos(el) = 3.37381 × 0.982990 = 3.31643; x = 3.31643 × cos(-0.918583) = 3.31643 × 0.606931 = 2.01285
    # y = 3.31643 × sin(-0.918583) = 3.31643 × (-0.794755) = -2.63575; z = 3.37381 × sin(0.184710) = 0.61964
    x, y, z, vr, rcs = scan.data[0, :5]
    assert (x, y, z) == (
        pytest.approx(2.0129, abs=2e-4),
        pytest.approx(-2.6357, abs=2e-4),
        pytest.approx(0.6196, abs=2e-4),
    )
    assert (vr, rcs) == (pytest.approx(-3.64937), -10.0)
    # azimuth positive = left (+y), elevation positive = up
    assert np.all(np.sign(scan.field("y")) == np.sign(scan.field("azimuth")))
    assert np.all(np.sign(scan.field("z")) == np.sign(scan.field("elevation")))
    np.testing.assert_allclose(np.linalg.norm(scan.xyz, axis=1), r, rtol=1e-5)
    # the line-by-line reader of to_yaml detection lists gives what a YAML parser gives
    text = ARS548.read_text()
    assert radar.fast_detection_list(text) is not None
    (slow,) = radar.scans_from_documents(yaml.safe_load_all(text), str(ARS548), frame_id="radar_front")
    np.testing.assert_array_equal(slow.data, scan.data)
    assert slow.stamp_ns == scan.stamp_ns


def test_radar_csv_converts_exactly_one_scan_per_frame(tmp_path: Path) -> None:
    path = tmp_path / "scan.csv"
    path.write_text(
        "# written by the test\n"
        "frame,range_m,azimuth_deg,elevation_deg,radial_velocity_mps,rcs_dbsm,comment\n"
        "0,10,0,0,-1.5,3,ahead\n"
        "0,10,90,0,2,0,left\n"
        "0,10,0,30,0,-5,up\n"
        "\n"
        "1,20,-45,0,0.25,12,right\n"
    )
    scans = radar.read_csv(path, frame_id="r")
    assert [len(s) for s in scans] == [3, 1]
    h = math.sqrt(0.5) * 20
    np.testing.assert_allclose(
        scans[0].data[:, :5], [[10, 0, 0, -1.5, 3], [0, 10, 0, 2, 0], [math.sqrt(75), 0, 5, 0, -5]], atol=1e-5
    )
    np.testing.assert_allclose(scans[1].data[0, :5], [h, -h, 0, 0.25, 12], atol=1e-5)
    np.testing.assert_allclose(scans[0].field("azimuth"), [0, math.pi / 2, 0], atol=1e-7)
    simple = tmp_path / "simple.yaml"
    simple.write_text(
        "- {range_m: 10, azimuth_deg: 90, elevation_deg: 0, radial_velocity_mps: 1, rcs_dbsm: 2}\n"
        "---\n"
        "stamp_ns: 42\ndetections: []\n"
    )
    docs = radar.read_file(simple)
    assert [len(s) for s in docs] == [1, 0] and docs[1].stamp_ns == 42
    np.testing.assert_allclose(docs[0].xyz, [[0, 10, 0]], atol=1e-5)


def test_a_bad_radar_row_is_a_format_error_naming_file_and_row(tmp_path: Path) -> None:
    header = "range_m,azimuth_deg,elevation_deg,radial_velocity_mps,rcs_dbsm\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "10,0,0,0,0\n12,abc,0,0,0\n")
    with pytest.raises(FormatError, match=r"bad\.csv: row 2 \(line 3\): azimuth_deg is 'abc', expected a number"):
        radar.read_csv(bad)
    short = tmp_path / "short.csv"
    short.write_text(header + "10,0,0\n")
    with pytest.raises(FormatError, match=r"short\.csv: row 1 \(line 2\): 3 values, the header has 5"):
        radar.read_csv(short)
    headless = tmp_path / "headless.csv"
    headless.write_text("10,0,0,0,0\n")
    with pytest.raises(FormatError, match=r"headless\.csv: line 1: the header has no"):
        radar.read_csv(headless)
    negative = tmp_path / "neg.yaml"
    negative.write_text("- {range_m: -1, azimuth_deg: 0, elevation_deg: 0, radial_velocity_mps: 0, rcs_dbsm: 0}\n")
    with pytest.raises(FormatError, match=r"neg\.yaml: document 0, detection 0: range -1.0 m is negative"):
        radar.read_file(negative)


# --------------------------------------------------------------------------- nodes as processes


def test_camera_audio_and_radar_nodes_publish_real_data(procs: Procs, registry: Registry) -> None:
    kitti, siren, ars = _need(KITTI), _need(SIREN), _need(ARS548)
    topics = {"camera": "/camera/left/image", "audio": "/audio/siren/chunk", "radar": "/radar/front/points"}
    procs.python(
        "-m", "fusion_stream.nodes.camera", "-p", "source:=folder", "-p", f"path:={kitti}", "-p", "rate_hz:=10",
        "-p", "sensor:=camera_left", "-p", f"topic:={topics['camera']}",
    )  # fmt: skip
    procs.python(
        "-m", "fusion_stream.nodes.audio", "-p", "source:=wav", "-p", f"path:={siren}", "-p", "sample_rate:=44100",
        "-p", "channels:=2", "-p", f"topic:={topics['audio']}",
    )  # fmt: skip
    procs.python("-m", "fusion_stream.nodes.radar", "-p", "source:=file", "-p", f"path:={ars}", "-p", "rate_hz:=20")
    # a camera that is not there: the node keeps running and says why on /diagnostics
    procs.python("-m", "fusion_stream.nodes.camera", "--name", "nocam", "-p", "source:=device", "-p", "device:=987")
    wanted = [*topics.values(), "/diagnostics"]
    with Subscriber(wanted, registry=registry, timeout=20.0) as sub:
        got = collect_topics(sub, wanted, 3.0)
    procs.stop_all()

    images = [m for m in got[topics["camera"]] if isinstance(m, msgs.Image)]
    assert len(images) >= 10
    widths = {0: 1224, 1: 1242, 2: 1242}
    for m in images:  # the frame on the 10 Hz grid: stamp → KITTI frame index, as for the LiDAR
        assert m.stamp_ns % 100_000_000 == 0 and m.frame_id == "camera_left"
        assert m.width == widths[(m.stamp_ns // 100_000_000) % 3]

    chunks = [m for m in got[topics["audio"]] if isinstance(m, msgs.AudioChunk)]
    assert len(chunks) >= 100 and all(c.channels == 2 and c.sample_rate == 44_100 for c in chunks)
    assert np.all(np.diff([c.first_sample for c in chunks]) == 882), "no gap or overlap"
    assert all(c.stamp_ns == c.first_sample * 1_000_000_000 // 44_100 for c in chunks)
    with wave.open(str(siren)) as r:
        samples = np.frombuffer(r.readframes(r.getnframes()), "<i2").reshape(-1, 2).T
    c = chunks[-1]
    start = c.first_sample % samples.shape[1]
    if start + 882 <= samples.shape[1]:
        np.testing.assert_array_equal(c.data, samples[:, start : start + 882])

    scans = [m for m in got[topics["radar"]] if isinstance(m, msgs.RadarScan)]
    assert len(scans) >= 30 and all(len(s) == 308 and s.stamp_ns % 50_000_000 == 0 for s in scans)

    warn = [m for m in got["/diagnostics"] if isinstance(m, msgs.Diagnostics) and m.node == "nocam"]
    assert any(m.level == msgs.Level.WARN and "camera device 987" in m.message for m in warn)
