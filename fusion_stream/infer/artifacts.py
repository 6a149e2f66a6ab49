"""What an ONNX export and the backends that load it agree on: the metadata key and export
version, file digests, fp16 conversion. Imports neither torch nor the backends, so export,
the ONNX Runtime backend and the TensorRT backend all import it without importing each other."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fusion_stream.errors import InferenceError, ParamError

EXPORT_VERSION = 2
"""Bumped when what an export contains changes, so older cached exports are not reused."""
CONFIG_KEY = "fusion_stream.config"
"""ONNX metadata entry holding the model config (JSON)."""


PRECISIONS = ("fp32", "int8")
"""What a ``precision`` setting may say: the float export as trained, or its int8 copy
(:mod:`fusion_stream.infer.quantize`)."""


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ParamError("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def file_digest(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def to_fp16(onnx_path: Path | str, output: Path | str) -> Path:
    """A copy of the graph computing in half precision, with fp32 inputs and outputs kept (what a
    strongly typed TensorRT network builds as an FP16 engine)."""
    try:
        from onnxconverter_common import float16  # type: ignore[import-untyped]
    except ImportError as err:
        raise InferenceError(
            "fp16 engines need the onnxconverter-common package (pip install 'fusion_stream[tensorrt]')"
        ) from err
    import onnx

    model = float16.convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    onnx.save(model, str(output))
    return Path(output)
