"""ONNX Runtime runs a set with only its occupied LiDAR pillars (an export with a variable pillar
count): on real simulated frames the detections are those of the static graph fed all 6000."""

from __future__ import annotations

from functools import cache

import numpy as np
import onnx
import pytest

from fusion_stream.core import calib, resources
from fusion_stream.infer import backends
from fusion_stream.infer.pipeline import FusionPipeline
from fusion_stream.model import dataset, preprocess
from fusion_stream.model.config import DEFAULT_WEIGHTS

RIG = calib.load(resources.resolve("calib/sim_rig.yaml"))
SPECS = (dataset.SampleSpec(seed=105, t=455.7, actors=37), dataset.SampleSpec(seed=121, t=120.0, actors=24))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_STREAM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@cache
def inputs() -> tuple[dict[str, np.ndarray], ...]:
    cfg = backends.config_from_onnx(backends.onnx_for(DEFAULT_WEIGHTS))
    geometry = preprocess.RigGeometry.from_rig(RIG)
    return tuple(
        preprocess.batch([preprocess.prepare(dataset.members_of(dataset.simulate(s, RIG), RIG), geometry, cfg)])
        for s in SPECS
    )


def test_trimming_cuts_only_unused_slots_to_a_multiple_of_the_step() -> None:
    for full in inputs():
        cfg = backends.config_from_onnx(backends.onnx_for(DEFAULT_WEIGHTS))
        dummy = cfg.grid[0] * cfg.grid[1]
        used = int((full["lidar_index"] != dummy).sum())
        trimmed = preprocess.trim_pillars(full, cfg)
        n = trimmed["lidar_index"].shape[1]
        assert used <= n < used + preprocess.PILLAR_STEP and n % preprocess.PILLAR_STEP == 0
        assert n < cfg.lidar_pillars // 2  # a simulated sweep fills well under half the slots
        assert (full["lidar_index"][:, n:] == dummy).all() and not full["lidar_pillars"][:, n:].any()
        assert trimmed["lidar_pillars"].shape[1] == n and trimmed["image"] is full["image"]
    # a batch is cut where its fullest frame ends; nothing to cut leaves every slot
    a, b = inputs()
    both = preprocess.batch([{k: v[0] for k, v in a.items()}, {k: v[0] for k, v in b.items()}])
    ends = [preprocess.trim_pillars(x, cfg)["lidar_index"].shape[1] for x in (a, b)]
    assert preprocess.trim_pillars(both, cfg)["lidar_index"].shape[1] == max(ends)
    empty = preprocess.batch([preprocess.empty_inputs(cfg)])
    assert preprocess.trim_pillars(empty, cfg)["lidar_index"].shape[1] == preprocess.PILLAR_STEP


def test_the_variable_pillar_export_gives_the_static_graphs_detections() -> None:
    static = backends.onnx_for(DEFAULT_WEIGHTS, static=True)
    variable = backends.onnx_for(DEFAULT_WEIGHTS)
    dims = {i.name: i.type.tensor_type.shape.dim for i in onnx.load(str(variable)).graph.input}
    assert dims["lidar_pillars"][1].dim_param and dims["radar_pillars"][1].dim_value == 256
    ref = backends.OnnxRuntimeBackend(static, "cpu", threads=1)
    be = backends.OnnxRuntimeBackend(variable, "cpu", threads=1)
    assert be.variable_pillars and not ref.variable_pillars
    for full in inputs():
        want = ref.run(full)
        got = be.run(preprocess.trim_pillars(full, be.config))
        assert want["scores"].max() > 0.5
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    # the pipeline feeds ONNX Runtime the trimmed sets by itself
    assert FusionPipeline(backends.load(DEFAULT_WEIGHTS, backend="onnxruntime", device="cpu"), RIG)._trim
