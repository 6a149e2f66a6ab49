"""Running the fusion network: ONNX export, backends (TensorRT, ONNX Runtime, torch), the pipeline.

Names load on first use, so ``import fusion_stream.infer`` imports neither torch, ONNX Runtime
nor TensorRT; each backend imports its runtime when it is built."""

from typing import TYPE_CHECKING

from fusion_stream.core.lazy import lazy_exports

if TYPE_CHECKING:
    from fusion_stream.infer.backends import Backend, OnnxRuntimeBackend, TorchBackend
    from fusion_stream.infer.detector import Detector, StageTimes
    from fusion_stream.infer.export import export_onnx
    from fusion_stream.infer.pipeline import FusionPipeline, PipelineReport
    from fusion_stream.infer.tensorrt_backend import TensorRTBackend, build_engine

__all__ = [
    "Backend",
    "Detector",
    "FusionPipeline",
    "OnnxRuntimeBackend",
    "PipelineReport",
    "StageTimes",
    "TensorRTBackend",
    "TorchBackend",
    "build_engine",
    "export_onnx",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Backend": "fusion_stream.infer.backends",
        "FusionPipeline": "fusion_stream.infer.pipeline",
        "OnnxRuntimeBackend": "fusion_stream.infer.backends",
        "PipelineReport": "fusion_stream.infer.pipeline",
        "StageTimes": "fusion_stream.infer.detector",
        "Detector": "fusion_stream.infer.detector",
        "TensorRTBackend": "fusion_stream.infer.tensorrt_backend",
        "TorchBackend": "fusion_stream.infer.backends",
        "build_engine": "fusion_stream.infer.tensorrt_backend",
        "export_onnx": "fusion_stream.infer.export",
    },
)
