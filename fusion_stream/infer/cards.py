"""Model cards: a small YAML beside a model file that says how to feed it and how to read it.

Two kinds are understood:

- ``boxes``: an ONNX graph that takes one LiDAR sweep (N×F float32, zero-padded to
  ``max_points``, optionally with the count of real rows) and outputs decoded boxes, scores and
  class indices, in the frame of one of the rig's sensors (``frame``);
- ``fusion_stream``: the project's own network, by its weights file.

A bad card is a :class:`CardError` naming the file and the key (``inputs.points.max_points``);
an ONNX graph whose inputs or outputs differ from what its card says is refused at load with
both lists (:func:`check_onnx`). Nothing here imports ONNX Runtime or torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion_stream.core import resources
from fusion_stream.core.yamlio import read_mapping
from fusion_stream.errors import WHOLE_FILE, FileKeyError, InferenceError

KINDS = ("boxes", "fusion_stream")
"""Card kinds understood (``pillars`` and ``centerpoint`` are not yet)."""
BOX_LAYOUT_REQUIRED = ("x", "y", "z", "l", "w", "h", "yaw")
BOX_LAYOUT_OPTIONAL = ("vx", "vy")
MAX_POINTS_LIMIT = 10_000_000
"""More rows than any sensor gives in a sweep: a typo, or a card meant to exhaust memory."""
MAX_CLASSES = 1000


class CardError(FileKeyError, InferenceError):
    """A model card is invalid, or its model does not match it: ``path`` and ``key`` say where.
    A FileKeyError (so a command exits 2 naming both) and an InferenceError (the model cannot load).
    ``expected`` and ``found`` list the names the card gives and the model has, for a mismatch."""

    def __init__(
        self, path: str, key: str, reason: str, *, expected: Sequence[str] = (), found: Sequence[str] = ()
    ) -> None:
        super().__init__(path, key, reason)
        self.expected = tuple(expected)
        self.found = tuple(found)


@dataclass(frozen=True)
class PointsInput:
    name: str
    fields: tuple[str, ...]
    max_points: int


@dataclass(frozen=True)
class BoxesCard:
    """A ``boxes`` card: an ONNX graph outputting decoded boxes (see the module doc)."""

    path: Path
    onnx: Path
    classes: tuple[str, ...]
    points: PointsInput
    num_points: str | None
    boxes: str
    layout: tuple[str, ...]
    scores: str
    labels: str
    frame: str
    score_threshold: float
    class_map: Mapping[str, str] = field(default_factory=dict)
    kind: str = "boxes"


@dataclass(frozen=True)
class FusionStreamCard:
    """The project's own network, by its weights file (``.pt``)."""

    path: Path
    weights: Path
    kind: str = "fusion_stream"


Card = BoxesCard | FusionStreamCard


def load_card(path: Path | str) -> Card:
    """Read and validate a model card (nothing of the model is loaded; see :func:`check_onnx`)."""
    path = Path(path)
    where = str(path)
    raw = read_mapping(
        path,
        lambda reason: CardError(where, WHOLE_FILE, reason),
        missing="no such model card",
        expected="with kind and the model's file",
    )
    r = _Reader(where, raw)
    kind = r.text("kind", raw.get("kind"))
    if kind not in KINDS:
        raise CardError(where, "kind", f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    folder = path.parent  # the card's files are found beside it first (then as any relative path)
    if kind == "fusion_stream":
        r.only(raw, "", ("kind", "weights"))
        return FusionStreamCard(path, resources.resolve(r.text("weights", raw.get("weights")), folder))
    r.only(raw, "", ("kind", "onnx", "classes", "class_map", "inputs", "outputs", "frame", "score_threshold"))
    classes = r.names("classes", raw.get("classes"))
    inputs = r.mapping("inputs", raw.get("inputs"))
    r.only(inputs, "inputs.", ("points", "num_points"))
    points = r.mapping("inputs.points", inputs.get("points"))
    r.only(points, "inputs.points.", ("name", "fields", "max_points"))
    fields = r.names("inputs.points.fields", points.get("fields"))
    missing_xyz = [c for c in ("x", "y", "z") if c not in fields]
    if missing_xyz:
        raise CardError(where, "inputs.points.fields", f"must include x, y and z; {missing_xyz} missing")
    num_points = None
    if inputs.get("num_points") is not None:
        num = r.mapping("inputs.num_points", inputs.get("num_points"))
        r.only(num, "inputs.num_points.", ("name",))
        num_points = r.text("inputs.num_points.name", num.get("name"))
    outputs = r.mapping("outputs", raw.get("outputs"))
    r.only(outputs, "outputs.", ("boxes", "scores", "labels"))
    boxes = r.mapping("outputs.boxes", outputs.get("boxes"))
    r.only(boxes, "outputs.boxes.", ("name", "layout"))
    layout = r.names("outputs.boxes.layout", boxes.get("layout"))
    absent = [c for c in BOX_LAYOUT_REQUIRED if c not in layout]
    if absent:
        raise CardError(
            where, "outputs.boxes.layout", f"must name the columns {list(BOX_LAYOUT_REQUIRED)}; {absent} missing"
        )
    heads = {}
    for head in ("scores", "labels"):
        m = r.mapping(f"outputs.{head}", outputs.get(head))
        r.only(m, f"outputs.{head}.", ("name",))
        heads[head] = r.text(f"outputs.{head}.name", m.get("name"))
    class_map = r.class_map(raw.get("class_map", {}), classes)
    return BoxesCard(
        path=path,
        onnx=resources.resolve(r.text("onnx", raw.get("onnx")), folder),
        classes=classes,
        points=PointsInput(
            r.text("inputs.points.name", points.get("name")),
            fields,
            r.whole("inputs.points.max_points", points.get("max_points"), 1, MAX_POINTS_LIMIT),
        ),
        num_points=num_points,
        boxes=r.text("outputs.boxes.name", boxes.get("name")),
        layout=layout,
        scores=heads["scores"],
        labels=heads["labels"],
        frame=r.text("frame", raw.get("frame")),
        score_threshold=r.fraction("score_threshold", raw.get("score_threshold", 0.3)),
        class_map=class_map,
    )


class _Reader:
    """Typed reads of a card's values, each failing with a CardError naming the file and key."""

    def __init__(self, path: str, raw: Mapping[str, Any]) -> None:
        self.path = path

    def fail(self, key: str, reason: str) -> CardError:
        return CardError(self.path, key, reason)

    def only(self, raw: Mapping[str, Any], prefix: str, known: Sequence[str]) -> None:
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            raise self.fail(f"{prefix}{unknown[0]}", f"unknown key; known here: {', '.join(known)}")

    def mapping(self, key: str, raw: Any) -> Mapping[str, Any]:
        if raw is None:
            raise self.fail(key, "missing")
        if not isinstance(raw, Mapping):
            raise self.fail(key, f"must be a mapping, got {type(raw).__name__}")
        return raw

    def text(self, key: str, raw: Any) -> str:
        if raw is None:
            raise self.fail(key, "missing")
        if not isinstance(raw, str) or not raw.strip():
            raise self.fail(key, f"must be a non-empty string, got {type(raw).__name__}")
        return raw

    def names(self, key: str, raw: Any) -> tuple[str, ...]:
        if raw is None:
            raise self.fail(key, "missing")
        if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v for v in raw):
            raise self.fail(key, "must be a non-empty list of names")
        if len(raw) > MAX_CLASSES:
            raise self.fail(key, f"more than {MAX_CLASSES} names")
        if len(set(raw)) != len(raw):
            raise self.fail(key, "names a value twice")
        return tuple(raw)

    def whole(self, key: str, raw: Any, lo: int, hi: int) -> int:
        if raw is None:
            raise self.fail(key, "missing")
        if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
            raise self.fail(key, f"must be a whole number in [{lo}, {hi}], got {raw!r}")
        return raw

    def fraction(self, key: str, raw: Any) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0.0 <= raw <= 1.0:
            raise self.fail(key, f"must be a number in [0, 1], got {raw!r}")
        return float(raw)

    def class_map(self, raw: Any, classes: tuple[str, ...]) -> dict[str, str]:
        if not isinstance(raw, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            raise self.fail("class_map", "must map the model's class names to ours ({Car: car})")
        stray = sorted(k for k in raw if k not in classes)
        if stray:
            raise self.fail(f"class_map.{stray[0]}", f"not one of the card's classes {list(classes)}")
        return dict(raw)


# --------------------------------------------------------------------------- the model against its card


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: its name, element type and shape (None: a dynamic dimension)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]


def onnx_io(path: Path, card_path: str) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The graph inputs (initializers excluded) and outputs of an ONNX file."""
    import onnx

    if not path.is_file():
        raise CardError(card_path, "onnx", f"no such ONNX file {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises protobuf's DecodeError and others for a damaged file
        raise CardError(card_path, "onnx", f"{path} is not an ONNX model ({type(err).__name__})") from err

    def info(v: Any) -> TensorInfo:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        return TensorInfo(v.name, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, dims)

    initializers = {i.name for i in model.graph.initializer}
    inputs = [info(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [info(v) for v in model.graph.output]


def check_onnx(card: BoxesCard) -> dict[str, TensorInfo]:
    """The ONNX graph's inputs and outputs by name, after checking them against the card: the
    same inputs (every one the graph has must be fed), the card's outputs present, and the shapes
    that are static agreeing with ``fields``, ``max_points`` and ``layout``."""
    where = str(card.path)
    inputs, outputs = onnx_io(card.onnx, where)
    found_in = [t.name for t in inputs]
    expected_in = [card.points.name] + ([card.num_points] if card.num_points else [])
    if sorted(found_in) != sorted(expected_in):
        raise CardError(
            where,
            "inputs",
            f"{card.onnx.name} has inputs {found_in}; the card names {expected_in}",
            expected=expected_in,
            found=found_in,
        )
    found_out = [t.name for t in outputs]
    expected_out = [card.boxes, card.scores, card.labels]
    if not set(expected_out) <= set(found_out):
        raise CardError(
            where,
            "outputs",
            f"{card.onnx.name} has outputs {found_out}; the card names {expected_out}",
            expected=expected_out,
            found=found_out,
        )
    tensors = {t.name: t for t in inputs + outputs}
    pts = tensors[card.points.name].shape
    if len(pts) not in (2, 3) or (len(pts) == 3 and pts[0] not in (1, None)):
        raise CardError(where, "inputs.points", f"{card.onnx.name}'s {card.points.name} has shape {pts}, not N×F")
    if pts[-1] not in (None, len(card.points.fields)):
        raise CardError(
            where,
            "inputs.points.fields",
            f"{card.onnx.name} takes {pts[-1]} fields, the card lists {len(card.points.fields)}",
        )
    if pts[-2] not in (None, card.points.max_points):
        raise CardError(
            where,
            "inputs.points.max_points",
            f"{card.onnx.name} takes {pts[-2]} points, the card says {card.points.max_points}",
        )
    cols = tensors[card.boxes].shape
    if not cols or cols[-1] not in (None, len(card.layout)):
        raise CardError(
            where,
            "outputs.boxes.layout",
            f"{card.onnx.name}'s {card.boxes} has shape {cols}; the layout has {len(card.layout)} columns",
        )
    return tensors
