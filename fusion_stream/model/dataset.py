"""Training data from the simulated world: every sensor of the rig as its node would publish it,
with the ground truth, cached on disk so re-training skips the rendering.

Each sample mimics one synced set: the LiDAR sweep starting at ``t`` (the set's reference stamp),
the camera and radar frames nearest to it on their own capture grids, and the audio of the 100 ms
before it. Samples are grouped by scenario (seed); a split never shares a seed with another."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fusion_stream.core import calib, msgs
from fusion_stream.errors import FormatError
from fusion_stream.sim import audio, lidar, radar
from fusion_stream.sim.camera import CameraModel
from fusion_stream.sim.world import Scenario, World, ground_truth

AUDIO_WINDOW_S = 0.1
GT_FIELDS = ("x", "y", "z", "l", "w", "h", "yaw", "vx", "vy", "class", "siren")
CLASS_NAMES = ("car", "truck", "pedestrian", "cyclist")


@dataclass(frozen=True)
class SampleSpec:
    seed: int
    t: float
    actors: int = 24
    condition: str = "day"
    weather: str = "clear"


def plan(
    seeds: Sequence[int], per_seed: int, *, condition: str | None = None, weather: str | None = None
) -> list[SampleSpec]:
    """Sample times and conditions for each scenario seed (deterministic in the arguments);
    ``condition``/``weather`` fix what is otherwise drawn (day 70 %, night 30 %; clear 60 %,
    rain 20 %, fog 20 %)."""
    out = []
    for seed in seeds:
        rng = random.Random(seed * 7919)
        drawn_condition = rng.choices(["day", "night"], [0.7, 0.3])[0]
        drawn_weather = rng.choices(["clear", "rain", "fog"], [0.6, 0.2, 0.2])[0]
        condition_, weather_ = condition or drawn_condition, weather or drawn_weather
        actors = rng.randint(24, 40)
        for _ in range(per_seed):
            t = round(rng.uniform(5.0, 900.0), 1)  # a 10 Hz grid point, like a LiDAR stamp
            out.append(SampleSpec(seed, t, actors, condition_, weather_))
    return out


def _nearest_on_grid(t: float, rate_hz: float) -> float:
    return round(t * rate_hz) / rate_hz


def simulate(spec: SampleSpec, rig: calib.Rig) -> dict[str, np.ndarray]:
    """One sample's raw sensor data and ground truth as plain arrays (what the cache stores)."""
    world = World(Scenario(seed=spec.seed, actors=spec.actors, condition=spec.condition, weather=spec.weather))  # type: ignore[arg-type]
    t = spec.t
    out: dict[str, np.ndarray] = {"t": np.array([t])}
    lid = rig.of_type("lidar")[0]
    out["lidar"] = lidar.sweep(world, t, lid.extrinsics, lidar.LidarSpec.preset(32), stamp_ns=0).data
    cam = rig.of_type("camera")[0]
    assert cam.intrinsics is not None
    t_cam = _nearest_on_grid(t, 15.0)
    out["camera"] = CameraModel(cam.intrinsics, cam.distortion).render(world, t_cam, cam.extrinsics).rgb
    rad = rig.of_type("radar")[0]
    out["radar"] = radar.scan(world, _nearest_on_grid(t, 13.0), rad.extrinsics, radar.RadarSpec()).data
    mic = rig.of_type("microphones")[0]
    assert mic.microphones is not None
    spec_a = audio.ArraySpec()
    n = round(AUDIO_WINDOW_S * spec_a.sample_rate) // spec_a.chunk_samples
    first = round(t * spec_a.sample_rate) - n * spec_a.chunk_samples
    out["audio"] = np.concatenate(
        [
            audio.chunk(world, first + i * spec_a.chunk_samples, mic.extrinsics, mic.microphones, spec_a)
            for i in range(n)
        ],
        axis=1,
    )
    out["audio_first"] = np.array([first])
    gt = ground_truth(world, t, 0)
    out["boxes"] = np.array(
        [
            [*b.center, *b.size, b.yaw, *b.velocity, CLASS_NAMES.index(b.label), float(bool(b.attributes.get("siren")))]
            for b in gt.boxes
        ],
        np.float32,
    ).reshape(-1, len(GT_FIELDS))
    return out


def boxes_from_array(rows: np.ndarray) -> tuple[msgs.Box3D, ...]:
    return tuple(
        msgs.Box3D(
            center=(float(r[0]), float(r[1]), float(r[2])),
            size=(float(r[3]), float(r[4]), float(r[5])),
            yaw=float(r[6]),
            velocity=(float(r[7]), float(r[8])),
            label=CLASS_NAMES[int(r[9])],
            attributes={"siren": bool(r[10] > 0.5)},
        )
        for r in rows
    )


def members_of(sample: dict[str, np.ndarray], rig: calib.Rig) -> dict[str, tuple[msgs.SensorMessage, ...]]:
    """The sample as the synced set's members (the messages the nodes would have published)."""
    lid, cam, rad, mic = (rig.of_type(k)[0] for k in ("lidar", "camera", "radar", "microphones"))  # type: ignore[arg-type]
    stamp = round(float(sample["t"][0]) * 1e9)
    spec_a = audio.ArraySpec()
    first = int(sample["audio_first"][0])
    chunks = tuple(
        msgs.AudioChunk(
            stamp_ns=stamp,
            frame_id=mic.name,
            data=np.ascontiguousarray(sample["audio"][:, i : i + spec_a.chunk_samples]),
            sample_rate=spec_a.sample_rate,
            first_sample=first + i,
        )
        for i in range(0, sample["audio"].shape[1], spec_a.chunk_samples)
    )
    return {
        "lidar": (msgs.PointCloud(stamp_ns=stamp, frame_id=lid.name, data=sample["lidar"], fields=lidar.FIELDS),),
        "camera": (msgs.Image(stamp_ns=stamp, frame_id=cam.name, data=sample["camera"]),),
        "radar": (msgs.RadarScan(stamp_ns=stamp, frame_id=rad.name, data=sample["radar"], fields=radar.FIELDS),),
        "audio": chunks,
    }


# --------------------------------------------------------------------------- cache


def _key(specs: Sequence[SampleSpec], rig_path: Path) -> str:
    h = hashlib.sha256(json.dumps([asdict(s) for s in specs]).encode())
    h.update(rig_path.read_bytes())
    return h.hexdigest()[:16]


def _simulate_to(args: tuple[SampleSpec, str, str]) -> str:
    spec, rig_path, path = args
    sample = simulate(spec, calib.load(rig_path))
    tmp = path + ".tmp.npz"
    np.savez(tmp, **sample)  # type: ignore[arg-type]
    Path(tmp).replace(path)
    return path


class SimDataset:
    """A list of cached samples; :meth:`ensure` renders the ones not yet on disk."""

    def __init__(self, specs: Sequence[SampleSpec], cache_dir: Path, rig_path: Path) -> None:
        self.specs = list(specs)
        self.rig_path = rig_path
        self.dir = cache_dir / _key(self.specs, rig_path)
        self.paths = [self.dir / f"{i:06d}.npz" for i in range(len(self.specs))]

    def __len__(self) -> int:
        return len(self.specs)

    def missing(self) -> list[int]:
        return [i for i, p in enumerate(self.paths) if not p.exists()]

    def ensure(self, workers: int = 2) -> Iterator[int]:
        """Render missing samples, yielding after each one (for a progress bar)."""
        todo = self.missing()
        if not todo:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        jobs = [(self.specs[i], str(self.rig_path), str(self.paths[i])) for i in todo]
        if workers <= 1:
            for job in jobs:
                _simulate_to(job)
                yield 1
            return
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_simulate_to, jobs, chunksize=4):
                yield 1

    def load(self, i: int) -> dict[str, np.ndarray]:
        try:
            with np.load(self.paths[i]) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as err:
            raise FormatError(f"{self.paths[i]}: damaged cache file ({err}); delete it and run again") from err
