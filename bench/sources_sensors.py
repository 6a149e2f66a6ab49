"""Benchmark: can the real camera, audio and radar sources keep up with the sensors they replace?

Each source runs alone on one core (CPU affinity, OpenCV single-threaded) and its rate is shown
next to the real sensor's: a 30 fps camera, 50 chunks/s of 20 ms audio, a 20 Hz radar. A
source is fine when "× real time" is well above 1 — the rest of the core is the node's
(serialisation, publishing) and the host's.

* camera folder: the KITTI image_2 PNGs (1242×375) decoded to rgb8, and to JPEG (quality 90);
* camera video: an MJPG AVI of those frames written here, decoded frame by frame;
* WAV: the siren recording (stereo, 44.1 kHz) and a 4-channel 48 kHz array recording, in 20 ms
  chunks, as int16 and as float32;
* radar: the ARS548 detection list (308 detections, YAML) and the same detections as CSV,
  parsed and converted to sensor-frame points.

Recordings come from ../shared/data; synthetic stand-ins are used where they are absent.

    python bench/sources_sensors.py [--seconds 1.0]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fusion_stream.core.formats import write_wav
from fusion_stream.sources import audio, camera, radar

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
console = Console(width=150)


def one_core() -> str:
    """Pin this process to one CPU and OpenCV to one thread; what was done, for the caption."""
    camera.cv2_module().setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}, OpenCV 1 thread"
    return "OpenCV 1 thread (no CPU affinity on this OS)"


def measure(step: Callable[[], int], seconds: float) -> tuple[float, float]:
    """(items/s, ms per item): ``step()`` returns how many items it produced."""
    step()  # warm-up: file caches, lazy imports
    items, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        items += step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return items / wall, cpu / items * 1e3


def camera_cases(tmp: Path) -> list[tuple[str, str, float, Callable[[], int]]]:
    kitti = DATA / "kitti"
    if kitti.is_dir():
        folder = camera.ImageFolder(kitti)
        note = "KITTI image_2 PNG"
    else:
        cv2 = camera.cv2_module()
        rng = np.random.default_rng(0)
        for i in range(3):
            cv2.imwrite(str(tmp / f"{i:06d}.png"), rng.integers(0, 255, (375, 1242, 3), np.uint8))
        folder = camera.ImageFolder(tmp)
        note = "synthetic 1242×375 PNG"
    frames = [folder.read(i) for i in range(len(folder))]
    h, w = frames[0].shape[:2]
    video_path = tmp / "kitti.avi"
    cv2 = camera.cv2_module()
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    for k in range(60):
        writer.write(cv2.resize(frames[k % len(frames)], (w, h)))
    writer.release()
    state = {"i": 0}

    def folder_step(jpeg: bool) -> Callable[[], int]:
        def step() -> int:
            state["i"] += 1
            folder.message(state["i"] % len(folder), 0, "camera", jpeg=jpeg, quality=90)
            return 1

        return step

    def video_step() -> int:
        video = camera.VideoFile(video_path)
        n = 0
        while (f := video.read()) is not None:
            camera.to_message(f[0], f[1], "camera")
            n += 1
        video.close()
        return n

    return [
        ("camera folder → rgb8", note, 30.0, folder_step(False)),
        ("camera folder → JPEG q90", note, 30.0, folder_step(True)),
        ("camera video → rgb8", f"MJPG AVI {w}×{h}", 30.0, video_step),
    ]


def audio_cases(tmp: Path) -> list[tuple[str, str, float, Callable[[], int]]]:
    siren = DATA / "audio_siren" / "102853-8-0-0.wav"
    if not siren.exists():
        siren = write_wav(tmp / "stereo.wav", np.random.default_rng(1).uniform(-0.3, 0.3, (2, 176_400)), 44_100)
    array = write_wav(tmp / "array.wav", np.random.default_rng(2).uniform(-0.3, 0.3, (4, 48_000 * 4)), 48_000)

    def chunker(wav: audio.WavFile, dtype: audio.Dtype) -> Callable[[], int]:
        n = audio.chunk_samples(wav.sample_rate, 20.0)
        return lambda: sum(1 for _ in audio.file_chunks(wav, n, dtype=dtype))

    cases: list[tuple[str, str, float, Callable[[], int]]] = []
    for path, what in ((siren, "stereo 44.1 kHz 16-bit"), (array, "4 ch 48 kHz 16-bit")):
        wav = audio.open_wav(path)
        cases.append(("WAV 20 ms chunks → int16", what, 50.0, chunker(wav, "auto")))
        cases.append(("WAV 20 ms chunks → float32", what, 50.0, chunker(wav, "float32")))
    return cases


def radar_cases(tmp: Path) -> list[tuple[str, str, float, Callable[[], int]]]:
    ars = DATA / "radar_ars548" / "1708578204_202447652_detection.yaml"
    if ars.exists():
        scan = radar.read_file(ars)[0]
        yaml_note = f"ARS548 detection list, {len(scan)} detections"
    else:
        rng = np.random.default_rng(3)
        r, az, el = rng.uniform(3, 290, 308), rng.uniform(-0.9, 0.9, 308), rng.uniform(-0.3, 0.3, 308)
        scan = radar.polar_to_scan(r, az, el, rng.uniform(-50, 0, 308), rng.integers(-20, 30, 308))
        ars = tmp / "ars.yaml"
        rows = zip(r, az, el, scan.field("radial_velocity"), scan.field("rcs"), strict=True)
        ars.write_text(
            "detections:\n"
            + "".join(
                f"  - {{range: {a}, azimuth_angle: {b}, elevation_angle: {c}, range_rate: {d}, rcs: {e}}}\n"
                for a, b, c, d, e in rows
            )
        )
        yaml_note = "synthetic ARS548-style list, 308 detections"
    csv_path = tmp / "detections.csv"
    cols = np.stack(
        [
            scan.field("range"),
            np.degrees(scan.field("azimuth")),
            np.degrees(scan.field("elevation")),
            scan.field("radial_velocity"),
            scan.field("rcs"),
        ],
        axis=1,
    )
    csv_path.write_text(
        ",".join(radar.CSV_COLUMNS) + "\n" + "".join(",".join(f"{v:.6g}" for v in row) + "\n" for row in cols)
    )
    recording = radar.RadarRecording(csv_path)
    return [
        ("radar YAML → scan", yaml_note, 20.0, lambda: len(radar.read_file(ars))),
        ("radar CSV → scan", f"{len(scan)} rows", 20.0, lambda: len(radar.read_file(csv_path))),
        ("radar replay (restamp)", "parsed once, as the node does", 20.0, lambda: len([recording.scan(0, 1)])),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per case (default %(default)s)")
    args = ap.parse_args()
    pinning = one_core()
    table = Table(
        "source", "input", "per s", "CPU ms each", "real sensor", "× real time", box=None, title=f"one core ({pinning})"
    )
    with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        for name, what, real, step in [*camera_cases(tmp), *audio_cases(tmp), *radar_cases(tmp)]:
            rate, ms = measure(step, args.seconds)
            unit = "fps" if name.startswith("camera") else "chunks/s" if name.startswith("WAV") else "Hz"
            table.add_row(name, what, f"{rate:,.0f}", f"{ms:.3f}", f"{real:g} {unit}", f"{rate / real:,.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
