"""Benchmark: how fast each simulated sensor model runs, and whether the full rig keeps up.

Part 1 (one process, one model at a time): frames per second and CPU milliseconds per frame for
the LiDAR (32 and 64 beams), camera, radar and audio models, against their nominal rates. The
baseline in the same run is open3d casting the camera's rays alone (no shading), since these
machines' speed varies from run to run; the ray-cast camera the rasterized one replaced is timed
next to it (the "before" figure). Then the LiDAR's work left when a rotation ends: the whole cast
(before) against the sweep cast sector by sector as the head turns (what the node does now).

``--compare N``: the rasterized camera against the ray-cast reference on N scenes (seeds, times,
light and weather drawn as for training data): mean absolute RGB difference, label agreement and
depth error, per condition and overall.

Part 2 (``--rig S``): ``launch/sim.yaml`` under the supervisor for S seconds, every sensor in its
own process; the achieved rates and skipped frames are read from each node's ``/diagnostics``
(not timed here), next to the nominal rates.

    python bench/sim.py             # models only
    python bench/sim.py --rig 60    # and 60 s of the full rig
    python bench/sim.py --frames 0 --compare 40   # only the camera comparison, 40 scenes
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from fusion_stream.core import calib, msgs, resources
from fusion_stream.graph import launch
from fusion_stream.graph.supervisor import Supervisor
from fusion_stream.model.dataset import plan
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Subscriber
from fusion_stream.sim import Scenario, World, audio, lidar, radar
from fusion_stream.sim.camera import CameraModel
from fusion_stream.sim.camera_raycast import RayCastCamera
from fusion_stream.sim.scene import Raycaster, build_mesh, sensor_poses, solids

console = Console()
NOMINAL_HZ = {"lidar": 10.0, "camera": 15.0, "radar": 13.0, "audio": 50.0, "ground_truth": 10.0}


def _measure(step: Callable[[int], object], frames: int) -> tuple[float, float]:
    """(frames/s wall, CPU ms per frame) over ``frames`` calls after one warm-up call."""
    step(0)
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(1, frames + 1):
        step(i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return frames / wall, cpu / frames * 1e3


def models(frames: int) -> Table:
    rig = calib.load(resources.resolve("calib/sim_rig.yaml"))
    world = World(Scenario(seed=3, actors=30))
    cam, lid, rad, mic = rig["camera_front"], rig["lidar_top"], rig["radar_front"], rig["mic_array"]
    assert cam.intrinsics is not None and mic.microphones is not None
    camera = CameraModel(cam.intrinsics, cam.distortion)
    reference = RayCastCamera(cam.intrinsics, cam.distortion)
    t0 = 20.0
    origins, rotations = sensor_poses(world, np.array([t0]), world.ego_pose(t0)[0], cam.extrinsics)
    rays = reference._ray_buffer(rotations[0]).copy()
    rays[:, :3] = origins[0]
    caster = Raycaster(build_mesh(solids(world, t0, world.ego_pose(t0)[0], 150.0)))
    spec = audio.ArraySpec()
    cases: list[tuple[str, float, Callable[[int], object]]] = [
        ("baseline: open3d cast of the camera's rays", 15.0, lambda i: caster.cast_rays(rays)),
        ("camera 640x384, ray cast (before)", 15.0, lambda i: reference.render(world, t0 + i / 15, cam.extrinsics)),
        ("camera 640x384, rasterized", 15.0, lambda i: camera.render(world, t0 + i / 15, cam.extrinsics)),
        ("lidar 32 beams", 10.0, lambda i: lidar.sweep(world, t0 + i / 10, lid.extrinsics, lidar.LidarSpec())),
        ("lidar 64 beams", 10.0, lambda i: lidar.sweep(world, t0 + i / 10, lid.extrinsics, lidar.LidarSpec.preset(64))),
        ("radar", 13.0, lambda i: radar.scan(world, t0 + i / 13, rad.extrinsics, radar.RadarSpec())),
        (
            "audio 4 mics, 20 ms chunks",
            50.0,
            lambda i: audio.chunk(world, round(t0 * 48_000) + i * 960, mic.extrinsics, mic.microphones, spec),  # type: ignore[arg-type]
        ),
    ]
    table = Table("model", "frames/s", "CPU ms/frame", "nominal Hz", "share of one core at nominal", box=None)
    for name, nominal, step in cases:
        fps, cpu_ms = _measure(step, frames)
        table.add_row(name, f"{fps:.1f}", f"{cpu_ms:.1f}", f"{nominal:g}", f"{cpu_ms * nominal / 10:.0f} %")
    return table


def compare_cameras(scenes: int) -> Table:
    """The rasterized camera against the ray-cast reference, frame by frame on the same scenes."""
    rig = calib.load(resources.resolve("calib/sim_rig.yaml"))
    cam = rig["camera_front"]
    assert cam.intrinsics is not None
    new, ref = CameraModel(cam.intrinsics, cam.distortion), RayCastCamera(cam.intrinsics, cam.distortion)
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    for spec in plan(range(100, 100 + scenes), 1):
        world = World(Scenario(seed=spec.seed, actors=spec.actors, condition=spec.condition, weather=spec.weather))  # type: ignore[arg-type]
        t = round(spec.t * 15) / 15
        a = new.render(world, t, cam.extrinsics, stamp_ns=spec.seed)
        b = ref.render(world, t, cam.extrinsics, stamp_ns=spec.seed)
        both = np.isfinite(a.depth) & np.isfinite(b.depth)
        error = np.abs(a.depth[both] - b.depth[both])
        stats = (
            float(np.abs(a.rgb.astype(np.int64) - b.rgb).mean()),
            float((a.label == b.label).mean()),
            float(np.median(error)),
            float((error > 0.05).mean()),
        )
        for key in (f"{spec.condition}, {spec.weather}", "all"):
            rows.setdefault(key, []).append(stats)
    table = Table(
        "scenes", "n", "mean |RGB diff| (0-255)", "label agreement", "median depth error", "depth off > 5 cm", box=None
    )
    for key, values in sorted(rows.items(), key=lambda kv: kv[0] == "all"):
        m = np.mean(np.array(values), axis=0)
        table.add_row(
            key, str(len(values)), f"{m[0]:.3f}", f"{m[1] * 100:.3f} %", f"{m[2] * 1e3:.3f} mm", f"{m[3] * 100:.3f} %"
        )
    return table


def full_rig(seconds: float) -> Table:
    graph = launch.load(launch.find("sim"))
    registry = Registry(graph=f"bench-sim-{os.getpid()}")
    sup = Supervisor(graph, registry=registry, output=lambda line: None)
    latest: dict[str, msgs.Diagnostics] = {}
    try:
        sup.start()
        with Subscriber("/diagnostics", registry=registry, queue_size=1000) as diag:
            warmup_end = time.monotonic() + 5.0
            end = warmup_end + seconds
            with console.status(f"running launch/sim.yaml for {seconds:.0f} s (+5 s warm-up) ..."):
                while time.monotonic() < end and not sup.done:
                    m = diag.recv(timeout=0.1)
                    if isinstance(m, msgs.Diagnostics) and time.monotonic() > warmup_end:
                        latest[m.node] = m
                        first.setdefault(m.node, m)
                    sup.step()
    finally:
        codes = sup.shutdown()
    table = Table("node", "nominal Hz", "achieved Hz (last 1 s)", "frames skipped in the run", "exit", box=None)
    for node, report in sorted(latest.items()):
        values = report.values
        rate = next((float(v) for k, v in values.items() if k.startswith("pub./") and k.endswith(".rate_hz")), 0.0)  # type: ignore[arg-type]
        skipped_key = "chunks_skipped" if "chunks_skipped" in values else "frames_skipped"
        skipped = int(values.get(skipped_key, 0)) - int(first[node].values.get(skipped_key, 0))  # type: ignore[arg-type]
        nominal = NOMINAL_HZ.get(node)
        table.add_row(
            node,
            f"{nominal:g}" if nominal else "-",
            f"{rate:.1f}",
            str(skipped) if node in NOMINAL_HZ else "-",
            str(codes.get(node)),
        )
    return table


def sweep_ready(frames: int) -> Table:
    """Work left when a rotation ends: the whole cast (a sweep computed at its end, the "before")
    against a sweep cast sector by sector as the head turns (what the LiDAR node does now)."""
    rig = calib.load(resources.resolve("calib/sim_rig.yaml"))
    world, mount = World(Scenario(seed=3, actors=30)), rig["lidar_top"].extrinsics
    table = Table("LiDAR sweep out after its rotation ends", "p50 ms", "p99 ms", box=None)
    for beams in (32, 64):
        spec = lidar.LidarSpec.preset(beams)
        whole, as_cast = [], []
        for i in range(frames + 1):
            start = 20.0 + i * spec.period_s
            t0 = time.perf_counter()
            lidar.sweep(world, start, mount, spec)
            whole.append(time.perf_counter() - t0)
            cast = lidar.SweepCast(world, start, mount, spec)
            cast.cast_until(start + spec.period_s * (1 - 1 / spec.sectors))  # up to the last sector
            t0 = time.perf_counter()
            cast.finish()
            as_cast.append(time.perf_counter() - t0)
        for name, dt in (
            (f"{beams} beams, cast at the end (before)", whole),
            (f"{beams} beams, cast as the head turns", as_cast),
        ):
            ms = np.array(dt[1:]) * 1e3  # the first one warms up
            table.add_row(name, f"{np.percentile(ms, 50):.1f}", f"{np.percentile(ms, 99):.1f}")
    return table


first: dict[str, msgs.Diagnostics] = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20, help="frames per model (default 20)")
    ap.add_argument("--rig", type=float, default=0.0, metavar="S", help="also run the full rig for S seconds")
    ap.add_argument("--compare", type=int, default=0, metavar="N", help="rasterized vs ray-cast camera on N scenes")
    args = ap.parse_args()
    console.print(f"machine: {os.cpu_count()} CPUs; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    if args.frames > 0:
        console.print(models(args.frames))
        console.print(sweep_ready(args.frames))
    if args.compare > 0:
        console.print(compare_cameras(args.compare))
    if args.rig > 0:
        console.print(full_rig(args.rig))


if __name__ == "__main__":
    main()
