"""Inference backends behind one interface: ``run(inputs) -> outputs`` on batched numpy arrays.

``load(model, backend="auto")`` tries TensorRT, then ONNX Runtime (TensorRT, CUDA, CPU execution
providers), then torch, and says why each one it skipped was unusable."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from fusion_stream.core.cache import cache_root
from fusion_stream.core.yamlio import open_regular
from fusion_stream.errors import BackendUnavailableError, InferenceError
from fusion_stream.infer.artifacts import CONFIG_KEY, EXPORT_VERSION, check_precision
from fusion_stream.model.config import MAX_WEIGHTS_BYTES, OUTPUT_NAMES, ModelConfig, WeightsError
from fusion_stream.model.preprocess import INPUT_NAMES

log = logging.getLogger(__name__)

BACKENDS = ("tensorrt", "onnxruntime", "torch")
CHOICES = ("auto", *BACKENDS)
"""What a ``backend`` setting may say: auto tries each of :data:`BACKENDS` in turn."""
Arrays = Mapping[str, np.ndarray]


class Backend(Protocol):
    """What runs the network: batched inputs by name to outputs by name, on a device."""

    name: str
    device: str
    config: ModelConfig

    def run(self, inputs: Arrays) -> dict[str, np.ndarray]:
        """Batched inputs by name (see ``preprocess.INPUT_NAMES``) → outputs by name
        (``boxes, scores, labels, siren, audio_siren``)."""
        ...


def onnx_for(weights: Path, *, static: bool = False) -> Path:
    """The ONNX export of a weights file, made once and cached by the weights' hash (torch is
    only imported when the export has to be made). ONNX Runtime's takes a variable number of
    LiDAR pillars; ``static``: every shape fixed (what TensorRT builds from)."""
    sha = hashlib.sha256()
    with _open_weights(weights) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    digest = sha.hexdigest()[:16]
    variant = "" if static else "-vp"
    path = cache_root() / "onnx" / f"{weights.stem}-{digest}-v{EXPORT_VERSION}{variant}.onnx"
    if not path.exists():
        from fusion_stream.infer.export import export_onnx

        log.info("exporting %s to %s", weights, path)
        export_onnx(weights, path, variable_pillars=not static)
    return path


def _open_weights(weights: Path) -> IO[bytes]:
    """The weights file, if it is a regular file of bounded size (not a device or FIFO)."""
    return open_regular(
        weights,
        lambda reason: WeightsError(str(weights), "<file>", reason),
        max_bytes=MAX_WEIGHTS_BYTES,
        missing="no such weights file (train one with `fusion-stream train`)",
    )


def config_from_metadata(metadata: Mapping[str, str], source: Path) -> ModelConfig:
    if CONFIG_KEY not in metadata:
        raise InferenceError(f"{source}: no {CONFIG_KEY} metadata; export it again with `fusion-stream export-onnx`")
    try:
        raw = json.loads(metadata[CONFIG_KEY])
    except (ValueError, RecursionError) as err:
        raise WeightsError(str(source), CONFIG_KEY, f"{CONFIG_KEY} metadata is not a JSON model config") from err
    return ModelConfig.from_dict(raw, source=str(source))


def config_from_onnx(path: Path) -> ModelConfig:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return config_from_metadata({p.key: p.value for p in model.metadata_props}, path)


class TorchBackend:
    """The network in PyTorch from a weights file (the reference; CPU or CUDA)."""

    name = "torch"

    def __init__(self, weights: Path, device: str = "cpu") -> None:
        import torch

        from fusion_stream.model.train import load_weights

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(f"torch: device {device!r} asked for, but torch sees no CUDA GPU")
        net, _ = load_weights(weights)
        self.config = net.cfg
        self.device = device
        self._torch = torch
        self._net = net.to(device)

    def run(self, inputs: Arrays) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.device) for n in INPUT_NAMES]
            out = self._net.detect(*args)
        return {n: t.cpu().numpy() for n, t in zip(OUTPUT_NAMES, out, strict=True)}


def ort_session(onnx_path: Path, device: str = "cpu", threads: int = 0) -> Any:
    """An ONNX Runtime session for ``onnx_path`` on ``device`` (``cpu``, ``cuda``: TensorRT, then
    CUDA execution providers), with ``threads`` intra-op threads that do not spin when idle (0:
    the library's default); shared by the project's network and the ONNX models of model cards."""
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError as err:
        raise BackendUnavailableError("onnxruntime: the onnxruntime package is not installed") from err
    available = ort.get_available_providers()
    wanted = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
        if not wanted:
            raise BackendUnavailableError(
                f"onnxruntime: device {device!r} asked for, but only {available} are available "
                "(install onnxruntime-gpu)"
            )
        wanted.append("CPUExecutionProvider")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # idle worker threads spin by default: on a small machine shared with the sensor
        # processes that burns the cores they need
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(onnx_path), opts, providers=wanted)
    except Exception as err:  # onnxruntime raises its own untyped errors
        raise InferenceError(f"onnxruntime could not load {onnx_path}: {err}") from err


class OnnxRuntimeBackend:
    """An exported ONNX model in ONNX Runtime (no torch needed); ``precision`` says which copy it
    is (``int8``: :mod:`fusion_stream.infer.quantize`), and an int8 one names itself so."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, device: str = "cpu", threads: int = 0, precision: str = "fp32") -> None:
        self._session = ort_session(onnx_path, device, threads)
        self.providers = self._session.get_providers()
        self.config = config_from_metadata(self._session.get_modelmeta().custom_metadata_map, onnx_path)
        self.device = device
        self.precision = precision
        pillars = next(i.shape[1] for i in self._session.get_inputs() if i.name == "lidar_pillars")
        self.variable_pillars = not isinstance(pillars, int)
        """Whether a set may be fed only its occupied LiDAR pillars (see ``preprocess.trim_pillars``)."""
        if precision != "fp32":
            self.name = f"onnxruntime {precision}"

    def run(self, inputs: Arrays) -> dict[str, np.ndarray]:
        outs = self._session.run(None, {n: np.ascontiguousarray(inputs[n]) for n in INPUT_NAMES})
        names = [o.name for o in self._session.get_outputs()]
        return dict(zip(names, outs, strict=True))


def check(weights: Path, backend: str, precision: str = "fp32") -> None:
    """What :func:`load` refuses before trying any backend (cheap: nothing is loaded): a weights
    file that is missing, not a regular file or too big (:class:`WeightsError`), an unknown backend,
    an unknown precision (:class:`ParamError` on ``precision``), int8 on a backend other than ONNX Runtime."""
    _open_weights(weights).close()
    if backend not in CHOICES:
        raise BackendUnavailableError(f"unknown backend {backend!r}; choose one of {', '.join(CHOICES)}")
    check_precision(precision)
    if precision == "int8" and backend not in ("auto", "onnxruntime"):
        raise BackendUnavailableError(f"{backend}: precision int8 runs in onnxruntime only")


def load(
    model: Path | str, backend: str = "auto", device: str = "auto", threads: int = 0, precision: str = "fp32"
) -> Backend:
    """A ready backend for a weights file (``.pt``).

    ``device``: ``cpu``, ``cuda`` / ``cuda:N``, or ``auto`` (the GPU where there is one).
    ``backend="auto"`` takes the first of TensorRT, ONNX Runtime and torch that works here.
    ``threads``: CPU threads for inference (0: the library's default, usually every core).
    ``precision``: ``fp32`` (the network as trained) or ``int8`` (its quantized copy, ONNX Runtime
    only, made and cached on first use)."""
    weights = Path(model)
    check(weights, backend, precision)
    if device == "auto":
        device = "cuda" if _cuda_available() else "cpu"
    if precision == "int8":
        return _open_int8(weights, device, threads)
    order = BACKENDS if backend == "auto" else (backend,)
    reasons = []
    for name in order:
        try:
            return _open(name, weights, device, threads)
        except BackendUnavailableError as err:
            if backend != "auto":
                raise
            reasons.append(str(err))
            log.info("backend %s skipped: %s", name, err)
    raise BackendUnavailableError("no inference backend works here: " + "; ".join(reasons))


def _open(name: str, weights: Path, device: str, threads: int) -> Backend:
    if name == "torch":
        if threads:
            import torch

            torch.set_num_threads(threads)
        return TorchBackend(weights, device)
    if name == "onnxruntime":
        return OnnxRuntimeBackend(onnx_for(weights), device, threads)
    from fusion_stream.infer.tensorrt_backend import TensorRTBackend

    if not device.startswith("cuda"):
        raise BackendUnavailableError("tensorrt: needs an NVIDIA GPU (device is cpu)")
    onnx_path = onnx_for(weights, static=True)
    return TensorRTBackend(onnx_path, config_from_onnx(onnx_path), device)


def _open_int8(weights: Path, device: str, threads: int) -> Backend:
    from fusion_stream.infer.quantize import int8_for

    float_onnx = onnx_for(weights)
    quantized = int8_for(float_onnx, config_from_onnx(float_onnx))
    return OnnxRuntimeBackend(quantized, device, threads, precision="int8")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
