"""Model cards: a user's ONNX detector described by a YAML card runs wherever the project's network
does (``open_detector``, the fusion node's ``model:``, ``eval --model``), its boxes moved between
the model's frame and the rig's with the calibration; a bad card or a model that does not match
its card is refused naming the file and key.

The ONNX model is built here to a known answer (a box centred on the mean of the real points,
yawed towards it), so a plain numpy reference of the same transform and decoding says what every
path must give."""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from fusion_stream.bag.mapping import messages
from fusion_stream.bag.reader import Bag
from fusion_stream.core import calib, msgs, resources
from fusion_stream.errors import ParamError
from fusion_stream.eval.bag_eval import evaluate_bag, setup_from_launch
from fusion_stream.eval.html import write_report
from fusion_stream.infer.boxes_model import decode_boxes, label_names, pad_points
from fusion_stream.infer.cards import CardError, load_card
from fusion_stream.infer.open import open_detector, rig_warning
from fusion_stream.nodes import fusion
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sim.recording import TOPICS, record_sim
from fusion_stream.sim.world import Scenario

from .conftest import Procs, run_cli

SIM_RIG = resources.resolve("calib/sim_rig.yaml")
CLASSES = ["Car", "Truck", "Pedestrian"]
SCORES = (0.9, 0.5, 0.1)
LABELS = (0, 2, 1)
MAX_POINTS = 60_000


def export_mean_box(path: Path, fields: int = 4, outputs: tuple[str, str, str] = ("boxes", "scores", "labels")) -> None:
    """An ONNX graph with exactly the ``boxes`` card's I/O: box 0 is centred on the mean of the
    real points (4 × 2 × 1.5 m, yawed towards the mean), box 1 one metre further along x
    (0.6 × 0.6 × 1.7 m, yaw 0), box 2 like box 0 but scoring below any threshold."""
    import torch

    class MeanBox(torch.nn.Module):
        def forward(self, points: torch.Tensor, num_points: torch.Tensor) -> tuple[torch.Tensor, ...]:
            n = num_points.to(torch.float32).clamp(min=1.0)
            mask = (torch.arange(points.shape[0]) < num_points).to(torch.float32).unsqueeze(1)
            mean = (points[:, :3] * mask).sum(0) / n
            yaw = torch.atan2(mean[1:2], mean[0:1])
            car = torch.cat([mean, torch.tensor([4.0, 2.0, 1.5]), yaw])
            walker = torch.cat([mean + torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.6, 0.6, 1.7, 0.0])])
            boxes = torch.stack([car, walker, car])
            scores = torch.tensor(SCORES) + 0.0 * mean[0]
            labels = torch.tensor(LABELS, dtype=torch.int64) + (0.0 * mean[0]).to(torch.int64)
            return boxes, scores, labels

    torch.onnx.export(
        MeanBox(),
        (torch.zeros(MAX_POINTS, fields), torch.zeros(1, dtype=torch.int32)),
        str(path),
        input_names=["points", "num_points"],
        output_names=list(outputs),
        opset_version=17,
        dynamo=False,
    )


def card_text(frame: str = "lidar_top", **over: object) -> dict[str, object]:
    card: dict[str, object] = {
        "kind": "boxes",
        "onnx": "mean_box.onnx",
        "classes": CLASSES,
        "class_map": {"Car": "car", "Truck": "truck", "Pedestrian": "pedestrian"},
        "inputs": {
            "points": {"name": "points", "fields": ["x", "y", "z", "intensity"], "max_points": MAX_POINTS},
            "num_points": {"name": "num_points"},
        },
        "outputs": {
            "boxes": {"name": "boxes", "layout": ["x", "y", "z", "l", "w", "h", "yaw"]},
            "scores": {"name": "scores"},
            "labels": {"name": "labels"},
        },
        "frame": frame,
        "score_threshold": 0.3,
    }
    card.update(over)
    return card


def write_card(folder: Path, name: str, card: dict[str, object]) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path

def refused_at_load(tmp_path: Path, cases: dict[str, tuple[dict[str, object], str]]) -> None:
    """Each card (file name → (content, key)) is refused when read, naming its file and that key."""
    for name, (text, key) in cases.items():
        path = write_card(tmp_path, name, text)
        with pytest.raises(CardError) as info:
            load_card(path)
        assert (info.value.path, info.value.key) == (str(path), key), name
        assert isinstance(info.value, ValueError)  # a user's mistake: exit 2


def refused_at_open(tmp_path: Path, card: dict[str, object]) -> CardError:
    """The error that opening a card whose ONNX file does not match it raises (naming the card)."""
    path = write_card(tmp_path, "refused.yaml", card)
    with pytest.raises(CardError) as info:
        open_detector(str(path), calib.load(SIM_RIG), device="cpu")
    assert info.value.path == str(path)
    return info.value



@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cards")
    export_mean_box(d / "mean_box.onnx")
    write_card(d, "lidar.yaml", card_text())
    write_card(d, "rig_frame.yaml", card_text(frame="base_link"))
    # the sim rig with its LiDAR turned 30° and tilted, so the frames really differ
    rig = yaml.safe_load(SIM_RIG.read_text())
    rig["rig"] = "sim_turned"
    rig["sensors"]["lidar_top"]["extrinsics"]["rotation_rpy_deg"] = [1.0, -2.0, 30.0]
    (d / "turned_rig.yaml").write_text(yaml.safe_dump(rig))
    return d


def reference(cloud: msgs.PointCloud, rig: calib.Rig, frame: str, threshold: float = 0.3) -> list[msgs.Box3D]:
    """What the card must give, in plain numpy: points sensor → rig → model frame, the model's
    answer computed directly, boxes model → rig, labels through the class map."""
    xyz = cloud.data[:MAX_POINTS, :3].astype(np.float64)
    sensor = rig.sensors["lidar_top"].extrinsics.matrix
    model = np.eye(4) if frame == rig.frame_id else rig.sensors[frame].extrinsics.matrix
    to_model = np.linalg.inv(model) @ sensor
    pts = xyz @ to_model[:3, :3].T + to_model[:3, 3]
    mean = pts.astype(np.float32).mean(axis=0, dtype=np.float64)
    turn = math.atan2(model[1, 0], model[0, 0])
    ours = {0: "car", 1: "truck", 2: "pedestrian"}
    rows = [
        (np.array([*mean, 4, 2, 1.5, math.atan2(mean[1], mean[0])]), SCORES[0], LABELS[0]),
        (np.array([mean[0] + 1, mean[1], mean[2], 0.6, 0.6, 1.7, 0.0]), SCORES[1], LABELS[1]),
        (np.array([*mean, 4, 2, 1.5, math.atan2(mean[1], mean[0])]), SCORES[2], LABELS[2]),
    ]
    out = []
    for row, score, label in rows:
        if score < threshold:
            continue
        c = model[:3, :3] @ row[:3] + model[:3, 3]
        yaw = math.remainder(row[6] + turn, math.tau)
        out.append(msgs.Box3D(center=tuple(c), size=tuple(row[3:6]), yaw=yaw, label=ours[label], score=score))
    return out


def assert_same_boxes(got: tuple[msgs.Box3D, ...] | list[msgs.Box3D], want: list[msgs.Box3D]) -> None:
    assert [b.label for b in got] == [b.label for b in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.center, w.center, atol=2e-3)
        np.testing.assert_allclose(g.size, w.size, atol=1e-5)
        assert abs(math.remainder(g.yaw - w.yaw, math.tau)) < 1e-4
        assert g.score == pytest.approx(w.score, abs=1e-6)


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of the simulated rig (10 LiDAR sweeps, camera, radar, audio, ground truth)."""
    path = tmp_path_factory.mktemp("bag") / "sim.mcap"
    record_sim(path, Scenario(seed=4, actors=20), start_s=200.0, duration_s=1.0)
    return path


def bag_frames(bag_path: Path, count: int) -> list[msgs.SyncedFrame]:
    """Sets of the bag's sensor messages: the k-th sweep with the first camera, radar and audio."""
    with Bag(bag_path) as bag:
        by_topic: dict[str, list[msgs.Message]] = {}
        for c in messages(bag):
            by_topic.setdefault(c.topic, []).append(c.message)
    members = {name: (by_topic[TOPICS[name]][0],) for name in ("camera", "radar", "audio")}
    sweeps = by_topic[TOPICS["lidar"]]
    return [
        msgs.SyncedFrame(stamp_ns=s.stamp_ns, frame_id="base_link", members={**members, "lidar": (s,)})  # type: ignore[attr-defined]
        for s in sweeps[:count]
    ]


# --------------------------------------------------------------------------- pure parts


def test_padding_labels_and_box_frames_without_onnx() -> None:
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    padded, n = pad_points(rows, 5)
    assert n == 3 and padded.shape == (5, 4) and (padded[:3] == rows).all() and not padded[3:].any()
    cut, n = pad_points(rows, 2)
    assert n == 2 and (cut == rows[:2]).all()
    assert label_names(np.array([1, 0, 7, -1]), ["Car", "Van"], {"Van": "car", "Car": "car"}) == [
        "car",
        "car",
        None,
        None,
    ]
    # a model frame turned 90° and lifted 2 m: x forward there is y left in the rig
    to_rig = calib.Transform.from_rpy((0.0, 0.0, 2.0), (0.0, 0.0, math.pi / 2))
    raw = np.array([[10, 0, 0, 4, 2, 1.5, 0.1, 1.0, 0.0], [1, 1, 1, -1, 1, 1, 0, 0, 0], [5, 5, 0, 1, 1, 1, 0, 0, 0]])
    layout = ["x", "y", "z", "l", "w", "h", "yaw", "vx", "vy"]
    boxes = decode_boxes(raw, np.array([0.8, 0.9, 0.2]), np.array([0, 0, 0]), layout, ["car"], {}, to_rig, 0.3)
    assert len(boxes) == 1  # the negative size and the low score are dropped
    (b,) = boxes
    np.testing.assert_allclose(b.center, (0.0, 10.0, 2.0), atol=1e-9)
    np.testing.assert_allclose(b.velocity, (0.0, 1.0), atol=1e-9)
    assert b.yaw == pytest.approx(0.1 + math.pi / 2)


# --------------------------------------------------------------------------- the card end to end


@pytest.mark.parametrize("card", ["lidar.yaml", "rig_frame.yaml"])
def test_boxes_card_gives_the_numpy_reference_on_simulated_sweeps(model_dir: Path, sim_bag: Path, card: str) -> None:
    rig = calib.load(model_dir / "turned_rig.yaml")
    detector = open_detector(str(model_dir / card), rig, backend="auto", device="cpu", threads=1)
    assert detector.warm_up() > 0
    frame_of_model = load_card(model_dir / card).frame  # type: ignore[union-attr]
    for frame in bag_frames(sim_bag, 2):
        assert detector.present(frame) == ["lidar"]
        det, times = detector.process(frame)
        assert det.stamp_ns == frame.stamp_ns and det.frame_id == "base_link" and times.total_ms > 0
        cloud = frame.members["lidar"][0]
        assert isinstance(cloud, msgs.PointCloud) and 1000 < len(cloud.data) < MAX_POINTS
        want = reference(cloud, rig, frame_of_model)
        assert len(want) == 2
        assert_same_boxes(det.boxes, want)
    # the card's threshold gives way to an explicit one
    low = open_detector(str(model_dir / card), rig, device="cpu", threshold=0.05)
    assert len(low.process(frame)[0].boxes) == 3


def test_a_fusion_stream_card_is_the_weights_file(sim_bag: Path, tmp_path: Path) -> None:
    weights = resources.resolve("weights/fusion_sim.pt").resolve()
    card = write_card(tmp_path, "net.yaml", {"kind": "fusion_stream", "weights": str(weights)})
    rig = calib.load(SIM_RIG)
    (frame,) = bag_frames(sim_bag, 1)
    by_card = open_detector(str(card), rig, backend="onnxruntime", device="cpu").process(frame)[0]
    by_weights = open_detector(str(weights), rig, backend="onnxruntime", device="cpu").process(frame)[0]
    assert by_card.boxes and by_card.boxes == by_weights.boxes
    assert rig_warning(str(card), rig) is None  # the rig the shipped weights were trained on
    other = calib.Rig("kitti", rig.frame_id, rig.sensors)
    warning = rig_warning(str(card), other)
    assert warning is not None and "'sim'" in warning and "'kitti'" in warning
    assert rig_warning("fusion_sim", other) is not None and rig_warning(str(weights), other) is not None
    assert rig_warning("fusion_sim", rig) is None


# --------------------------------------------------------------------------- bad cards


def test_bad_cards_name_the_file_and_key(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "mean_box.onnx").write_bytes((model_dir / "mean_box.onnx").read_bytes())
    outputs = dict(card_text()["outputs"])  # type: ignore[arg-type]
    del outputs["scores"]
    cases = {
        "no_scores.yaml": (card_text(outputs=outputs), "outputs.scores"),
        "kind.yaml": (card_text(kind="pointpillars"), "kind"),
        "max.yaml": (
            card_text(inputs={"points": {"name": "points", "fields": ["x", "y", "z"], "max_points": 0}}),
            "inputs.points.max_points",
        ),
        "typo.yaml": (card_text(frames="lidar_top"), "frames"),
        "map.yaml": (card_text(class_map={"Bus": "truck"}), "class_map.Bus"),
    }
    refused_at_load(tmp_path, cases)

    def refused(card: dict[str, object]) -> CardError:
        return refused_at_open(tmp_path, card)

    err = refused(card_text(outputs={**card_text()["outputs"], "scores": {"name": "confidence"}}))  # type: ignore[dict-item]
    assert err.key == "outputs"
    assert err.expected == ("boxes", "confidence", "labels") and err.found == ("boxes", "scores", "labels")
    err = refused(
        card_text(
            inputs={"points": {"name": "points", "fields": ["x", "y", "z", "intensity"], "max_points": MAX_POINTS}}
        )
    )
    assert err.key == "inputs" and err.expected == ("points",) and set(err.found) == {"points", "num_points"}
    fields = {
        "points": {"name": "points", "fields": ["x", "y", "z"], "max_points": MAX_POINTS},
        "num_points": {"name": "num_points"},
    }
    assert refused(card_text(inputs=fields)).key == "inputs.points.fields"
    assert refused(card_text(frame="lidar_roof")).key == "frame"
    assert refused(card_text(onnx="absent.onnx")).key == "onnx"
    # the node's launch-time check says which parameter is wrong
    bad = write_card(tmp_path, "node.yaml", card_text(kind="pointpillars"))
    with pytest.raises(ParamError) as perr:
        fusion.check(fusion.Params(model=str(bad)))
    assert perr.value.key == "model"
    fusion.check(fusion.Params(model=str(model_dir / "lidar.yaml")))


# --------------------------------------------------------------------------- node and eval


def test_fusion_node_runs_a_card_given_as_model(
    model_dir: Path, sim_bag: Path, procs: Procs, registry: Registry
) -> None:
    rig = calib.load(SIM_RIG)
    frame = bag_frames(sim_bag, 3)[-1]
    cloud = frame.members["lidar"][0]
    assert isinstance(cloud, msgs.PointCloud)
    want = reference(cloud, rig, "lidar_top")
    node = procs.python(
        "-m", "fusion_stream.nodes.fusion", "--name", "fusion", "-p", f"model:={model_dir / 'lidar.yaml'}"
    )
    with (
        Publisher("/sync/frames", registry=registry) as pub,
        Subscriber("/detections", registry=registry) as dets,
    ):
        dets.wait_for_publishers(60.0)
        got = None
        deadline = time.monotonic() + 20.0
        while got is None and time.monotonic() < deadline:  # until its subscriber has joined
            pub.publish(frame)
            got = dets.recv(timeout=0.3)
    assert isinstance(got, msgs.Detections) and got.stamp_ns == frame.stamp_ns
    assert_same_boxes(got.boxes, want)
    node.terminate()
    _, err = node.communicate(timeout=10)
    assert "lidar.yaml" in err and "trained on" not in err, err[-2000:]


def eval_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("eval", *args, timeout=110)


def test_eval_scores_a_card_and_writes_its_detections_to_mcap(model_dir: Path, sim_bag: Path, tmp_path: Path) -> None:
    from mcap_ros2.reader import read_ros2_messages

    out = tmp_path / "dets.mcap"
    r = eval_cli(
        str(sim_bag), "--model", str(model_dir / "lidar.yaml"), "--detections", str(out), "-o", str(tmp_path / "r")
    )
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["sets"] == 10 and "lidar.yaml" in metrics["backend"] and "model_warning" not in metrics
    rig = calib.load(SIM_RIG)
    by_topic: dict[str, list[object]] = {}
    for m in read_ros2_messages(str(out)):
        by_topic.setdefault(m.channel.topic, []).append(m)
    assert {t: len(v) for t, v in by_topic.items()} == {"/tf_static": 1, "/detections": 10, "/detections/markers": 10}
    with Bag(out) as bag:
        dets = [c for c in messages(bag, topics=["/detections"])]
    with Bag(sim_bag) as bag:
        clouds = {c.message.stamp_ns: c.message for c in messages(bag, topics=["/lidar/top/points"])}
    assert [d.message.stamp_ns for d in dets] == sorted(clouds)  # one per set, stamped like the sweep
    for d in dets:
        assert d.log_ns >= d.message.stamp_ns
        assert_same_boxes(d.message.boxes, reference(clouds[d.message.stamp_ns], rig, "lidar_top", threshold=0.05))

    # a bad card: exit 2 naming the file and the key; the shipped weights on another rig: the
    # report says so
    bad = write_card(tmp_path, "bad.yaml", card_text(kind="pointpillars"))
    r = eval_cli(str(sim_bag), "--model", str(bad), "-o", str(tmp_path / "bad"))
    assert r.returncode == 2 and "bad.yaml" in r.stderr and "kind" in r.stderr
    rig_file = yaml.safe_load(SIM_RIG.read_text())
    rig_file["rig"] = "our_van"
    (tmp_path / "van.yaml").write_text(yaml.safe_dump(rig_file))
    van = setup_from_launch("sim", args={"calib": str(tmp_path / "van.yaml")})
    result = evaluate_bag(sim_bag, van, threads=1)
    warning = result.metrics["model_warning"]
    assert "'our_van'" in warning and "'sim'" in warning
    write_report(result, tmp_path / "van", rig=calib.load(tmp_path / "van.yaml"), classes=result.classes, frames=0)
    assert "our_van" in (tmp_path / "van" / "report.html").read_text()


def test_fusion_node_warns_when_the_shipped_weights_meet_another_rig(
    procs: Procs, registry: Registry, tmp_path: Path
) -> None:
    rig_file = yaml.safe_load(SIM_RIG.read_text())
    rig_file["rig"] = "our_van"
    (tmp_path / "van.yaml").write_text(yaml.safe_dump(rig_file))
    node = procs.python("-m", "fusion_stream.nodes.fusion", "--name", "fusion", "-p", f"calib:={tmp_path / 'van.yaml'}")
    with Subscriber("/detections", registry=registry) as dets:
        dets.wait_for_publishers(60.0)  # it publishes once the model is loaded and the warning logged
    node.terminate()
    _, err = node.communicate(timeout=10)
    assert "WARNING" in err and "'our_van'" in err and "'sim'" in err, err[-2000:]
