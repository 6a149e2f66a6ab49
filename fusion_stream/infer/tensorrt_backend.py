"""TensorRT backend (optional extra ``tensorrt``; needs an NVIDIA GPU).

Engines are built from the ONNX export as *strongly typed* networks — the precision is the
ONNX graph's own (``fp16``: an export whose compute is half precision with fp32 inputs and
outputs) — with a timing cache, and cached on disk under a key made of the ONNX file's hash, the
TensorRT version, the GPU name and the precision. When any of them differs the engine is rebuilt,
and the log says which one changed. Device buffers are torch CUDA tensors."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusion_stream.core.cache import cache_root
from fusion_stream.errors import BackendUnavailableError, InferenceError
from fusion_stream.infer.artifacts import file_digest, to_fp16
from fusion_stream.model.config import ModelConfig
from fusion_stream.model.preprocess import INPUT_NAMES

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; any change means a rebuild."""

    onnx_sha256: str
    tensorrt: str
    gpu: str
    precision: str

    def file_name(self) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu).strip("-").lower()
        return f"fusion-{self.onnx_sha256[:16]}-trt{self.tensorrt}-{gpu}-{self.precision}.engine"

    def differences(self, before: EngineKey) -> list[str]:
        """What changed from ``before`` to this key, as 'field old -> new'."""
        now, old = asdict(self), asdict(before)
        return [f"{k} {old[k]} -> {now[k]}" for k in now if now[k] != old[k]]


def engine_key(onnx_path: Path | str, tensorrt_version: str, gpu_name: str, precision: str) -> EngineKey:
    if precision not in PRECISIONS:
        raise InferenceError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return EngineKey(file_digest(onnx_path), tensorrt_version, gpu_name, precision)


def cached_engine(cache_dir: Path, key: EngineKey) -> tuple[Path, str | None]:
    """Where the engine for ``key`` lives, and if it must be (re)built, why."""
    path = cache_dir / key.file_name()
    if path.exists() and path.with_suffix(".json").exists():
        return path, None
    stale = []
    for meta in sorted(cache_dir.glob(f"fusion-{key.onnx_sha256[:16]}-*.json")):
        try:
            old = EngineKey(**json.loads(meta.read_text()))
        except (TypeError, ValueError):
            continue
        stale.append(", ".join(key.differences(old)))
    if stale:
        return path, f"cached engine was built for another setup ({'; '.join(stale)}): rebuilding"
    return path, "no cached engine for this model: building (this takes a minute or two)"


def _tensorrt() -> Any:
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as err:
        raise BackendUnavailableError(
            "tensorrt: the TensorRT Python package is not installed (on a machine with an NVIDIA GPU: "
            "pip install 'fusion_stream[tensorrt]')"
        ) from err
    return trt


def _gpu_name(device: str) -> str:
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError("tensorrt: no CUDA GPU visible to torch")
    return str(torch.cuda.get_device_name(torch.device(device)))


def default_cache_dir() -> Path:
    return cache_root() / "engines"


def build_engine(
    onnx_path: Path | str, *, cache_dir: Path | str | None = None, precision: str = "fp16", device: str = "cuda"
) -> tuple[Path, bool]:
    """The engine file for an ONNX model, built unless a current one is cached; (path, built)."""
    trt = _tensorrt()
    onnx_path = Path(onnx_path)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = engine_key(onnx_path, trt.__version__, _gpu_name(device), precision)
    path, why = cached_engine(cache, key)
    if why is None:
        return path, False
    log.warning("%s", why)
    source = onnx_path
    if precision == "fp16":
        source = cache / f"{onnx_path.stem}-fp16.onnx"
        to_fp16(onnx_path, source)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise InferenceError(f"TensorRT could not parse {source}: {'; '.join(errors)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    timing_path = cache / "timing.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InferenceError(f"TensorRT failed to build an engine from {source} (see its log above)")
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    path.write_bytes(bytes(serialized))
    path.with_suffix(".json").write_text(json.dumps(asdict(key)))
    return path, True


class TensorRTBackend:
    """An exported ONNX model as a TensorRT engine (built once, cached by model and GPU)."""

    name = "tensorrt"

    def __init__(self, onnx_path: Path, config: ModelConfig, device: str = "cuda", precision: str = "fp16") -> None:
        trt = _tensorrt()
        import torch

        engine_path, _ = build_engine(onnx_path, precision=precision, device=device)
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise InferenceError(f"TensorRT could not load {engine_path}; delete it to rebuild")
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=device)  # type: ignore[no-untyped-call]
        self.config = config
        self.device = device
        self._outputs: dict[str, Any] = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                shape = tuple(self._engine.get_tensor_shape(name))
                dtype = _TORCH_DTYPES[str(self._engine.get_tensor_dtype(name)).split(".")[-1]]
                self._outputs[name] = torch.empty(shape, dtype=getattr(torch, dtype), device=device)
                self._context.set_tensor_address(name, self._outputs[name].data_ptr())

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        held = []
        for name in INPUT_NAMES:
            t = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device, non_blocking=True)
            held.append(t)
            self._context.set_tensor_address(name, t.data_ptr())
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise InferenceError("TensorRT execution failed")
        self._stream.synchronize()
        return {n: t.cpu().numpy() for n, t in self._outputs.items()}


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "BOOL": "bool"}
