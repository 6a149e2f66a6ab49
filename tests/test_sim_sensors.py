"""Physical checks of the simulated sensors: each one measured against the world it came from."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest

from fusion_stream.core import calib, msgs
from fusion_stream.sim import Scenario, World, audio, lidar, radar
from fusion_stream.sim.camera import CameraModel
from fusion_stream.sim.camera_raycast import RayCastCamera
from fusion_stream.sim.capture import SweepsAsCast, lidar_sweep
from fusion_stream.sim.scene import GROUND_LABEL, ego_velocity

from .conftest import ROOT

RIG = calib.load(ROOT / "calib" / "sim_rig.yaml")
LIDAR, CAMERA, RADAR, MICS = RIG["lidar_top"], RIG["camera_front"], RIG["radar_front"], RIG["mic_array"]


def _to_world(world: World, t: float, p_rig: np.ndarray) -> np.ndarray:
    x, y, yaw = world.ego_pose(t)
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([x + c * p_rig[0] - s * p_rig[1], y + s * p_rig[0] + c * p_rig[1], p_rig[2]])


def _in_box(p_world: np.ndarray, center: tuple[float, ...], size: tuple[float, ...], yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    d = p_world - np.asarray(center)
    local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1], d[2]])
    return np.abs(local) - np.asarray(size) / 2


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


_DIGEST_CODE = """
import hashlib, numpy as np
from fusion_stream.core import calib
from fusion_stream.sim import Scenario, World, audio, lidar, radar
from fusion_stream.sim.camera import CameraModel
rig = calib.load('calib/sim_rig.yaml')
w = World(Scenario(seed=5, weather='rain'))
cam = rig['camera_front']
parts = [
    lidar.sweep(w, 12.3, rig['lidar_top'].extrinsics, lidar.LidarSpec(), stamp_ns=7).data,
    CameraModel(cam.intrinsics, cam.distortion).render(w, 12.3, cam.extrinsics, stamp_ns=7).rgb,
    radar.scan(w, 12.3, rig['radar_front'].extrinsics, radar.RadarSpec(), stamp_ns=7).data,
    audio.chunk(w, 590400, rig['mic_array'].extrinsics, rig['mic_array'].microphones, audio.ArraySpec()),
]
for p in parts:
    print(hashlib.sha256(np.ascontiguousarray(p).tobytes()).hexdigest())
"""


def test_same_scenario_seed_and_time_give_identical_data_in_another_process() -> None:
    w = World(Scenario(seed=5, weather="rain"))
    assert CAMERA.intrinsics is not None and MICS.microphones is not None
    here = [
        lidar.sweep(w, 12.3, LIDAR.extrinsics, lidar.LidarSpec(), stamp_ns=7).data,
        CameraModel(CAMERA.intrinsics, CAMERA.distortion).render(w, 12.3, CAMERA.extrinsics, stamp_ns=7).rgb,
        radar.scan(w, 12.3, RADAR.extrinsics, radar.RadarSpec(), stamp_ns=7).data,
        audio.chunk(w, 590400, MICS.extrinsics, MICS.microphones, audio.ArraySpec()),
    ]
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST_CODE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [_digest(p) for p in here]
    other = lidar.sweep(w, 12.3, LIDAR.extrinsics, lidar.LidarSpec(), stamp_ns=8).data
    assert _digest(other) != _digest(here[0])  # the noise does depend on the stamp


@pytest.mark.parametrize("seed", [0, 3, 9])
def test_lidar_returns_on_actors_lie_in_their_boxes_and_ground_is_flat(seed: int) -> None:
    world = World(Scenario(seed=seed, actors=30))
    spec = lidar.LidarSpec()
    start = 20.0
    sweep = lidar.sweep(world, start, LIDAR.extrinsics, spec)
    labels = sweep.label
    assert (labels >= 0).sum() > 200, "the sweep should see some actors"
    sector_s = spec.period_s / spec.sectors
    worst = 0.0
    for i in np.flatnonzero(labels >= 0):
        t = start + float(sweep.data[i, 5])
        p = _to_world(world, t, LIDAR.extrinsics.apply(sweep.data[i, :3])[0])
        actor = next(s for s in world.state(t) if s.actor.id == labels[i])
        # noise (3σ) + how far the actor moves within half a sector (actors are posed per sector)
        tol = 3 * spec.range_noise_m + math.hypot(*actor.velocity) * sector_s / 2 + 1e-3
        excess = float(np.max(_in_box(p, actor.center, actor.actor.size, actor.yaw)))
        worst = max(worst, excess - tol)
        assert excess <= tol, f"point {i} on actor {labels[i]} is {excess:.3f} m outside its box"
    ground = sweep.data[labels == GROUND_LABEL]
    assert len(ground) > 1000
    z_world = np.array(
        [_to_world(world, start + float(g[5]), LIDAR.extrinsics.apply(g[:3])[0])[2] for g in ground[::10]]
    )
    assert np.abs(z_world).max() < 3 * spec.range_noise_m + 1e-3


def test_lidar_time_offsets_and_rings_describe_a_spinning_sweep() -> None:
    sweep = lidar.sweep(World(Scenario(seed=1)), 4.0, LIDAR.extrinsics, lidar.LidarSpec(beams=32))
    t, ring = sweep.data[:, 5], sweep.data[:, 4]
    assert t.min() >= 0 and t.max() < 0.1
    assert set(np.unique(ring).astype(int)) <= set(range(32)) and len(np.unique(ring)) > 20
    azimuth = lidar.azimuth_of(sweep.data[:, :3].astype(np.float64))
    # a column fires at its azimuth's share of the rotation: time follows azimuth
    assert np.corrcoef(azimuth, t)[0, 1] > 0.99


def test_a_sweep_cast_as_the_head_turns_is_the_same_sweep_published_a_sector_after_its_end() -> None:
    world = World(Scenario(seed=2, weather="fog"))
    spec = lidar.LidarSpec.preset(32)
    period = round(spec.period_s * 1e9)
    epoch = 10**18
    sweeps = SweepsAsCast(world, LIDAR, spec, epoch)
    sector = period // spec.sectors
    published: list[tuple[int, msgs.PointCloud]] = []
    cast_after_end: list[int] = []
    now = epoch + 5 * period + 1
    while now < epoch + 8 * period + sector:
        current = sweeps._current
        before = current[1].remaining if current is not None else None
        cloud = sweeps.poll(now)
        if cloud is not None:
            published.append((now, cloud))
            assert before is not None
            cast_after_end.append(before)
        now += sector
    # sweeps 5, 6 and 7, each out on the first poll after its end, with one sector left to cast then
    assert [c.stamp_ns for _, c in published] == [epoch + k * period - LIDAR.time_offset_ns for k in (5, 6, 7)]
    assert all(0 <= at - (c.stamp_ns + LIDAR.time_offset_ns + period) < sector for at, c in published)
    assert cast_after_end[1:] == [1, 1]
    for _, cloud in published:
        start = cloud.stamp_ns + LIDAR.time_offset_ns
        whole = lidar_sweep(world, LIDAR, spec, start, epoch)
        assert cloud.fields == whole.fields and _digest(cloud.data) == _digest(whole.data)
    assert sweeps.skipped == 0
    # three sweeps late: the one being cast comes out late, the two missed are counted
    assert sweeps.poll(now) is None  # sweep 8 begins
    late = sweeps.poll(now + 3 * period)
    assert late is not None and late.stamp_ns == epoch + 8 * period - LIDAR.time_offset_ns
    assert sweeps.poll(now + 3 * period + sector) is None
    assert sweeps.skipped == 2


def test_ego_motion_distorts_the_sweep_and_constant_velocity_deskew_undoes_it() -> None:
    """A pole seen at the start and at the end of the sweep: raw points disagree by the distance
    driven in 0.1 s; motion-compensated points agree."""
    world = World(Scenario(seed=2, ego_speed=20.0))
    sweep = lidar.sweep(world, 8.0, LIDAR.extrinsics, lidar.LidarSpec(columns=2048))
    ground = sweep.label == GROUND_LABEL
    # ground points straight ahead: fired both in the first and in the last columns
    ahead = ground & (np.abs(sweep.data[:, 1]) < 0.5) & (sweep.data[:, 0] > 0)
    early, late = ahead & (sweep.data[:, 5] < 0.01), ahead & (sweep.data[:, 5] > 0.09)
    raw_early = sweep.data[early & (sweep.data[:, 4] == 5)][:, 0].mean()
    raw_late = sweep.data[late & (sweep.data[:, 4] == 5)][:, 0].mean()
    assert raw_early - raw_late == pytest.approx(0.0, abs=0.1)  # same beam, same range: same spot of ground
    rig_pts = lidar.to_rig(sweep.data, LIDAR.extrinsics, ego_velocity(world, 8.0))
    # the late ring-5 spot is 20 m/s × ~0.1 s further along the road than the early one
    moved = rig_pts[late & (sweep.data[:, 4] == 5)][:, 0].mean() - rig_pts[early & (sweep.data[:, 4] == 5)][:, 0].mean()
    assert moved == pytest.approx(20.0 * 0.1, abs=0.25)


def test_radar_radial_velocity_is_ground_truth_velocity_along_the_line_of_sight() -> None:
    spec = radar.RadarSpec(false_alarms=0.0)
    checked = 0
    for seed in range(4):
        world = World(Scenario(seed=seed, actors=30))
        t = 15.0
        result = radar.scan(world, t, RADAR.extrinsics, spec)
        states = {s.actor.id: s for s in world.state(t)}
        ego_v = ego_velocity(world, t)
        for row, label in zip(result.data, result.label, strict=True):
            if label < 0:
                continue
            az, el = float(row[6]), float(row[7])
            u = RADAR.extrinsics.rotation @ np.array(
                [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]
            )
            v_rel = np.array([*states[int(label)].velocity, 0.0]) - ego_v
            expected = float(v_rel @ u)
            tol = 4 * spec.velocity_noise_mps + np.linalg.norm(v_rel) * math.radians(4 * spec.azimuth_noise_deg)
            assert row[3] == pytest.approx(expected, abs=tol)
            checked += 1
    assert checked > 20


def _gcc_phat_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    """Lag (samples, sub-sample by parabolic interpolation) by which ``b`` trails ``a``."""
    n = 2 * len(a)
    spec = np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n))
    cc = np.fft.irfft(spec / np.maximum(np.abs(spec), 1e-12), n)
    cc = np.concatenate([cc[-max_lag:], cc[: max_lag + 1]])
    k = int(np.argmax(cc))
    if 0 < k < len(cc) - 1:
        y0, y1, y2 = cc[k - 1], cc[k], cc[k + 1]
        k += 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return k - max_lag


def test_audio_time_difference_of_arrival_matches_the_geometry_within_one_sample() -> None:
    world = next(
        w for w in (World(Scenario(seed=s, siren_probability=1.0)) for s in range(20)) if any(a.siren for a in w.actors)
    )
    fs = 48_000
    spec = audio.ArraySpec(sample_rate=fs, chunk_samples=fs // 2, road_noise=0.0)
    assert MICS.microphones is not None
    siren_id = next(a.id for a in world.actors if a.siren)
    # a moment when the siren is 15-60 m away, so the direction changes little in half a second
    t = next(
        t
        for t in np.arange(0.0, 200.0, 0.5)
        if 15
        < math.dist(world.ego_pose(t)[:2], next(s for s in world.state(t) if s.actor.id == siren_id).center[:2])
        < 60
    )
    first = round(t * fs)
    data = audio.chunk(world, first, MICS.extrinsics, MICS.microphones, spec)
    assert np.abs(data).max() > 0.005

    t_mid = (first + spec.chunk_samples / 2) / fs
    siren = next(s for s in world.state(t_mid) if s.actor.id == siren_id)
    mics_world = [_to_world(world, t_mid, m) for m in MICS.extrinsics.apply(MICS.microphones)]
    delays = []
    for m in mics_world:
        src = np.array([*siren.center[:2], 1.2])
        delay = 0.0
        for _ in range(5):
            emitted = src - np.array([*siren.velocity, 0.0]) * delay
            delay = float(np.linalg.norm(emitted - m)) / audio.SPEED_OF_SOUND
        delays.append(delay)
    for j in range(1, len(mics_world)):
        expected = (delays[j] - delays[0]) * fs
        max_lag = int(np.ceil(0.15 / audio.SPEED_OF_SOUND * fs))  # the array aperture
        measured = _gcc_phat_lag(data[0].astype(np.float64), data[j].astype(np.float64), max_lag)
        assert measured == pytest.approx(expected, abs=1.0), f"mic {j}"


def test_siren_pitch_drops_as_the_vehicle_passes() -> None:
    """Doppler: approaching, the received pitch is above the emitted one; receding, below."""
    siren = audio.Siren()

    def passing(w: World) -> bool:  # an emergency vehicle that overtakes the ego or comes the other way
        return any(a.siren and abs(a.direction * a.speed - w.scenario.ego_speed) > 4.0 for a in w.actors)

    world = next(w for w in (World(Scenario(seed=s, siren_probability=1.0)) for s in range(40)) if passing(w))
    ev = next(a for a in world.actors if a.siren)
    fs = 48_000
    spec = audio.ArraySpec(sample_rate=fs, chunk_samples=fs // 10, road_noise=0.0)
    assert MICS.microphones is not None
    ratios = []
    for t in np.arange(0.0, 120.0, 0.25):
        s = next(st for st in world.state(t) if st.actor.id == ev.id)
        ex = world.ego_pose(t)[0]
        dx = s.center[0] - ex
        if not 10 < abs(dx) < 40:
            continue
        closing = -np.sign(dx) * (s.velocity[0] - world.scenario.ego_speed)  # > 0: approaching
        x = audio.chunk(world, round(t * fs), MICS.extrinsics, MICS.microphones, spec)[0].astype(np.float64)
        # received fundamental from zero crossings of a low-passed copy, vs the emitted pitch
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        freqs = np.fft.rfftfreq(len(x), 1 / fs)
        band = (freqs > 500) & (freqs < 1700)
        received = freqs[band][np.argmax(spectrum[band])]
        middle = t + spec.chunk_samples / fs / 2
        emitted = float(siren.frequency(np.array([middle - abs(dx) / audio.SPEED_OF_SOUND]))[0])
        ratios.append((closing, received / emitted))
    approaching = [r for c, r in ratios if c > 0]
    receding = [r for c, r in ratios if c < 0]
    assert approaching and receding
    assert np.median(approaching) > 1.0 > np.median(receding)


def test_lidar_points_on_an_actor_project_onto_that_actors_pixels() -> None:
    assert CAMERA.intrinsics is not None
    model = CameraModel(CAMERA.intrinsics, CAMERA.distortion)
    hits = total = 0
    for seed in (0, 1, 2, 3):
        world = World(Scenario(seed=seed, actors=35))
        t = 30.0
        frame = model.render(world, t, CAMERA.extrinsics)
        sweep = lidar.sweep(world, t, LIDAR.extrinsics, lidar.LidarSpec(beams=64))
        # columns fired within 6 ms of the camera's capture (azimuth 0-21°, in view)
        near = (sweep.data[:, 5] < 0.006) & (sweep.label >= 0)
        rig_pts = lidar.to_rig(sweep.data[near], LIDAR.extrinsics, ego_velocity(world, t))
        uv, inside = CAMERA.project(rig_pts)
        px = np.floor(uv[inside]).astype(np.int64)
        seen = frame.label[px[:, 1], px[:, 0]]
        hits += int((seen == sweep.label[near][inside]).sum())
        total += int(inside.sum())
    assert total > 100
    assert hits / total > 0.9, f"only {hits}/{total} LiDAR points landed on their actor's pixels"


def test_weather_and_light_change_what_sensors_get() -> None:
    assert CAMERA.intrinsics is not None
    model = CameraModel(CAMERA.intrinsics, CAMERA.distortion)
    out = {}
    for condition, weather in (("day", "clear"), ("night", "clear"), ("day", "fog"), ("day", "rain")):
        world = World(Scenario(seed=4, condition=condition, weather=weather))  # type: ignore[arg-type]
        frame = model.render(world, 10.0, CAMERA.extrinsics)
        points = len(lidar.sweep(world, 10.0, LIDAR.extrinsics, lidar.LidarSpec()).data)
        detections = sum(
            int((radar.scan(world, 10.0 + k / 13, RADAR.extrinsics, radar.RadarSpec(false_alarms=0)).label >= 0).sum())
            for k in range(5)
        )
        gray = frame.rgb.astype(np.float64).mean(axis=2)
        distant = gray[: gray.shape[0] // 2]  # above the horizon-ish: buildings tens of metres away
        out[(condition, weather)] = (gray.mean(), distant.std(), points, detections)
    day, night, fog, rain = out[("day", "clear")], out[("night", "clear")], out[("day", "fog")], out[("day", "rain")]
    assert night[0] < 0.5 * day[0]  # darker at night
    assert fog[1] < 0.7 * day[1]  # distant things fade into the fog
    assert fog[2] < 0.8 * day[2] and rain[2] < day[2]  # LiDAR loses returns in fog and rain
    assert fog[3] >= 0.8 * day[3]  # radar barely notices fog


def test_adaptive_ray_cast_reference_matches_casting_every_pixel() -> None:
    """The reference camera's 2×2-block shortcut (the bench's baseline) gives the same labels and
    depths as one ray per pixel."""
    assert CAMERA.intrinsics is not None
    fast = RayCastCamera(CAMERA.intrinsics, CAMERA.distortion)
    exact = RayCastCamera(CAMERA.intrinsics, CAMERA.distortion, adaptive=False)
    for seed in (0, 6):
        world = World(Scenario(seed=seed, actors=35))
        a, b = fast.render(world, 16.0, CAMERA.extrinsics), exact.render(world, 16.0, CAMERA.extrinsics)
        assert (a.label == b.label).mean() > 0.999
        both = np.isfinite(a.depth) & np.isfinite(b.depth)
        np.testing.assert_allclose(a.depth[both], b.depth[both], rtol=1e-3)
        assert np.abs(a.rgb.astype(np.int64) - b.rgb).mean() < 0.5
