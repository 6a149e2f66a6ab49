"""The ``centerpoint`` model card kind: a CenterPoint-style ONNX export and how to read its heads.

The keys are the ones OpenPCDet's, mmdetection3d's and Autoware's CenterPoint configs use
(``point_cloud_range``, ``voxel_size``, ``max_points_per_voxel``, ``max_voxels``,
``out_size_factor``, heads named ``heatmap``/``hm``, ``reg``/``center``, ``height``/``center_z``,
``dim``, ``rot``, ``vel``), so a user copies values rather than translating them. Two forms:

- one file (``onnx: centerpoint.onnx``) fed voxels like a ``pillars`` card (``voxels``,
  ``voxel_coords``, ``voxel_num_points``) and outputting the heads;
- Autoware's two files (``onnx: {encoder: ..., head: ...}``): the voxel encoder takes per-pillar
  point features (``input_features``, V×P×E, E named by ``encoder_features``) and gives one
  feature vector per pillar (``pillar_features``); those are scattered to the BEV pseudo-image
  the backbone/neck/head file takes (``spatial_features``, 1×C×H×W).

Reading the card checks nothing of the model; :func:`check_centerpoint_onnx` does, at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion_stream.core import resources
from fusion_stream.infer.cards import (
    CardError,
    TensorInfo,
    VoxelGrid,
    _Reader,
    input_names,
    onnx_io,
    voxel_grid,
)

KEYS = (
    "kind",
    "onnx",
    "classes",
    "class_map",
    "point_cloud_range",
    "voxel_size",
    "max_points_per_voxel",
    "max_voxels",
    "fields",
    "encoder_features",
    "coords_order",
    "out_size_factor",
    "inputs",
    "outputs",
    "frame",
    "score_threshold",
    "top_k",
    "nms",
)
ONE_FILE_INPUTS = ("voxels", "voxel_coords", "voxel_num_points")
TWO_FILE_INPUTS = ("input_features", "pillar_features", "spatial_features")
HEADS = ("heatmap", "reg", "height", "dim", "rot", "vel")
HEAD_ALIASES = {"hm": "heatmap", "center": "reg", "center_z": "height"}
"""OpenPCDet's head names for mmdetection3d's and Autoware's."""
HEAD_CHANNELS = {"reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
DERIVED_FEATURES = ("cluster_x", "cluster_y", "cluster_z", "center_x", "center_y", "center_z")
"""Per-point encoder features computed from its pillar: the offset from the mean of the pillar's
points (``cluster_*``) and from the pillar's centre (``center_*``), as PointPillars' encoder has."""
NMS_TYPES = ("circle", "iou", "none")
MAX_TOP_K = 100_000


@dataclass(frozen=True)
class Nms:
    """``circle``: a box whose centre is within ``radius`` metres of a better one's is dropped;
    ``iou``: one whose rotated bird's-eye-view IoU with a better one is above ``iou_threshold``;
    ``none``. ``per_class``: only boxes of the same class suppress each other. At most
    ``post_max_size`` boxes are kept."""

    type: str = "circle"
    radius: float = 0.5
    iou_threshold: float = 0.2
    per_class: bool = True
    post_max_size: int = 500


@dataclass(frozen=True)
class Decoding:
    """What turns the heads into boxes (everything of the card :func:`decode_heads` needs)."""

    grid: VoxelGrid
    out_size_factor: int
    sigmoid: bool = True
    dim_log: bool = True
    dim_order: tuple[str, str, str] = ("l", "w", "h")
    rot_order: tuple[str, str] = ("sin", "cos")
    score_threshold: float = 0.1
    top_k: int = 500
    nms: Nms = field(default_factory=Nms)

    @property
    def bev_shape(self) -> tuple[int, int]:
        """The heads' rows and columns (y, x): the grid over ``out_size_factor``."""
        nx, ny, _ = self.grid.shape
        return ny // self.out_size_factor, nx // self.out_size_factor


@dataclass(frozen=True)
class CenterPointCard:
    """A ``centerpoint`` card (see the module doc). ``onnx`` is the single file or the head file;
    ``encoder`` the voxel encoder of a two-file export. ``inputs`` and ``heads`` map roles (the
    names above) to the graphs' tensor names."""

    path: Path
    onnx: Path
    encoder: Path | None
    classes: tuple[str, ...]
    fields: tuple[str, ...]
    encoder_features: tuple[str, ...]
    coords_order: tuple[str, str, str]
    inputs: Mapping[str, str]
    heads: Mapping[str, str]
    decoding: Decoding
    frame: str
    score_threshold: float
    class_map: Mapping[str, str] = field(default_factory=dict)
    kind: str = "centerpoint"

    @property
    def grid(self) -> VoxelGrid:
        return self.decoding.grid


def parse_centerpoint(path: Path, r: _Reader, raw: Mapping[str, Any]) -> CenterPointCard:
    """A ``centerpoint`` card from its YAML mapping; every mistake a CardError naming its key."""
    r.only(raw, "", KEYS)
    folder = path.parent
    onnx_raw = raw.get("onnx")
    encoder: Path | None = None
    if isinstance(onnx_raw, Mapping):
        r.only(onnx_raw, "onnx.", ("encoder", "head"))
        encoder = resources.resolve(r.text("onnx.encoder", onnx_raw.get("encoder")), folder)
        onnx = resources.resolve(r.text("onnx.head", onnx_raw.get("head")), folder)
    else:
        onnx = resources.resolve(r.text("onnx", onnx_raw), folder)
    classes = r.names("classes", raw.get("classes"))
    fields = r.names("fields", raw.get("fields"))
    grid = voxel_grid(r, raw, fields, ("point_cloud_range", "voxel_size", "max_points_per_voxel", "max_voxels"))
    factor = r.whole("out_size_factor", raw.get("out_size_factor"), 1, 64)
    nx, ny, _ = grid.shape
    if nx % factor or ny % factor:
        raise r.fail("out_size_factor", f"the {nx}×{ny} grid does not divide by {factor}")
    order = r.names("coords_order", raw.get("coords_order", ["z", "y", "x"]))
    if sorted(order) != ["x", "y", "z"]:
        raise r.fail("coords_order", f"must order x, y and z (OpenPCDet's is [z, y, x]), got {list(order)}")
    inputs = _inputs(r, raw, two_files=encoder is not None)
    if encoder is None:
        if "encoder_features" in raw:
            raise r.fail("encoder_features", "only a two-file card (onnx: {encoder, head}) has a voxel encoder")
        encoder_features: tuple[str, ...] = ()
    else:
        if grid.shape[2] != 1:
            raise r.fail("voxel_size", f"a two-file card's voxels are pillars: one cell in z, not {grid.shape[2]}")
        default = [*fields, "cluster_x", "cluster_y", "cluster_z", "center_x", "center_y"]  # Autoware's 9
        encoder_features = r.names("encoder_features", raw.get("encoder_features", default))
        stray = [f for f in encoder_features if f not in fields and f not in DERIVED_FEATURES]
        if stray:
            raise r.fail(
                "encoder_features",
                f"{stray[0]!r} is neither one of fields {list(fields)} nor one of {list(DERIVED_FEATURES)}",
            )
    heads, head_options = _heads(r, raw)
    threshold = r.fraction("score_threshold", raw.get("score_threshold", 0.1))
    decoding = Decoding(
        grid=grid,
        out_size_factor=factor,
        score_threshold=threshold,
        top_k=r.whole("top_k", raw.get("top_k", 500), 1, MAX_TOP_K),
        nms=_nms(r, raw.get("nms", {"type": "circle"})),
        **head_options,
    )
    return CenterPointCard(
        path=path,
        onnx=onnx,
        encoder=encoder,
        classes=classes,
        fields=fields,
        encoder_features=encoder_features,
        coords_order=(order[0], order[1], order[2]),
        inputs=inputs,
        heads=heads,
        decoding=decoding,
        frame=r.text("frame", raw.get("frame")),
        score_threshold=threshold,
        class_map=r.class_map(raw.get("class_map", {}), classes),
    )


def _inputs(r: _Reader, raw: Mapping[str, Any], *, two_files: bool) -> dict[str, str]:
    return input_names(r, raw, TWO_FILE_INPUTS if two_files else ONE_FILE_INPUTS)


def _heads(r: _Reader, raw: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """The head tensors' names by role, and the options of their decoding."""
    outputs = r.mapping("outputs", raw.get("outputs"))
    r.only(outputs, "outputs.", (*HEADS, *HEAD_ALIASES))
    names: dict[str, str] = {}
    options: dict[str, Any] = {}
    for key, value in outputs.items():
        role = HEAD_ALIASES.get(key, key)
        if role in names:
            raise r.fail(f"outputs.{key}", f"the {role} head is named twice")
        allowed = {"heatmap": ("name", "sigmoid"), "dim": ("name", "log", "order"), "rot": ("name", "order")}
        m = r.mapping(f"outputs.{key}", value)
        r.only(m, f"outputs.{key}.", allowed.get(role, ("name",)))
        names[role] = r.text(f"outputs.{key}.name", m.get("name"))
        if role == "heatmap":
            options["sigmoid"] = _flag(r, f"outputs.{key}.sigmoid", m.get("sigmoid", True))
        elif role == "dim":
            options["dim_log"] = _flag(r, f"outputs.{key}.log", m.get("log", True))
            dim_order = r.names(f"outputs.{key}.order", m.get("order", ["l", "w", "h"]))
            if sorted(dim_order) != ["h", "l", "w"]:
                raise r.fail(f"outputs.{key}.order", f"must order l, w and h, got {list(dim_order)}")
            options["dim_order"] = dim_order
        elif role == "rot":
            rot_order = r.names(f"outputs.{key}.order", m.get("order", ["sin", "cos"]))
            if sorted(rot_order) != ["cos", "sin"]:
                raise r.fail(f"outputs.{key}.order", f"must order sin and cos, got {list(rot_order)}")
            options["rot_order"] = rot_order
    absent = [h for h in HEADS if h != "vel" and h not in names]
    if absent:
        raise r.fail(f"outputs.{absent[0]}", "missing (the heads are heatmap, reg, height, dim, rot and vel)")
    return names, options


def _flag(r: _Reader, key: str, raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise r.fail(key, f"must be true or false, got {raw!r}")
    return raw


def _nms(r: _Reader, raw: Any) -> Nms:
    m = r.mapping("nms", raw)
    r.only(m, "nms.", ("type", "radius", "iou_threshold", "per_class", "post_max_size"))
    kind = r.text("nms.type", m.get("type"))
    if kind not in NMS_TYPES:
        raise r.fail("nms.type", f"unknown type {kind!r}; known: {', '.join(NMS_TYPES)}")
    radius = m.get("radius", Nms.radius)
    if isinstance(radius, bool) or not isinstance(radius, int | float) or not 0 < radius <= 100:
        raise r.fail("nms.radius", f"must be metres in (0, 100], got {radius!r}")
    return Nms(
        type=kind,
        radius=float(radius),
        iou_threshold=r.fraction("nms.iou_threshold", m.get("iou_threshold", Nms.iou_threshold)),
        per_class=_flag(r, "nms.per_class", m.get("per_class", True)),
        post_max_size=r.whole("nms.post_max_size", m.get("post_max_size", Nms.post_max_size), 1, MAX_TOP_K),
    )


# --------------------------------------------------------------------------- the model against its card


def check_centerpoint_onnx(card: CenterPointCard) -> dict[str, TensorInfo]:
    """The graphs' inputs and outputs by name (both files for a two-file card), after checking
    them against the card: the same inputs, the card's heads present, and the static sizes
    agreeing with it (voxel limits, features, head channels, the BEV grid over out_size_factor)."""
    where = str(card.path)
    tensors: dict[str, TensorInfo] = {}
    if card.encoder is not None:
        enc_in, enc_out = onnx_io(card.encoder, where)
        _same_inputs(card, card.encoder, "onnx.encoder", enc_in, [card.inputs["input_features"]])
        _has_outputs(card, card.encoder, "onnx.encoder", enc_out, [card.inputs["pillar_features"]])
        tensors.update({t.name: t for t in enc_in + enc_out})
        expected_in = [card.inputs["spatial_features"]]
    else:
        expected_in = [card.inputs[role] for role in ONE_FILE_INPUTS]
    head_in, head_out = onnx_io(card.onnx, where)
    _same_inputs(card, card.onnx, "inputs", head_in, expected_in)
    _has_outputs(card, card.onnx, "outputs", head_out, list(card.heads.values()))
    tensors.update({t.name: t for t in head_in + head_out})
    _check_input_shapes(card, tensors)
    _check_head_shapes(card, tensors)
    return tensors


def _same_inputs(card: CenterPointCard, file: Path, key: str, found: list[TensorInfo], expected: list[str]) -> None:
    names = [t.name for t in found]
    if sorted(names) != sorted(expected):
        raise CardError(
            str(card.path),
            key,
            f"{file.name} has inputs {names}; the card names {expected}",
            expected=expected,
            found=names,
        )


def _has_outputs(card: CenterPointCard, file: Path, key: str, found: list[TensorInfo], expected: list[str]) -> None:
    names = [t.name for t in found]
    if not set(expected) <= set(names):
        raise CardError(
            str(card.path),
            key,
            f"{file.name} has outputs {names}; the card names {expected}",
            expected=expected,
            found=names,
        )


def _check_dims(
    card: CenterPointCard, name: str, shape: tuple[int | None, ...], want: list[tuple[int, str]], key: str
) -> None:
    """``shape`` (a leading batch of 1 allowed) against (size, key) per axis; None is dynamic.
    ``key`` is the card's key named when the rank differs."""
    where = str(card.path)
    if len(shape) == len(want) + 1 and shape[0] in (1, None):
        shape = shape[1:]
    if len(shape) != len(want):
        raise CardError(where, key, f"{name} has shape {shape}, not {len(want)}-D")
    for got, (size, size_key) in zip(shape, want, strict=True):
        if got not in (None, size):
            raise CardError(where, size_key, f"{name} has shape {shape}; the card says {size}, not {got}")


def _check_input_shapes(card: CenterPointCard, tensors: Mapping[str, TensorInfo]) -> None:
    g, i = card.grid, card.inputs
    voxels, points = (g.max_voxels, "max_voxels"), (g.max_points_per_voxel, "max_points_per_voxel")
    if card.encoder is None:
        fields = (len(card.fields), "fields")
        _check_dims(card, i["voxels"], tensors[i["voxels"]].shape, [voxels, points, fields], "inputs.voxels")
        coords = [voxels, (4, "coords_order")]
        _check_dims(card, i["voxel_coords"], tensors[i["voxel_coords"]].shape, coords, "inputs.voxel_coords")
        count = "inputs.voxel_num_points"
        _check_dims(card, i["voxel_num_points"], tensors[i["voxel_num_points"]].shape, [voxels], count)
        return
    features = (len(card.encoder_features), "encoder_features")
    wanted = [voxels, points, features]
    _check_dims(card, i["input_features"], tensors[i["input_features"]].shape, wanted, "inputs.input_features")
    pillar = tensors[i["pillar_features"]].shape
    if len(pillar) not in (2, 3) or pillar[0] not in (None, g.max_voxels) or pillar[-1] is None:
        raise CardError(
            str(card.path),
            "inputs.pillar_features",
            f"{i['pillar_features']} has shape {pillar}; the card wants max_voxels × [1 ×] C with C fixed",
        )
    nx, ny, _ = g.shape
    bev = [(pillar[-1], "inputs.pillar_features"), (ny, "voxel_size"), (nx, "voxel_size")]
    _check_dims(card, i["spatial_features"], tensors[i["spatial_features"]].shape, bev, "inputs.spatial_features")


def _check_head_shapes(card: CenterPointCard, tensors: Mapping[str, TensorInfo]) -> None:
    rows, cols = card.decoding.bev_shape
    bev = [(rows, "out_size_factor"), (cols, "out_size_factor")]
    for role, name in card.heads.items():
        channels = len(card.classes) if role == "heatmap" else HEAD_CHANNELS[role]
        key = "classes" if role == "heatmap" else f"outputs.{role}"
        _check_dims(card, name, tensors[name].shape, [(channels, key), *bev], f"outputs.{role}")
