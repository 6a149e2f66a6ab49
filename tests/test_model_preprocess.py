"""Pre-processing of real simulated sensor data into the fusion network's inputs."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from fusion_stream.core import calib, msgs, resources
from fusion_stream.errors import FormatError
from fusion_stream.model import dataset, preprocess, targets
from fusion_stream.model.config import ModelConfig
from fusion_stream.sim import audio

CFG = ModelConfig()
RIG = calib.load(resources.resolve("calib/sim_rig.yaml"))
GEOMETRY = preprocess.RigGeometry.from_rig(RIG)
# a held-out scenario with an emergency vehicle ~18 m ahead-left, siren on
SIREN_SPEC = dataset.SampleSpec(seed=105, t=455.7, actors=37, condition="day", weather="clear")


@cache
def sample() -> dict[str, np.ndarray]:
    return dataset.simulate(SIREN_SPEC, RIG)


def test_pillarize_groups_points_by_cell_and_pads_with_the_dummy_cell() -> None:
    cfg = ModelConfig()
    nx, ny = cfg.grid
    xy = np.array([[0.1, 0.1], [0.2, 0.3], [5.25, -3.1], [100.0, 0.0]], np.float32)  # last: off the grid
    feats = np.concatenate([xy, np.ones((4, 1), np.float32)], axis=1)
    pillars, index, centres = preprocess.pillarize(xy, feats, cfg, max_pillars=4, max_points=3)
    cell_a = int((0.1 + 32) / 0.5) * ny + int((0.1 + 32) / 0.5)
    cell_b = int((5.25 + 32) / 0.5) * ny + int((-3.1 + 32) / 0.5)
    assert index.tolist() == [*sorted([cell_a, cell_b]), nx * ny, nx * ny]
    a = index.tolist().index(cell_a)
    assert pillars[a, :2, :2].ravel().tolist() == pytest.approx([0.1, 0.1, 0.2, 0.3])
    assert pillars[a, 2].tolist() == [0.0, 0.0, 0.0]  # padding
    assert centres[a].tolist() == pytest.approx([0.25, 0.25])
    assert pillars[2:].sum() == 0


def test_pillarize_keeps_the_fullest_cells_and_first_points_deterministically() -> None:
    cfg = ModelConfig()
    rng = np.random.default_rng(0)
    xy = rng.uniform(-3, 3, (5000, 2)).astype(np.float32)
    feats = np.concatenate([xy, np.arange(5000, dtype=np.float32)[:, None], np.ones((5000, 1), np.float32)], 1)
    p1, i1, _ = preprocess.pillarize(xy, feats, cfg, max_pillars=50, max_points=4)
    p2, i2, _ = preprocess.pillarize(xy.copy(), feats.copy(), cfg, max_pillars=50, max_points=4)
    assert np.array_equal(p1, p2) and np.array_equal(i1, i2)
    ny = cfg.grid[1]
    cells = (np.floor((xy[:, 0] + 32) / 0.5) * ny + np.floor((xy[:, 1] + 32) / 0.5)).astype(int)
    counts = np.bincount(cells)
    kept_min = counts[i1].min()
    dropped = np.setdiff1d(np.nonzero(counts)[0], i1)
    assert counts[dropped].max() <= kept_min  # nothing fuller was dropped
    # within a pillar: the first points in input order
    c = int(i1[0])
    assert p1[0, :, 2].tolist() == np.nonzero(cells == c)[0][:4].astype(float).tolist()


def test_real_lidar_sweep_becomes_pillars_in_the_rig_frame() -> None:
    s = sample()
    members = dataset.members_of(s, RIG)
    inputs = preprocess.prepare(members, GEOMETRY, CFG)
    assert inputs["present"].tolist() == [1.0, 1.0, 1.0, 1.0]
    used = inputs["lidar_index"] < CFG.grid[0] * CFG.grid[1]
    assert 500 < used.sum() < CFG.lidar_pillars
    pts = inputs["lidar_pillars"][used]
    valid = pts[..., -1] > 0
    z = pts[..., 2][valid]
    # ground returns sit near z = 0 in the rig frame (the LiDAR is mounted 1.9 m up)
    assert abs(np.median(z)) < 0.5
    # offsets to the pillar centre stay within half a cell
    assert np.abs(pts[..., 7:9][valid]).max() <= CFG.cell / 2 + 1e-4
    # radar: detections become pillars too, with the radial velocity
    assert (inputs["radar_index"] < CFG.grid[0] * CFG.grid[1]).sum() > 0


def test_camera_projection_matrix_matches_the_calibration() -> None:
    s = sample()
    cam = RIG["camera_front"]
    image, proj = preprocess.camera_inputs(s["camera"], cam, CFG)
    assert image.shape == (3, *CFG.image_size) and image.min() >= 0 and image.max() <= 1
    pts = np.array([[10.0, 1.0, 1.0], [25.0, -4.0, 0.5], [6.0, 2.0, 2.0]])
    uv_full, inside = cam.project(pts)
    assert inside.all()
    uvw = proj @ np.c_[pts, np.ones(3)].T
    uv_small = (uvw[:2] / uvw[2]).T
    scale = np.array([CFG.image_size[1] / 640, CFG.image_size[0] / 384])
    assert uv_small == pytest.approx(uv_full * scale, abs=1e-3)


def test_audio_features_point_at_the_siren() -> None:
    s = sample()
    feats = preprocess.audio_inputs(s["audio"], 48_000, GEOMETRY.microphones, CFG)  # type: ignore[arg-type]
    siren = next(b for b in dataset.boxes_from_array(s["boxes"]) if b.attributes["siren"])
    mic_x, mic_y = RIG["mic_array"].extrinsics.translation[:2]
    truth = math.degrees(math.atan2(siren.center[1] - mic_y, siren.center[0] - mic_x))
    found = int(np.argmax(feats[: CFG.azimuth_bins])) * 360 / CFG.azimuth_bins
    assert abs(math.remainder(found - truth, 360)) <= 5  # one 5° bin (all bins, road noise included: 7° off)
    # the siren band stands out of the spectrum; road noise alone is flat
    quiet = dataset.simulate(dataset.SampleSpec(seed=100, t=120.0, actors=24), RIG)
    if not any(b.attributes["siren"] for b in dataset.boxes_from_array(quiet["boxes"])):
        flat = preprocess.audio_inputs(quiet["audio"], 48_000, GEOMETRY.microphones, CFG)  # type: ignore[arg-type]
        band = slice(CFG.azimuth_bins, CFG.azimuth_bins + CFG.audio_bands)
        assert feats[band].max() > 1.5 > flat[band].max()


def test_audio_direction_of_a_synthetic_plane_wave() -> None:
    mics = GEOMETRY.microphones
    assert mics is not None
    fs = 48_000
    rng = np.random.default_rng(1)
    source = rng.standard_normal(6000)
    for az in (0.0, 75.0, 200.0, 300.0):
        d = np.array([[math.cos(math.radians(az)), math.sin(math.radians(az)), 0.0]])
        delays = audio.steering_delays(d, mics)[0]
        n = np.arange(CFG.audio_samples)
        spectrum = np.fft.rfft(source[:4800])
        f = np.fft.rfftfreq(4800, 1 / fs)
        channels = np.stack([np.fft.irfft(spectrum * np.exp(-2j * np.pi * f * tau), 4800) for tau in delays])
        feats = preprocess.audio_inputs(channels[:, n], fs, mics, CFG)
        found = int(np.argmax(feats[: CFG.azimuth_bins])) * 360 / CFG.azimuth_bins
        assert abs(math.remainder(found - az, 360)) <= 10, (az, found)


def test_missing_modalities_are_zeroed_and_flagged() -> None:
    members = dataset.members_of(sample(), RIG)
    for absent in ("camera", "radar", "audio", "lidar"):
        partial = {k: v for k, v in members.items() if k != absent}
        inputs = preprocess.prepare(partial, GEOMETRY, CFG)
        flag = ("lidar", "camera", "radar", "audio").index(absent)
        assert inputs["present"][flag] == 0.0 and inputs["present"].sum() == 3.0
        empty = preprocess.empty_inputs(CFG)
        keys = {
            "lidar": ("lidar_pillars", "lidar_index"),
            "camera": ("image", "cam_proj"),
            "radar": ("radar_pillars", "radar_index"),
            "audio": ("audio",),
        }[absent]
        for k in keys:
            assert np.array_equal(inputs[k], empty[k])
    # an empty point cloud counts as absent, not as a crash
    cloud = members["lidar"][0]
    assert isinstance(cloud, msgs.PointCloud)
    empty_cloud = msgs.PointCloud(stamp_ns=1, frame_id="lidar_top", data=cloud.data[:0], fields=cloud.fields)
    inputs = preprocess.prepare({**members, "lidar": (empty_cloud,)}, GEOMETRY, CFG)
    assert inputs["present"][0] == 0.0
    # a malformed member is a clear error naming the sensor, not a crash deep in numpy
    scan = members["radar"][0]
    assert isinstance(scan, msgs.RadarScan)
    # a plain point cloud remapped onto the radar input: no Doppler to read
    no_doppler = msgs.PointCloud(
        stamp_ns=1, frame_id="radar_front", data=scan.data[:, :4], fields=("x", "y", "z", "intensity")
    )
    with pytest.raises(FormatError, match=r"'radar_front' has no 'radial_velocity' field"):
        preprocess.prepare({**members, "radar": (no_doppler,)}, GEOMETRY, CFG)
    # a LiDAR-only model ignores the other sensors even when they are there
    lidar_only = ModelConfig(modalities=("lidar",))
    assert preprocess.prepare(members, GEOMETRY, lidar_only)["present"].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_targets_put_each_object_on_its_cell() -> None:
    boxes = [
        msgs.Box3D(
            center=(10.3, -4.6, 0.8),
            size=(4.5, 1.9, 1.6),
            yaw=0.3,
            velocity=(2.0, -1.0),
            label="car",
            attributes={"siren": True},
        ),
        msgs.Box3D(center=(50.0, 0.0, 0.8), size=(4.5, 1.9, 1.6), label="car"),  # off the grid
    ]
    t = targets.build(boxes, CFG)
    assert t["mask"].sum() == 1
    ix, iy = int((10.3 + 32) / 1.0), int((-4.6 + 32) / 1.0)
    assert t["heatmap"][0, ix, iy] == 1.0 and t["heatmap"][1:].max() == 0
    reg = t["regress"][:, ix, iy]
    assert reg[:2] == pytest.approx([0.3, 0.4], abs=1e-4)
    assert reg[3] == pytest.approx(math.log(4.5)) and reg[6] == pytest.approx(math.sin(0.3))
    assert reg[8:10].tolist() == pytest.approx([2.0, -1.0]) and reg[10] == 1.0


def test_image_target_puts_each_visible_object_on_its_projected_centre() -> None:
    _, proj = preprocess.camera_inputs(sample()["camera"], RIG["camera_front"], CFG)
    ahead = msgs.Box3D(center=(15.0, 2.0, 0.85), size=(0.6, 0.6, 1.7), yaw=0.0, label="pedestrian")
    behind = msgs.Box3D(center=(-15.0, 0.0, 0.8), size=(4.5, 1.9, 1.6), yaw=0.0, label="car")
    heat = targets.image_heatmap([ahead, behind], proj, CFG)
    h, w = CFG.image_size
    assert heat.shape == (len(CFG.classes), h // 4, w // 4)
    pixel, visible = RIG["camera_front"].project(np.array([ahead.center]))
    assert visible[0]
    u, v = pixel[0] * np.array([w / 640, h / 384]) / 4
    ped = CFG.classes.index("pedestrian")
    assert heat[ped, int(v), int(u)] == 1.0 and (heat[ped] == 1.0).sum() == 1
    assert heat[CFG.classes.index("car")].max() == 0.0  # behind the camera: no target
    # no camera in the set (zero projection): an empty target
    assert targets.image_heatmap([ahead], np.zeros((3, 4), np.float32), CFG).max() == 0.0


def test_image_loss_counts_only_samples_that_had_a_camera() -> None:
    import torch

    hx, hy = CFG.head_grid
    h, w = CFG.image_size
    out = {
        "heatmap": torch.full((2, 4, hx, hy), -5.0),
        "regress": torch.zeros(2, targets.REGRESS, hx, hy),
        "audio_siren": torch.zeros(2),
        "image_heatmap": torch.full((2, 4, h // 4, w // 4), -5.0),
    }
    target = {
        "heatmap": torch.zeros(2, 4, hx, hy),
        "regress": torch.zeros(2, targets.REGRESS, hx, hy),
        "mask": torch.zeros(2, hx, hy),
        "audio_siren": torch.zeros(2),
        "audio_present": torch.zeros(2),
        "image_heatmap": torch.zeros(2, 4, h // 4, w // 4),
        "camera_present": torch.tensor([1.0, 0.0]),
    }
    target["image_heatmap"][1, 0, 10, 10] = 1.0  # an object only the camera-less sample "saw"
    assert float(targets.loss(out, target)["image"]) < 0.01
    target["camera_present"] = torch.tensor([1.0, 1.0])
    assert float(targets.loss(out, target)["image"]) > 1.0
    del target["image_heatmap"]  # a model without a camera has no image term
    assert "image" not in targets.loss(out, target)
