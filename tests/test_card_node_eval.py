"""``pillars`` and ``centerpoint`` cards outside the process: ``fusion-stream eval --model CARD
--detections OUT.mcap`` over a simulated bag, and the fusion node with ``model: CARD`` on real
processes, give the boxes the plain numpy references of those kinds' tests give for the same
sweeps. The known-answer ONNX models and references are those tests' own."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fusion_stream.bag.mapping import messages
from fusion_stream.bag.reader import Bag
from fusion_stream.core import calib, msgs
from fusion_stream.infer.cards import PillarsCard, load_card
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sim.recording import TOPICS, record_sim
from fusion_stream.sim.world import Scenario

from . import test_centerpoint_card as cp
from . import test_pillars_card as pillars
from .conftest import Procs, run_cli
from .test_model_cards import SIM_RIG, assert_same_boxes, bag_frames, write_card

Reference = Callable[[msgs.PointCloud, float], list[msgs.Box3D]]
SWEEPS = 5  # 0.5 s of the rig
NODE_SWEEPS = 2  # distinct sweeps the node must answer


@pytest.fixture(scope="module")
def short_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.5 s of the simulated rig (5 LiDAR sweeps, camera, radar, audio, ground truth)."""
    path = tmp_path_factory.mktemp("bag") / "sim.mcap"
    record_sim(path, Scenario(seed=4, actors=20), start_s=200.0, duration_s=0.5)
    return path


def in_model_frame(cloud: msgs.PointCloud, rig: calib.Rig) -> np.ndarray:
    """The sweep's points moved sensor → rig → model frame (the card's frame is the LiDAR's own,
    so this is the identity up to rounding, as the library computes it)."""
    m = rig.sensors["lidar_top"].extrinsics.matrix
    to_model = np.linalg.inv(m) @ m
    pts = cloud.data[:, :3].astype(np.float64) @ to_model[:3, :3].T + to_model[:3, 3]
    return np.concatenate([pts, cloud.data[:, 3:4]], axis=1).astype(np.float32)


def pillars_model(folder: Path, first: msgs.PointCloud, rig: calib.Rig) -> tuple[Path, Reference]:
    pillars.export_pillars_model(folder / "pillars.onnx")
    card = write_card(folder, "pillars.yaml", pillars.pillars_card())
    loaded = load_card(card)
    assert isinstance(loaded, PillarsCard)
    return card, lambda cloud, threshold: pillars.reference(cloud, rig, loaded.grid, threshold)


def centerpoint_model(folder: Path, first: msgs.PointCloud, rig: calib.Rig) -> tuple[Path, Reference]:
    """Autoware's two-file export, its peak under a point of the bag's first sweep; one box
    (circle NMS drops the duplicate, and the rest of the heatmap scores ~5e-5)."""
    peak = cp.peak_cell(first.data)
    cp.export_two_files(folder, peak)
    card = write_card(folder, "centerpoint.yaml", cp.cp_card(True, frame="lidar_top"))

    def reference(cloud: msgs.PointCloud, threshold: float) -> list[msgs.Box3D]:
        box = cp.expected_box(in_model_frame(cloud, rig), peak, rig, frame="lidar_top")
        return [box] if box.score >= threshold else []

    return card, reference


@pytest.fixture(scope="module", params=["pillars", "centerpoint"])
def model(
    request: pytest.FixtureRequest, short_bag: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Reference]:
    """The kind's known-answer ONNX export and card, and its numpy reference on the sim rig."""
    folder = tmp_path_factory.mktemp(str(request.param))
    rig = calib.load(SIM_RIG)
    first = bag_frames(short_bag, 1)[0].members["lidar"][0]
    assert isinstance(first, msgs.PointCloud)
    build = pillars_model if request.param == "pillars" else centerpoint_model
    return build(folder, first, rig)


def test_card_kind_gives_the_numpy_reference_through_eval_and_the_fusion_node(
    model: tuple[Path, Reference], short_bag: Path, tmp_path: Path, procs: Procs, registry: Registry
) -> None:
    card, reference = model
    # the node starts loading while eval runs: two process start-ups overlap
    node = procs.python("-m", "fusion_stream.nodes.fusion", "--name", "fusion", "-p", f"model:={card}")
    # (a) eval writes every set's detections; each equals the reference at eval's threshold
    out = tmp_path / "dets.mcap"
    r = run_cli("eval", str(short_bag), "--model", str(card), "--detections", str(out), "-o", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr[-3000:]
    with Bag(short_bag) as bag:
        clouds = {c.message.stamp_ns: c.message for c in messages(bag, topics=[TOPICS["lidar"]])}
    assert len(clouds) == SWEEPS
    with Bag(out) as bag:
        dets = [c.message for c in messages(bag, topics=["/detections"])]
    assert sorted(d.stamp_ns for d in dets) == sorted(clouds)
    for d in dets:
        assert isinstance(d, msgs.Detections)
        want = reference(clouds[d.stamp_ns], 0.05)  # type: ignore[arg-type]
        assert want  # a known answer, not an empty one
        assert_same_boxes(d.boxes, want)

    # (b) the fusion node with the card as its model, fed synced sets over the transport
    frames = bag_frames(short_bag, NODE_SWEEPS)
    got: dict[int, msgs.Detections] = {}
    with (
        Publisher("/sync/frames", registry=registry) as pub,
        Subscriber("/detections", registry=registry) as sub,
    ):
        sub.wait_for_publishers(60.0)
        deadline = time.monotonic() + 20.0
        while len(got) < NODE_SWEEPS and time.monotonic() < deadline:  # resent until its subscriber joined
            pub.publish(frames[len(got)])
            det = sub.recv(timeout=0.3)
            if isinstance(det, msgs.Detections):
                got[det.stamp_ns] = det
    node.terminate()
    _, err = node.communicate(timeout=10)
    assert len(got) == NODE_SWEEPS, err[-2000:]
    for frame in frames:
        cloud = frame.members["lidar"][0]
        assert isinstance(cloud, msgs.PointCloud)
        assert_same_boxes(got[frame.stamp_ns].boxes, reference(cloud, 0.3))
    assert card.name in err
