"""One way to name a model everywhere: a weights file, a model card, or a built-in name.

``open_detector(spec, rig, ...)`` gives a ready :class:`~fusion_stream.infer.detector.Detector`
for any of them, so the fusion node, ``eval``, ``eval-sim`` and ``bench/infer.py`` take the same
``--model``/``model:`` values:

- ``something.pt``: the project's network from its weights (``backends.load``);
- ``something.yaml``: a model card (:mod:`fusion_stream.infer.cards`);
- ``fusion_sim``, ``lidar_only``: the shipped weights; ``cluster``: the model-free LiDAR baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from fusion_stream.core import calib, resources
from fusion_stream.errors import BackendUnavailableError, InferenceError, ParamError
from fusion_stream.infer import backends
from fusion_stream.infer.artifacts import check_precision
from fusion_stream.infer.cards import BoxesCard, Card, FusionStreamCard, OnnxCard, PillarsCard, check_onnx, load_card
from fusion_stream.infer.centerpoint_card import CenterPointCard
from fusion_stream.infer.detector import Detector
from fusion_stream.model.decode import DEFAULT_THRESHOLD

SHIPPED = {"fusion_sim": "weights/fusion_sim.pt", "lidar_only": "weights/lidar_only.pt"}
"""Built-in names of the shipped weights."""
BUILT_IN = (*SHIPPED, "cluster")
SIM_RIG = "calib/sim_rig.yaml"
"""The rig the shipped weights were trained on."""
CARD_SUFFIXES = (".yaml", ".yml")


def locate(spec: str, base: Path | str | None = None) -> str:
    """A model spec as it will be opened: a built-in name as it is, a path resolved like every
    other relative path (``base``: a launch file's folder; then the working directory, then the
    shipped files)."""
    if spec in BUILT_IN:
        return spec
    return str(resources.resolve(spec, base))


def check_spec(spec: str, backend: str = "auto", precision: str = "fp32") -> Card | None:
    """What can be judged without loading the model: a weights file that is a readable regular
    file (with a known backend and precision), a card that parses (and its ONNX matching it), a
    built-in name. The card, for a card."""
    check_precision(precision)
    if spec in BUILT_IN:
        if spec in SHIPPED:
            backends.check(resources.resolve(SHIPPED[spec]), backend, precision)
        else:
            _own_network_only(spec, precision)
        return None
    path = resources.resolve(spec)
    if path.suffix in CARD_SUFFIXES:
        card = load_card(path)
        if isinstance(card, FusionStreamCard):
            backends.check(card.weights, backend, precision)
        else:
            _own_network_only(spec, precision)
            check_onnx(card)
            _card_backend(card, backend)
        return card
    backends.check(path, backend, precision)
    return None


def _own_network_only(spec: str, precision: str) -> None:
    if precision != "fp32":
        raise ParamError("precision", f"{spec}: precision {precision} applies to the project's network only")


def _card_backend(card: OnnxCard, backend: str) -> None:
    if backend not in ("auto", "onnxruntime"):
        raise BackendUnavailableError(f"{card.path}: a {card.kind} card runs in onnxruntime, not {backend}")


def open_detector(
    spec: str,
    rig: calib.Rig,
    *,
    backend: str = "auto",
    device: str = "auto",
    threads: int = 0,
    threshold: float | None = None,
    inputs: Mapping[str, str] | None = None,
    frame_id: str = "base_link",
    precision: str = "fp32",
) -> Detector:
    """A ready detector for a weights file, a model card or a built-in name (see the module doc).
    ``threshold``: None keeps the model's own (a card's ``score_threshold``, 0.3 for weights).
    ``precision``: ``int8`` runs the project's network quantized (see :func:`backends.load`)."""
    check_precision(precision)
    if spec == "cluster":
        _own_network_only(spec, precision)
        return _cluster(rig, inputs, frame_id)
    path = resources.resolve(SHIPPED.get(spec, spec))
    if path.suffix in CARD_SUFFIXES:
        card = load_card(path)
        if not isinstance(card, FusionStreamCard):
            _own_network_only(spec, precision)
        if isinstance(card, BoxesCard | CenterPointCard | PillarsCard):
            _card_backend(card, backend)
            return _card_detector(card)(
                card,
                rig,
                device=_ort_device(device),
                threads=threads,
                threshold=threshold,
                inputs=inputs,
                frame_id=frame_id,
            )
        path = card.weights
    from fusion_stream.infer.pipeline import FusionPipeline

    model = backends.load(path, backend=backend, device=device, threads=threads, precision=precision)
    return FusionPipeline(
        model, rig, threshold=DEFAULT_THRESHOLD if threshold is None else threshold, inputs=inputs, frame_id=frame_id
    )


def _card_detector(card: BoxesCard | CenterPointCard | PillarsCard) -> Callable[..., Detector]:
    """The detector class of an ONNX card's kind (imported only when a card of that kind is used)."""
    if isinstance(card, BoxesCard):
        from fusion_stream.infer.boxes_model import BoxesDetector

        return BoxesDetector
    if isinstance(card, CenterPointCard):
        from fusion_stream.infer.centerpoint_model import CenterPointDetector

        return CenterPointDetector
    from fusion_stream.infer.pillars_model import PillarsDetector

    return PillarsDetector


def _cluster(rig: calib.Rig, inputs: Mapping[str, str] | None, frame_id: str) -> Detector:
    try:
        from fusion_stream.infer.cluster import ClusterDetector  # type: ignore[import-not-found,unused-ignore]
    except ImportError as err:
        raise InferenceError("the model-free LiDAR baseline (cluster) is not part of this installation") from err
    detector: Detector = ClusterDetector(rig, frame_id=frame_id, inputs=inputs)
    return detector


def _ort_device(device: str) -> str:
    """``auto``: CUDA where ONNX Runtime has a CUDA provider, else the CPU (without importing torch)."""
    if device != "auto":
        return device
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError as err:
        raise BackendUnavailableError("onnxruntime: the onnxruntime package is not installed") from err
    return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"


def training_rig(spec: str) -> str | None:
    """The name of the rig a model was trained for, where it is known: the shipped weights (by
    name, path, or a ``fusion_stream`` card naming them) were trained on the simulated rig."""
    if spec == "cluster":
        return None
    path = resources.resolve(SHIPPED.get(spec, spec))
    if path.suffix in CARD_SUFFIXES:
        card = load_card(path)
        if not isinstance(card, FusionStreamCard):
            return None
        path = card.weights
    shipped = {resources.resolve(p).resolve() for p in SHIPPED.values()}
    if path.exists() and path.resolve() in shipped:
        return calib.load(resources.resolve(SIM_RIG)).name
    return None


def rig_warning(spec: str, rig: calib.Rig) -> str | None:
    """A sentence for the log and the report when a model runs on a rig it was not trained for."""
    trained = training_rig(spec)
    if trained is None or trained == rig.name:
        return None
    return (
        f"the model {Path(spec).name} was trained on the simulated rig {trained!r}, not on this rig "
        f"{rig.name!r}: expect few or wrong detections (bring a model trained for this rig: a model card, "
        "or --model cluster)"
    )
