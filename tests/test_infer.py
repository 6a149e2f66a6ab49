"""Export, backends and the engine cache, with the shipped weights on real simulated data."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from fusion_stream.core import calib, msgs, resources
from fusion_stream.errors import BackendUnavailableError, FormatError, InferenceError
from fusion_stream.infer import backends
from fusion_stream.infer.artifacts import to_fp16
from fusion_stream.infer.export import TENSORRT_OPS, export_onnx, graph_ops
from fusion_stream.infer.pipeline import FusionPipeline
from fusion_stream.infer.tensorrt_backend import EngineKey, cached_engine, engine_key
from fusion_stream.model import dataset, preprocess, targets
from fusion_stream.model.config import DEFAULT_WEIGHTS
from fusion_stream.model.decode import to_boxes
from fusion_stream.model.train import load_weights

RIG = calib.load(resources.resolve("calib/sim_rig.yaml"))
SPEC = dataset.SampleSpec(seed=105, t=455.7, actors=37)  # held-out scenario, siren nearby


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_STREAM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@cache
def frame_inputs() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    s = dataset.simulate(SPEC, RIG)
    inputs = preprocess.prepare(dataset.members_of(s, RIG), preprocess.RigGeometry.from_rig(RIG), load_cfg())
    return preprocess.batch([inputs]), s


@cache
def load_cfg():  # type: ignore[no-untyped-def]
    return load_weights(DEFAULT_WEIGHTS)[0].cfg


def test_export_is_static_opset_17_and_uses_only_tensorrt_ops(tmp_path: Path) -> None:
    path = export_onnx(DEFAULT_WEIGHTS, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 17
    ops = graph_ops(model)
    assert ops <= TENSORRT_OPS, ops - TENSORRT_OPS
    assert {"ScatterND", "GridSample", "TopK"} <= ops  # pillar scatter, camera lift, decode in-graph
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert all(d.dim_value > 0 for d in dims), f"{value.name} has a dynamic dimension"
    # the fp16 variant for TensorRT keeps fp32 inputs and outputs
    half = onnx.load(str(to_fp16(path, tmp_path / "m16.onnx")))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)


def test_onnxruntime_and_torch_give_the_same_detections() -> None:
    inputs, sample = frame_inputs()
    torch_be = backends.load(DEFAULT_WEIGHTS, backend="torch", device="cpu")
    ort_be = backends.load(DEFAULT_WEIGHTS, backend="onnxruntime", device="cpu")
    a, b = torch_be.run(inputs), ort_be.run(inputs)
    # tolerance: 1e-3 on scores, 1 cm on positions (float32 kernels differ in summation order)
    da, db = to_boxes(a, torch_be.config), to_boxes(b, ort_be.config)
    assert len(da) == len(db) > 0
    for x, y in zip(da, db, strict=True):
        assert x.label == y.label
        assert abs(x.score - y.score) < 1e-3
        assert np.allclose(x.center, y.center, atol=0.01) and np.allclose(x.size, y.size, atol=0.01)
        assert x.attributes["siren"] == y.attributes["siren"]
    # and the shipped model finds objects that are really there
    gt = dataset.boxes_from_array(sample["boxes"])
    near = [g for g in gt if abs(g.center[0]) < 25 and abs(g.center[1]) < 25]
    hits = sum(any(np.hypot(d.center[0] - g.center[0], d.center[1] - g.center[1]) < 2 for d in da) for g in near)
    assert hits >= len(near) // 2


def test_auto_picks_onnxruntime_on_a_cpu_machine_and_explains_tensorrt() -> None:
    be = backends.load(DEFAULT_WEIGHTS, backend="auto", device="cpu")
    assert be.name == "onnxruntime"
    with pytest.raises(BackendUnavailableError, match="tensorrt"):
        backends.load(DEFAULT_WEIGHTS, backend="tensorrt", device="cpu")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match="not installed"):
            backends.load(DEFAULT_WEIGHTS, backend="tensorrt", device="cuda")
    with pytest.raises(InferenceError, match="unknown backend"):
        backends.load(DEFAULT_WEIGHTS, backend="tflite")


def test_bad_weights_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InferenceError, match="no such weights file"):
        backends.load(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(FormatError, match=r"junk\.pt"):
        load_weights(junk)
    blob = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    odd = tmp_path / "odd.pt"
    torch.save({**blob, "config": {**blob["config"], "image_size": [100, 100]}}, odd)
    with pytest.raises(FormatError, match=r"odd\.pt: image_size 100x100: .*multiples of 16"):
        load_weights(odd)
    older = tmp_path / "older.pt"  # e.g. weights made before the camera branch changed
    state = {k: v for k, v in blob["state"].items() if not k.startswith("camera.image_head")}
    torch.save({**blob, "state": state}, older)
    with pytest.raises(FormatError, match=r"older\.pt: weights do not fit"):
        load_weights(older)


def test_engine_cache_key_changes_with_onnx_tensorrt_gpu_and_precision(tmp_path: Path) -> None:
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"graph one")
    key = engine_key(onnx_file, "10.3.0", "NVIDIA H200", "fp16")
    assert key.file_name().endswith("-trt10.3.0-nvidia-h200-fp16.engine")
    cache_dir = tmp_path / "engines"
    cache_dir.mkdir()
    path, why = cached_engine(cache_dir, key)
    assert why is not None and "no cached engine" in why
    # an engine built for another GPU: rebuild, and say what changed
    other = EngineKey(key.onnx_sha256, "10.3.0", "NVIDIA A100-SXM4-80GB", "fp16")
    (cache_dir / other.file_name()).write_bytes(b"engine")
    (cache_dir / other.file_name()).with_suffix(".json").write_text(json.dumps(other.__dict__))
    _, why = cached_engine(cache_dir, key)
    assert why is not None and "gpu NVIDIA A100-SXM4-80GB -> NVIDIA H200" in why
    # once built for this setup, it is reused
    path.write_bytes(b"engine")
    path.with_suffix(".json").write_text(json.dumps(key.__dict__))
    assert cached_engine(cache_dir, key) == (path, None)
    for changed in (
        engine_key(onnx_file, "10.4.0", "NVIDIA H200", "fp16"),
        engine_key(onnx_file, "10.3.0", "NVIDIA H200", "fp32"),
    ):
        assert changed.file_name() != key.file_name()
    onnx_file.write_bytes(b"graph two")
    assert engine_key(onnx_file, "10.3.0", "NVIDIA H200", "fp16").file_name() != key.file_name()
    with pytest.raises(InferenceError, match="precision"):
        engine_key(onnx_file, "10.3.0", "NVIDIA H200", "int4")


def test_pipeline_runs_partial_sets_and_keeps_the_reference_stamp() -> None:
    s = dataset.simulate(SPEC, RIG)
    members = dataset.members_of(s, RIG)
    be = backends.load(DEFAULT_WEIGHTS, backend="torch", device="cpu")
    pipe = FusionPipeline(be, RIG)
    full = msgs.SyncedFrame(stamp_ns=123, frame_id="base_link", members=members)
    det, times = pipe.process(full)
    assert det.stamp_ns == 123 and len(det.boxes) > 0 and times.inference_ms > 0
    lidar_only = msgs.SyncedFrame(
        stamp_ns=124, frame_id="base_link", members={"lidar": members["lidar"]}, missing=("camera", "radar", "audio")
    )
    det2, _ = pipe.process(lidar_only)
    assert det2.stamp_ns == 124
    no_lidar = msgs.SyncedFrame(
        stamp_ns=125,
        frame_id="base_link",
        members={k: v for k, v in members.items() if k != "lidar"},
        missing=("lidar",),
    )
    det3, _ = pipe.process(no_lidar)  # runs; camera and radar alone still see something close by
    assert det3.stamp_ns == 125


def test_the_siren_goes_to_the_vehicle_it_is_heard_from() -> None:
    from fusion_stream.model.decode import assign_siren

    def car(x: float, y: float, label: str = "car") -> msgs.Box3D:
        return msgs.Box3D(center=(x, y, 0.8), size=(4.5, 1.9, 1.6), label=label, score=0.9)

    boxes = (car(20, 0), car(10, 10), car(5, -8, "pedestrian"), car(-15, 2))
    srp = np.zeros(72, np.float32)
    srp[9] = 1.0  # 45°: towards (10, 10) from an array at the origin
    out = assign_siren(boxes, srp, 0.9, (0.0, 0.0), 72)
    assert [b.attributes["siren"] for b in out] == [False, True, False, False]
    assert out[1].attributes["siren_probability"] == pytest.approx(0.9)
    # nothing heard: nobody has a siren, whatever the directions say
    assert not any(b.attributes["siren"] for b in assign_siren(boxes, srp, 0.1, (0.0, 0.0), 72))
    # a pedestrian never gets it, even when it is the loudest direction
    srp2 = np.zeros(72, np.float32)
    srp2[round(np.degrees(np.arctan2(-8, 5)) / 5) % 72] = 1.0
    only_ped = assign_siren((car(5, -8, "pedestrian"),), srp2, 0.9, (0.0, 0.0), 72)
    assert not only_ped[0].attributes["siren"]


def test_on_a_real_frame_the_emergency_vehicle_gets_the_siren() -> None:
    s = dataset.simulate(SPEC, RIG)
    members = dataset.members_of(s, RIG)
    pipe = FusionPipeline(backends.load(DEFAULT_WEIGHTS, backend="onnxruntime", device="cpu"), RIG)
    det, _ = pipe.process(msgs.SyncedFrame(stamp_ns=1, frame_id="base_link", members=members))
    siren_gt = next(b for b in dataset.boxes_from_array(s["boxes"]) if b.attributes["siren"])
    marked = [d for d in det.boxes if d.attributes["siren"]]
    assert len(marked) == 1
    assert np.hypot(marked[0].center[0] - siren_gt.center[0], marked[0].center[1] - siren_gt.center[1]) < 2.0
    # without the microphones nobody is marked
    silent = {k: v for k, v in members.items() if k != "audio"}
    det2, _ = pipe.process(msgs.SyncedFrame(stamp_ns=2, frame_id="base_link", members=silent, missing=("audio",)))
    assert not any(d.attributes["siren"] for d in det2.boxes)


def test_the_shipped_camera_branch_finds_the_cars_in_the_image() -> None:
    """The image-space head (trained on projected ground truth) answers high on the cars the
    camera sees and low on the background: the camera carries evidence of its own into the BEV."""
    inputs, s = frame_inputs()
    net, _ = load_weights(DEFAULT_WEIGHTS)
    with torch.no_grad():
        out = net(*[torch.from_numpy(inputs[k]) for k in preprocess.INPUT_NAMES])
    prob = torch.sigmoid(out["image_heatmap"][0]).numpy()
    target = targets.image_heatmap(dataset.boxes_from_array(s["boxes"]), inputs["cam_proj"][0], net.cfg)
    car = net.cfg.classes.index("car")
    centres = np.argwhere(target[car] == 1.0)
    assert len(centres) >= 5  # this frame has several cars ahead
    at_cars = [prob[car, max(v - 1, 0) : v + 2, max(u - 1, 0) : u + 2].max() for v, u in centres]
    background = prob[car][target[car] < 0.01]
    assert np.median(at_cars) > 0.4 and np.percentile(background, 99) < 0.1
