"""An int8 copy of the network's ONNX export for ONNX Runtime on CPU, calibrated on real
simulated frames, made once per float export and cached next to it.

Static QDQ quantization (ONNX Runtime's ``quantize_static``): the convolutions get int8 weights
(per output channel) and uint8 activations whose ranges come from pre-processed frames of
training scenarios (never the held-out ones the quality gate scores on). The layers that write
the outputs stay float: the head's last convolutions (a quantized yaw pair can be exactly 0, 0,
and atan2 of it is NaN) and the camera's first convolution (three input channels, nothing to gain).
Whether the result is good enough is measured, not assumed: ``bench/precision.py``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from fusion_stream.core import calib, resources
from fusion_stream.errors import InferenceError
from fusion_stream.infer.artifacts import CONFIG_KEY
from fusion_stream.model import preprocess, splits
from fusion_stream.model.config import ModelConfig
from fusion_stream.model.dataset import members_of

log = logging.getLogger(__name__)

QUANT_VERSION = 1
"""Bumped when how the int8 copy is made changes, so older cached copies are not reused."""
CALIBRATION_SCENARIOS = 16
"""Training scenarios (one instant each) whose frames set the activation ranges."""
OPS = ("Conv", "ConvTranspose")
KEEP_FLOAT = (
    "/camera/stride4/stride4.0/stride4.0.0/Conv",
    "/camera/image_head/image_head.1/Conv",
    "/heatmap/heatmap.1/Conv",
    "/regress/regress.1/Conv",
)
"""Nodes of the export left in float (see the module doc)."""


def int8_path(float_onnx: Path) -> Path:
    """Where the int8 copy of ``float_onnx`` is cached: beside it, named after it."""
    return float_onnx.with_name(f"{float_onnx.stem}-int8-q{QUANT_VERSION}.onnx")


def int8_for(float_onnx: Path, cfg: ModelConfig) -> Path:
    """The int8 copy of a float export, made on first use (renders the calibration frames once;
    they are cached with the other simulated samples)."""
    path = int8_path(float_onnx)
    if not path.exists():
        log.info("quantizing %s to int8 (%d calibration frames)", float_onnx, CALIBRATION_SCENARIOS)
        quantize(float_onnx, path, calibration_frames(cfg))
    return path


def calibration_frames(cfg: ModelConfig, scenarios: int | None = None) -> list[preprocess.Inputs]:
    """Pre-processed network inputs (batch 1) of ``scenarios`` simulated training scenarios
    (default :data:`CALIBRATION_SCENARIOS`)."""
    data = splits.dataset("train", per_seed=1, seeds=scenarios or CALIBRATION_SCENARIOS)
    for _ in data.ensure():
        pass
    rig = calib.load(resources.resolve(data.rig_path))
    geometry = preprocess.RigGeometry.from_rig(rig)
    return [
        preprocess.batch([preprocess.prepare(members_of(data.load(i), rig), geometry, cfg)]) for i in range(len(data))
    ]


class _Frames:
    """ONNX Runtime's calibration reader protocol over a list of inputs."""

    def __init__(self, frames: Sequence[preprocess.Inputs]) -> None:
        self._it: Iterator[preprocess.Inputs] = iter(frames)

    def get_next(self) -> preprocess.Inputs | None:
        return next(self._it, None)


def quantize(float_onnx: Path, output: Path, frames: Sequence[preprocess.Inputs]) -> Path:
    """Write the static-QDQ int8 copy of ``float_onnx`` calibrated on ``frames`` (the model
    config metadata kept), through a temporary file so a reader never sees half of it."""
    if not frames:
        raise InferenceError("int8 quantization needs at least one calibration frame")
    import onnx
    from onnxruntime import quantization as q  # type: ignore[import-untyped]

    tag = f"{os.getpid()}.tmp"
    pre = output.with_name(f"{output.name}.pre.{tag}")
    tmp = output.with_name(f"{output.name}.{tag}")
    try:
        q.quant_pre_process(str(float_onnx), str(pre), skip_symbolic_shape=True)
        q.quantize_static(
            str(pre),
            str(tmp),
            _Frames(frames),
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=list(OPS),
            nodes_to_exclude=list(KEEP_FLOAT),
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            per_channel=True,
            calibrate_method=q.CalibrationMethod.MinMax,
        )
        model = onnx.load(str(tmp))
        source = {p.key: p.value for p in onnx.load(str(float_onnx), load_external_data=False).metadata_props}
        if CONFIG_KEY not in {p.key for p in model.metadata_props} and CONFIG_KEY in source:
            entry = model.metadata_props.add()
            entry.key, entry.value = CONFIG_KEY, source[CONFIG_KEY]
        onnx.save(model, str(tmp))
        tmp.replace(output)
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return output
