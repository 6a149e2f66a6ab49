"""Model cards: a small YAML beside a model file that says how to feed it and how to read it.

Four kinds are understood:

- ``boxes``: an ONNX graph that takes one LiDAR sweep (N×F float32, zero-padded to
  ``max_points``, optionally with the count of real rows) and outputs decoded boxes, scores and
  class indices, in the frame of one of the rig's sensors (``frame``);
- ``pillars``: a PointPillars-style export that takes the sweep voxelized (``voxels``,
  ``voxel_coords``, ``voxel_num_points``), with the pre-processing named as OpenPCDet's configs
  name it (``POINT_CLOUD_RANGE``, ``VOXEL_SIZE``, ``MAX_POINTS_PER_VOXEL``,
  ``MAX_NUMBER_OF_VOXELS``) so a user copies the values; its outputs are read like ``boxes``;
- ``centerpoint``: a CenterPoint-style export (one file, or Autoware's voxel encoder and
  backbone/neck/head pair) whose heatmap, offset, height, size, rotation and velocity heads are
  decoded here (:mod:`fusion_stream.infer.centerpoint_card` reads it);
- ``fusion_stream``: the project's own network, by its weights file.

A bad card is a :class:`CardError` naming the file and the key (``inputs.points.max_points``);
an ONNX graph whose inputs or outputs differ from what its card says is refused at load with
both lists (:func:`check_onnx`). Nothing here imports ONNX Runtime or torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from fusion_stream.core import resources
from fusion_stream.core.yamlio import read_mapping
from fusion_stream.errors import WHOLE_FILE, FileKeyError, InferenceError

if TYPE_CHECKING:
    from fusion_stream.infer.centerpoint_card import CenterPointCard

KINDS = ("boxes", "pillars", "centerpoint", "fusion_stream")
"""Card kinds understood."""
BOX_LAYOUT_REQUIRED = ("x", "y", "z", "l", "w", "h", "yaw")
BOX_LAYOUT_OPTIONAL = ("vx", "vy")
MAX_POINTS_LIMIT = 10_000_000
"""More rows than any sensor gives in a sweep: a typo, or a card meant to exhaust memory."""
MAX_CLASSES = 1000
MAX_GRID_CELLS = 100_000_000
"""More voxel cells than any PointPillars/CenterPoint grid has (OpenPCDet's KITTI one: 432×496×1)."""
MAX_VOXEL_VALUES = 200_000_000
"""MAX_NUMBER_OF_VOXELS × MAX_POINTS_PER_VOXEL × fields above this is 800 MB of input: a typo."""


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


@dataclass(frozen=True)
class VoxelGrid:
    """OpenPCDet's voxelization parameters (``POINT_CLOUD_RANGE``, ``VOXEL_SIZE``, ...): points
    outside the range are dropped, each voxel keeps its first ``max_points_per_voxel`` points, and
    voxels beyond ``max_voxels`` (in order of first appearance) are dropped."""

    point_cloud_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]
    max_points_per_voxel: int
    max_voxels: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """Cells along x, y and z (OpenPCDet's ``grid_size``, rounded like it)."""
        lo, hi = self.point_cloud_range[:3], self.point_cloud_range[3:]
        nx, ny, nz = (max(1, round((hi[i] - lo[i]) / self.voxel_size[i])) for i in range(3))
        return nx, ny, nz


@dataclass(frozen=True)
class PillarsCard:
    """A ``pillars`` card: an ONNX graph fed voxels (see the module doc), outputting decoded boxes
    read exactly like a ``boxes`` card's."""

    path: Path
    onnx: Path
    classes: tuple[str, ...]
    fields: tuple[str, ...]
    grid: VoxelGrid
    coords_order: tuple[str, str, str]
    voxels: str
    voxel_coords: str
    voxel_num_points: str
    boxes: str
    layout: tuple[str, ...]
    scores: str
    labels: str
    frame: str
    score_threshold: float
    class_map: Mapping[str, str] = field(default_factory=dict)
    kind: str = "pillars"


OnnxCard: TypeAlias = "BoxesCard | PillarsCard | CenterPointCard"
Card: TypeAlias = "BoxesCard | PillarsCard | CenterPointCard | FusionStreamCard"


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
    if kind == "pillars":
        return _pillars(path, r, raw)
    if kind == "centerpoint":
        from fusion_stream.infer.centerpoint_card import parse_centerpoint  # it builds on this module

        return parse_centerpoint(path, r, raw)
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
    class_map = r.class_map(raw.get("class_map", {}), classes)
    out = _outputs(r, raw)
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
        boxes=out.boxes,
        layout=out.layout,
        scores=out.scores,
        labels=out.labels,
        frame=r.text("frame", raw.get("frame")),
        score_threshold=r.fraction("score_threshold", raw.get("score_threshold", 0.3)),
        class_map=class_map,
    )


@dataclass(frozen=True)
class _Outputs:
    boxes: str
    layout: tuple[str, ...]
    scores: str
    labels: str


def _outputs(r: _Reader, raw: Mapping[str, Any]) -> _Outputs:
    """The ``outputs`` section, the same for every kind that outputs decoded boxes."""
    outputs = r.mapping("outputs", raw.get("outputs"))
    r.only(outputs, "outputs.", ("boxes", "scores", "labels"))
    boxes = r.mapping("outputs.boxes", outputs.get("boxes"))
    r.only(boxes, "outputs.boxes.", ("name", "layout"))
    layout = r.names("outputs.boxes.layout", boxes.get("layout"))
    absent = [c for c in BOX_LAYOUT_REQUIRED if c not in layout]
    if absent:
        raise r.fail("outputs.boxes.layout", f"must name the columns {list(BOX_LAYOUT_REQUIRED)}; {absent} missing")
    heads = {}
    for head in ("scores", "labels"):
        m = r.mapping(f"outputs.{head}", outputs.get(head))
        r.only(m, f"outputs.{head}.", ("name",))
        heads[head] = r.text(f"outputs.{head}.name", m.get("name"))
    return _Outputs(r.text("outputs.boxes.name", boxes.get("name")), layout, heads["scores"], heads["labels"])


PILLARS_KEYS = (
    "kind",
    "onnx",
    "classes",
    "class_map",
    "POINT_CLOUD_RANGE",
    "VOXEL_SIZE",
    "MAX_POINTS_PER_VOXEL",
    "MAX_NUMBER_OF_VOXELS",
    "fields",
    "coords_order",
    "inputs",
    "outputs",
    "frame",
    "score_threshold",
)
PILLARS_INPUTS = ("voxels", "voxel_coords", "voxel_num_points")


def input_names(r: _Reader, raw: Mapping[str, Any], roles: tuple[str, ...]) -> dict[str, str]:
    """The ``inputs`` section of a card whose inputs are tensors named by role: role → name."""
    inputs = r.mapping("inputs", raw.get("inputs"))
    r.only(inputs, "inputs.", roles)
    names = {}
    for role in roles:
        m = r.mapping(f"inputs.{role}", inputs.get(role))
        r.only(m, f"inputs.{role}.", ("name",))
        names[role] = r.text(f"inputs.{role}.name", m.get("name"))
    return names


OPENPCDET_GRID_KEYS = ("POINT_CLOUD_RANGE", "VOXEL_SIZE", "MAX_POINTS_PER_VOXEL", "MAX_NUMBER_OF_VOXELS")
"""The voxel grid's keys as OpenPCDet's configs name them (range, size, points per voxel, voxels)."""


def voxel_grid(
    r: _Reader, raw: Mapping[str, Any], fields: tuple[str, ...], keys: tuple[str, str, str, str]
) -> VoxelGrid:
    """The voxel grid of a card, read from its ``keys`` (range, voxel size, points per voxel,
    voxels: each tool names them its own way), checked for sizes that fit in memory."""
    range_key, size_key, points_key, voxels_key = keys
    missing_xyz = [c for c in ("x", "y", "z") if c not in fields]
    if missing_xyz:
        raise r.fail("fields", f"must include x, y and z; {missing_xyz} missing")
    lo_hi = r.numbers(range_key, raw.get(range_key), 6, "[x_min, y_min, z_min, x_max, y_max, z_max]")
    if not all(a < b for a, b in zip(lo_hi[:3], lo_hi[3:], strict=True)):
        raise r.fail(range_key, f"each minimum must be below its maximum, got {list(lo_hi)}")
    size = r.numbers(size_key, raw.get(size_key), 3, "[vx, vy, vz]")
    if not all(v > 0 for v in size):
        raise r.fail(size_key, f"every size must be above 0, got {list(size)}")
    grid = VoxelGrid(
        (lo_hi[0], lo_hi[1], lo_hi[2], lo_hi[3], lo_hi[4], lo_hi[5]),
        (size[0], size[1], size[2]),
        r.whole(points_key, raw.get(points_key), 1, 10_000),
        r.whole(voxels_key, raw.get(voxels_key), 1, MAX_POINTS_LIMIT),
    )
    nx, ny, nz = grid.shape
    if nx * ny * nz > MAX_GRID_CELLS:
        raise r.fail(size_key, f"a grid of {nx}×{ny}×{nz} cells over {range_key} is above {MAX_GRID_CELLS}")
    if grid.max_voxels * grid.max_points_per_voxel * len(fields) > MAX_VOXEL_VALUES:
        raise r.fail(
            voxels_key,
            f"{grid.max_voxels} voxels × {grid.max_points_per_voxel} points × {len(fields)} fields is above "
            f"{MAX_VOXEL_VALUES} values",
        )
    return grid


def _pillars(path: Path, r: _Reader, raw: Mapping[str, Any]) -> PillarsCard:
    r.only(raw, "", PILLARS_KEYS)
    classes = r.names("classes", raw.get("classes"))
    fields = r.names("fields", raw.get("fields"))
    grid = voxel_grid(r, raw, fields, OPENPCDET_GRID_KEYS)
    order = r.names("coords_order", raw.get("coords_order", ["z", "y", "x"]))
    if sorted(order) != ["x", "y", "z"]:
        raise r.fail("coords_order", f"must order x, y and z (OpenPCDet's is [z, y, x]), got {list(order)}")
    names = input_names(r, raw, PILLARS_INPUTS)
    out = _outputs(r, raw)
    return PillarsCard(
        path=path,
        onnx=resources.resolve(r.text("onnx", raw.get("onnx")), path.parent),
        classes=classes,
        fields=fields,
        grid=grid,
        coords_order=(order[0], order[1], order[2]),
        voxels=names["voxels"],
        voxel_coords=names["voxel_coords"],
        voxel_num_points=names["voxel_num_points"],
        boxes=out.boxes,
        layout=out.layout,
        scores=out.scores,
        labels=out.labels,
        frame=r.text("frame", raw.get("frame")),
        score_threshold=r.fraction("score_threshold", raw.get("score_threshold", 0.3)),
        class_map=r.class_map(raw.get("class_map", {}), classes),
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

    def numbers(self, key: str, raw: Any, count: int, form: str) -> tuple[float, ...]:
        if raw is None:
            raise self.fail(key, "missing")
        ok = isinstance(raw, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
        if not ok or len(raw) != count or not all(math.isfinite(v) for v in raw):
            raise self.fail(key, f"must be {count} finite numbers {form}, got {raw!r}")
        return tuple(float(v) for v in raw)

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


def check_onnx(card: OnnxCard) -> dict[str, TensorInfo]:
    """The ONNX graph's inputs and outputs by name, after checking them against the card: the
    same inputs (every one the graph has must be fed), the card's outputs present, and the shapes
    that are static agreeing with the card (``fields``, ``max_points``, the voxel limits, ``layout``)."""
    from fusion_stream.infer.centerpoint_card import CenterPointCard, check_centerpoint_onnx

    if isinstance(card, CenterPointCard):
        return check_centerpoint_onnx(card)
    where = str(card.path)
    inputs, outputs = onnx_io(card.onnx, where)
    found_in = [t.name for t in inputs]
    if isinstance(card, PillarsCard):
        expected_in = [card.voxels, card.voxel_coords, card.voxel_num_points]
    else:
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
    if isinstance(card, PillarsCard):
        _check_voxel_shapes(card, tensors)
    else:
        _check_points_shape(card, tensors[card.points.name].shape)
    cols = tensors[card.boxes].shape
    if not cols or cols[-1] not in (None, len(card.layout)):
        raise CardError(
            where,
            "outputs.boxes.layout",
            f"{card.onnx.name}'s {card.boxes} has shape {cols}; the layout has {len(card.layout)} columns",
        )
    return tensors


def _check_points_shape(card: BoxesCard, pts: tuple[int | None, ...]) -> None:
    where = str(card.path)
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


def _check_voxel_shapes(card: PillarsCard, tensors: Mapping[str, TensorInfo]) -> None:
    """V×P×F voxels, V×4 coordinates, V counts; every static size as the card says."""
    where, g = str(card.path), card.grid
    want = {
        card.voxels: (
            (g.max_voxels, "MAX_NUMBER_OF_VOXELS"),
            (g.max_points_per_voxel, "MAX_POINTS_PER_VOXEL"),
            (len(card.fields), "fields"),
        ),
        card.voxel_coords: ((g.max_voxels, "MAX_NUMBER_OF_VOXELS"), (4, "coords_order")),
        card.voxel_num_points: ((g.max_voxels, "MAX_NUMBER_OF_VOXELS"),),
    }
    for name, dims in want.items():
        shape = tensors[name].shape
        if len(shape) != len(dims):
            raise CardError(where, "inputs", f"{card.onnx.name}'s {name} has shape {shape}, not {len(dims)}-D")
        for got, (size, key) in zip(shape, dims, strict=True):
            if got not in (None, size):
                raise CardError(
                    where, key, f"{card.onnx.name}'s {name} has shape {shape}; the card says {size}, not {got}"
                )
