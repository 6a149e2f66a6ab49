"""The int8 copy of the network (``precision: int8``): made through the real export and
calibration path, cached, and giving the float model's detections on a real held-out frame."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest

from fusion_stream.core import calib, msgs, resources
from fusion_stream.errors import BackendUnavailableError, ParamError
from fusion_stream.infer import backends, quantize
from fusion_stream.infer.open import check_spec, open_detector
from fusion_stream.infer.pipeline import FusionPipeline
from fusion_stream.model import dataset
from fusion_stream.model.config import DEFAULT_WEIGHTS
from fusion_stream.nodes import fusion

RIG = calib.load(resources.resolve("calib/sim_rig.yaml"))
SPECS = (dataset.SampleSpec(seed=105, t=455.7, actors=37), dataset.SampleSpec(seed=118, t=300.0, actors=30))
"""Held-out scenarios (never in training, nor in the calibration frames)."""


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_STREAM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    # four calibration scenarios instead of sixteen keep the test quick; the path is the same
    monkeypatch.setattr(quantize, "CALIBRATION_SCENARIOS", 4)


@cache
def frames() -> tuple[msgs.SyncedFrame, ...]:
    out = []
    for spec in SPECS:
        members = dataset.members_of(dataset.simulate(spec, RIG), RIG)
        out.append(msgs.SyncedFrame(stamp_ns=round(spec.t * 1e9), frame_id="base_link", members=members))
    return tuple(out)


def test_int8_detections_match_the_float_model_on_real_frames() -> None:
    fp32 = open_detector(str(DEFAULT_WEIGHTS), RIG, backend="onnxruntime", device="cpu", threads=1)
    int8 = open_detector(str(DEFAULT_WEIGHTS), RIG, device="cpu", threads=1, precision="int8")
    assert isinstance(int8, FusionPipeline) and isinstance(fp32, FusionPipeline)
    assert int8.backend.name == "onnxruntime int8" and fp32.backend.name == "onnxruntime"
    cached = quantize.int8_path(backends.onnx_for(DEFAULT_WEIGHTS))
    assert cached.exists() and cached.parent == backends.onnx_for(DEFAULT_WEIGHTS).parent
    # the output layers stay float (a quantized yaw pair can be 0, 0: NaN), the rest is int8
    graph = onnx.load(str(cached)).graph
    made_by = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type in quantize.OPS]
    quantized = {n.name for n in convs if made_by.get(n.input[1]) and made_by[n.input[1]].op_type == "DequantizeLinear"}
    assert {"/regress/regress.1/Conv", "/heatmap/heatmap.1/Conv"} <= set(quantize.KEEP_FLOAT)
    assert not quantized & set(quantize.KEEP_FLOAT) and set(quantize.KEEP_FLOAT) <= {n.name for n in convs}
    assert len(quantized) >= len(convs) - len(quantize.KEEP_FLOAT) >= 20
    matched = 0
    for frame in frames():
        a, b = fp32.process(frame)[0].boxes, int8.process(frame)[0].boxes
        assert all(np.isfinite(x.center).all() and np.isfinite(x.size).all() for x in b)
        confident = [x for x in a if x.score >= 0.5]
        assert len(confident) >= 3
        for x in confident:  # every confident float box has its int8 twin: same class, near, similar score
            twin = min(
                (y for y in b if y.label == x.label),
                key=lambda y: float(np.hypot(y.center[0] - x.center[0], y.center[1] - x.center[1])),
            )
            assert np.hypot(twin.center[0] - x.center[0], twin.center[1] - x.center[1]) < 0.3
            assert abs(twin.score - x.score) < 0.08
            assert np.allclose(twin.size, x.size, atol=0.3)
            matched += 1
        # and no confident int8 box the float model does not have
        assert abs(len([y for y in b if y.score >= 0.5]) - len(confident)) <= 2
    assert matched >= 6
    # a second load reuses the cached copy rather than quantizing again
    mtime = cached.stat().st_mtime_ns
    backends.load(DEFAULT_WEIGHTS, precision="int8", device="cpu", threads=1)
    assert cached.stat().st_mtime_ns == mtime


def test_a_bad_precision_is_a_param_error_naming_it() -> None:
    for bad in ("fp16", "INT8", ""):
        with pytest.raises(ParamError) as err:
            backends.load(DEFAULT_WEIGHTS, backend="onnxruntime", precision=bad)
        assert err.value.key == "precision"
        with pytest.raises(ParamError) as err:
            fusion.check(fusion.Params(precision=bad))
        assert err.value.key == "precision"
    # int8 is the project's network in ONNX Runtime: not torch, not a model-free baseline
    with pytest.raises(BackendUnavailableError):
        backends.check(DEFAULT_WEIGHTS, "torch", "int8")
    with pytest.raises(ParamError) as err:
        fusion.check(fusion.Params(model="cluster", precision="int8"))
    assert err.value.key == "precision"
    with pytest.raises(ParamError) as err:
        check_spec("cluster", "auto", "int8")
    assert err.value.key == "precision"


def test_eval_sim_refuses_a_bad_precision_with_exit_2(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "fusion_stream.cli", "eval-sim", "--precision", "int4", "--seeds", "1"],
        capture_output=True,
        check=False,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert r.returncode == 2
    assert "--precision" in r.stderr
