"""One instant of the simulated rig written to files people can open: PNG images, PCD clouds,
radar CSV, WAV audio and ground-truth JSON, plus pictures (camera overlay, bird's-eye view).

``fusion-stream sim snapshot`` calls :func:`write_snapshot`; so can a data-generation script.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fusion_stream.core import calib, render, resources
from fusion_stream.core.formats import write_pcd, write_wav
from fusion_stream.core.msgs import Box3D
from fusion_stream.sim import audio, lidar, radar
from fusion_stream.sim.camera import CameraModel
from fusion_stream.sim.scene import ego_velocity
from fusion_stream.sim.world import Scenario, World, ground_truth

AUDIO_SECONDS = 0.5


def write_snapshot(out_dir: Path | str, scenario: Scenario, t: float, rig_path: Path | str) -> list[Path]:
    """Every sensor of the rig at scenario time ``t``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rig = calib.load(resources.resolve(rig_path))
    world = World(scenario)
    stamp = round(t * 1e9)
    written: list[Path] = []
    gt = ground_truth(world, t, stamp)
    boxes = list(gt.boxes)
    (out / "ground_truth.json").write_text(
        json.dumps(
            {
                "stamp_ns": stamp,
                "frame_id": gt.frame_id,
                "scenario": asdict(scenario),
                "boxes": [_box(b) for b in boxes],
            },
            indent=1,
        )
    )
    written.append(out / "ground_truth.json")

    ego_v = ego_velocity(world, t)  # rig yaw is 0 in the sim: world velocity = rig velocity
    points_rig: list[np.ndarray] = []
    for sensor in rig.of_type("lidar"):
        sweep = lidar.sweep(world, t, sensor.extrinsics, lidar.LidarSpec(), stamp_ns=stamp)
        written.append(write_pcd(out / f"{sensor.name}.pcd", sweep.data, lidar.FIELDS))
        points_rig.append(lidar.to_rig(sweep.data, sensor.extrinsics, ego_v))
    cloud = np.concatenate(points_rig) if points_rig else None

    radar_xyz: list[np.ndarray] = []
    radar_vr: list[np.ndarray] = []
    for sensor in rig.of_type("radar"):
        result = radar.scan(world, t, sensor.extrinsics, radar.RadarSpec(), stamp_ns=stamp)
        path = out / f"{sensor.name}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(radar.FIELDS)
            w.writerows(np.round(result.data.astype(np.float64), 4).tolist())
        written.append(path)
        radar_xyz.append(sensor.extrinsics.apply(result.data[:, :3]))
        radar_vr.append(result.data[:, 3])

    for sensor in rig.of_type("camera"):
        assert sensor.intrinsics is not None
        frame = CameraModel(sensor.intrinsics, sensor.distortion).render(world, t, sensor.extrinsics, stamp_ns=stamp)
        written.append(render.save_png(frame.rgb, out / f"{sensor.name}.png"))
        overlay = render.camera_overlay(frame.rgb, sensor, cloud, boxes)
        written.append(render.save_png(overlay, out / f"{sensor.name}_overlay.png"))

    for sensor in rig.of_type("microphones"):
        assert sensor.microphones is not None
        spec = audio.ArraySpec()
        first = round(t * spec.sample_rate)
        n_chunks = round(AUDIO_SECONDS * spec.sample_rate / spec.chunk_samples)
        chunks = [
            audio.chunk(world, first + i * spec.chunk_samples, sensor.extrinsics, sensor.microphones, spec)
            for i in range(n_chunks)
        ]
        written.append(write_wav(out / f"{sensor.name}.wav", np.concatenate(chunks, axis=1), spec.sample_rate))

    bev = render.bird_eye_view(
        cloud,
        boxes,
        np.concatenate(radar_xyz) if radar_xyz else None,
        np.concatenate(radar_vr) if radar_vr else None,
    )
    written.append(render.save_png(bev, out / "bev.png"))
    return written


def _box(b: Box3D) -> dict[str, object]:
    return {
        "label": b.label,
        "center": list(b.center),
        "size": list(b.size),
        "yaw": b.yaw,
        "velocity": list(b.velocity),
        "track_id": b.track_id,
        "siren": bool(b.attributes.get("siren", False)),
    }
