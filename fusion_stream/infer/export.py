"""Weights → ONNX: the network with its top-K decode, static shapes, standard ops only (or, for
ONNX Runtime, a variable number of LiDAR pillars: see :func:`export_net`).

torch is imported only by the functions that export; what the backends share with an export
(metadata key, digests, fp16 conversion) is in :mod:`fusion_stream.infer.artifacts`."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from fusion_stream.errors import InferenceError
from fusion_stream.infer.artifacts import CONFIG_KEY
from fusion_stream.model.config import OUTPUT_NAMES, ModelConfig
from fusion_stream.model.preprocess import INPUT_NAMES, batch, empty_inputs

if TYPE_CHECKING:
    from torch import Tensor, nn

    from fusion_stream.model.net import FusionNet

# Operators TensorRT's ONNX parser (onnx-tensorrt, TensorRT 10) supports natively, restricted to
# those a network like ours could emit. An op outside this set would need a plugin.
TENSORRT_OPS = frozenset(
    [
        "Abs",
        "Add",
        "And",
        "ArgMax",
        "ArgMin",
        "Atan",
        "Cast",
        "Ceil",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "ConvTranspose",
        "Cos",
        "Div",
        "Equal",
        "Erf",
        "Exp",
        "Expand",
        "Flatten",
        "Floor",
        "Gather",
        "GatherElements",
        "GatherND",
        "Gemm",
        "Greater",
        "GreaterOrEqual",
        "GridSample",
        "Identity",
        "If",
        "Less",
        "LessOrEqual",
        "Log",
        "MatMul",
        "Max",
        "MaxPool",
        "Min",
        "Mod",
        "Mul",
        "Neg",
        "Not",
        "Or",
        "Pad",
        "Pow",
        "Range",
        "Reciprocal",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceSum",
        "Relu",
        "Reshape",
        "Resize",
        "ScatterElements",
        "ScatterND",
        "Shape",
        "Sigmoid",
        "Sin",
        "Slice",
        "Softmax",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Tanh",
        "Tile",
        "TopK",
        "Transpose",
        "Unsqueeze",
        "Where",
        "BatchNormalization",
        "Sum",
        "Atan2",
    ]
)


VARIABLE_PILLARS = {"lidar_pillars": {1: "pillars"}, "lidar_index": {1: "pillars"}}
"""The dynamic dimension of a ``variable_pillars`` export."""


def _deployable(net: FusionNet) -> nn.Module:
    """The network as deployed: inputs in, decoded detections out."""
    from torch import nn

    class Deployable(nn.Module):
        def __init__(self, net: FusionNet) -> None:
            super().__init__()
            self.net = net

        def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
            return self.net.detect(*inputs)

    return Deployable(net)


def example_inputs(cfg: ModelConfig, batch_size: int = 1) -> tuple[Tensor, ...]:
    import torch

    frames = batch([empty_inputs(cfg)] * batch_size)
    return tuple(torch.from_numpy(frames[name]) for name in INPUT_NAMES)


def export_onnx(weights: Path | str, output: Path | str, *, opset: int = 17, variable_pillars: bool = False) -> Path:
    """Write the ONNX graph of the weights' network (batch 1) and check it."""
    if opset < 17:
        raise InferenceError(f"opset {opset} is too old: GridSample and the decode need opset >= 17")
    from fusion_stream.model.train import load_weights

    net, _ = load_weights(weights)
    return export_net(net, output, opset=opset, variable_pillars=variable_pillars)


def export_net(net: FusionNet, output: Path | str, *, opset: int = 17, variable_pillars: bool = False) -> Path:
    """``variable_pillars``: the LiDAR pillar count is a dynamic dimension (at most
    ``cfg.lidar_pillars``), so a set can be fed only its occupied pillars (a simulated sweep fills
    about a third) and the encoder skips the padding; the detections are the same. TensorRT
    engines are built from the static graph."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")  # two nodes may export at once
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about Python floats in shapes
        torch.onnx.export(
            _deployable(net.eval()),
            example_inputs(net.cfg),
            str(tmp),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
            dynamic_axes=dict(VARIABLE_PILLARS) if variable_pillars else None,
        )
    import onnx

    model = onnx.load(str(tmp))
    # the config travels with the graph, so running it needs neither torch nor the weights file
    entry = model.metadata_props.add()
    entry.key, entry.value = CONFIG_KEY, json.dumps(net.cfg.to_dict())
    onnx.save(model, str(tmp))
    onnx.checker.check_model(model)
    foreign = unsupported_ops(model)
    if foreign:
        tmp.unlink()
        raise InferenceError(f"the exported graph uses ops TensorRT cannot parse without plugins: {sorted(foreign)}")
    tmp.replace(out)
    return out


def graph_ops(model: object) -> set[str]:
    return {node.op_type for node in model.graph.node}  # type: ignore[attr-defined]


def unsupported_ops(model: object) -> set[str]:
    return graph_ops(model) - TENSORRT_OPS
