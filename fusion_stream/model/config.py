"""The fusion network's fixed geometry and sizes.

Everything that decides a tensor shape lives here, so the exported ONNX graph, the TensorRT engine
and the numpy pre-processing agree. The config travels inside the weights file."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from fusion_stream.core import resources
from fusion_stream.errors import FileKeyError, FormatError, InferenceError

CLASSES: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist")
MODALITIES: tuple[str, ...] = ("lidar", "camera", "radar", "audio")
BOX_FIELDS: tuple[str, ...] = ("x", "y", "z", "l", "w", "h", "yaw", "vx", "vy")
"""Columns of the network's ``boxes`` output, in the rig frame."""
OUTPUT_NAMES: tuple[str, ...] = ("boxes", "scores", "labels", "siren", "audio_siren")
"""What ``FusionNet.detect`` returns, in order; the exported graph's output names."""

DEFAULT_WEIGHTS = resources.shipped("weights", "fusion_sim.pt")
"""The weights shipped in the repository (trained on the simulated rig)."""

MAX_WEIGHTS_BYTES = 2 << 30
"""A weights file larger than this is refused before reading (the shipped ones are ~1.3 MB)."""
MAX_GRID_CELLS = 512 * 512
"""BEV cells (16x the shipped 128 x 128): beyond, one forward pass would need tens of GB."""
_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "head_stride": (1, 8),
    "lidar_pillars": (1, 200_000),
    "lidar_points_per_pillar": (1, 128),
    "radar_pillars": (1, 20_000),
    "radar_points_per_pillar": (1, 64),
    "audio_samples": (1, 1_000_000),
    "azimuth_bins": (1, 3600),
    "audio_bands": (1, 1024),
    "width": (1, 512),
    "top_k": (1, 4096),
    "peak_window": (1, 31),
}
_CELL_M = (0.02, 10.0)
_RANGE_M = 1000.0
_LIFT_M = 50.0
_IMAGE_SIDE = 2048


class WeightsError(FileKeyError, FormatError, InferenceError):
    """A weights file (or an export's config) is damaged, or its model config is out of bounds.

    A FileKeyError, so the CLI exits 2 and names the file and key; also the FormatError and the
    InferenceError that callers of ``load_weights`` and ``backends.load`` already catch. The
    message is ``<file>: <reason>``; the reason starts with the key."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        super().__init__(path, key, reason)
        self.args = (f"{path}: {reason}",)


def _show(value: Any) -> str:
    """A bad value for a message: numbers and short strings as they are, else the type."""
    if value is None or isinstance(value, bool | int | float):
        text = repr(value)
        return text if len(text) <= 40 else f"a {len(text)}-digit number"
    if isinstance(value, str) and len(value) <= 40:
        return repr(value)
    if isinstance(value, tuple | list) and len(value) <= 4 and all(isinstance(v, int | float) for v in value):
        return repr(tuple(value))
    return f"a {type(value).__name__}"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape and inputs (grid, pillars, image size, audio, classes, modalities); saved in weights."""

    # bird's-eye-view grid (rig frame, metres); pillars are one cell, the head works at 2 cells
    x_range: tuple[float, float] = (-32.0, 32.0)
    y_range: tuple[float, float] = (-32.0, 32.0)
    cell: float = 0.5
    head_stride: int = 2
    lidar_pillars: int = 6000
    lidar_points_per_pillar: int = 10
    radar_pillars: int = 256
    radar_points_per_pillar: int = 4
    image_size: tuple[int, int] = (192, 320)
    """(height, width) the camera image is resized to."""
    lift_heights: tuple[float, ...] = (0.5, 1.2, 2.2)
    """Heights (m, rig frame) at which BEV cells are projected into the image."""
    audio_samples: int = 4800
    azimuth_bins: int = 72
    audio_bands: int = 16
    width: int = 32
    top_k: int = 64
    peak_window: int = 3
    """Decode keeps cells that are the maximum of this window (CenterPoint's NMS-free decode)."""
    class_agnostic_peaks: bool = True
    """One box per peak over all classes (else per class, which can stack a car and a truck)."""
    classes: tuple[str, ...] = CLASSES
    modalities: tuple[str, ...] = MODALITIES
    """Modalities this model was trained with; the others are always fed as absent."""

    @property
    def grid(self) -> tuple[int, int]:
        """Pillar grid (rows along x, columns along y)."""
        return (
            round((self.x_range[1] - self.x_range[0]) / self.cell),
            round((self.y_range[1] - self.y_range[0]) / self.cell),
        )

    @property
    def head_grid(self) -> tuple[int, int]:
        nx, ny = self.grid
        return nx // self.head_stride, ny // self.head_stride

    @property
    def head_cell(self) -> float:
        return self.cell * self.head_stride

    @property
    def audio_features(self) -> int:
        return self.azimuth_bins + self.audio_bands + 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "model config") -> ModelConfig:
        """The config stored in a weights file or export, checked (``source`` names the file)."""
        if not isinstance(raw, dict):
            raise WeightsError(source, "config", f"config must be a mapping of model settings, got {_show(raw)}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(raw) - names)
        if unknown:
            raise WeightsError(source, "config", f"config has unknown keys {unknown[:5]}; known: {sorted(names)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        cfg = cls(**fixed)  # type: ignore[arg-type]  # check() below verifies every field
        cfg.check(source)
        return cfg

    def check(self, source: str = "model config") -> None:
        """Every field's type and bounds: the config decides tensor sizes, so a damaged or hostile
        one (``cell: 0``, a 10^6 x 10^6 grid) must fail here, not as a ZeroDivisionError or a
        TiB allocation."""

        def bad(key: str, reason: str) -> WeightsError:
            return WeightsError(source, key, f"{key} {_show(getattr(self, key))}: {reason}")

        for key, (lo, hi) in _INT_BOUNDS.items():
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise bad(key, f"must be a whole number in [{lo}, {hi}]")
        if self.peak_window % 2 == 0:
            raise bad("peak_window", "must be odd (a window centred on the cell)")
        if not _is_number(self.cell) or not _CELL_M[0] <= self.cell <= _CELL_M[1]:
            raise bad("cell", f"must be a cell size in metres in [{_CELL_M[0]}, {_CELL_M[1]}]")
        for key in ("x_range", "y_range"):
            r = getattr(self, key)
            if (
                not isinstance(r, tuple)
                or len(r) != 2
                or not all(_is_number(v) and abs(v) <= _RANGE_M for v in r)
                or not r[0] < r[1]
            ):
                raise bad(key, f"must be [low, high] metres, low < high, within ±{_RANGE_M:g}")
        if not isinstance(self.class_agnostic_peaks, bool):
            raise bad("class_agnostic_peaks", "must be true or false")
        size = self.image_size
        if not (isinstance(size, tuple) and len(size) == 2 and all(type(v) is int for v in size)):
            raise bad("image_size", "must be (height, width) in pixels")
        h, w = size
        if h % 16 or w % 16 or not 0 < h <= _IMAGE_SIDE or not 0 < w <= _IMAGE_SIDE:
            raise WeightsError(
                source,
                "image_size",
                f"image_size {h}x{w}: height and width must be positive multiples of 16 up to {_IMAGE_SIDE}",
            )
        lifts = self.lift_heights
        if not (
            isinstance(lifts, tuple)
            and 1 <= len(lifts) <= 16
            and all(_is_number(v) and abs(v) <= _LIFT_M for v in lifts)
        ):
            raise bad("lift_heights", f"must be 1 to 16 heights in metres within ±{_LIFT_M:g}")
        for key, known in (("classes", None), ("modalities", MODALITIES)):
            names = getattr(self, key)
            if not (
                isinstance(names, tuple)
                and 1 <= len(names) <= 64
                and all(isinstance(n, str) and 0 < len(n) <= 64 for n in names)
                and len(set(names)) == len(names)
            ):
                raise bad(key, "must be 1 to 64 distinct names")
            if known is not None and not set(names) <= set(known):
                raise WeightsError(
                    source, key, f"unknown modalities {sorted(set(names) - set(known))}; known: {list(known)}"
                )
        nx, ny = self.grid
        if nx * ny > MAX_GRID_CELLS:
            raise WeightsError(
                source, "cell", f"cell {self.cell:g}: grid {nx}x{ny} has more than {MAX_GRID_CELLS} cells"
            )
        if (
            nx < 2 * self.head_stride
            or ny < 2 * self.head_stride
            or nx % (2 * self.head_stride)
            or ny % (2 * self.head_stride)
        ):
            raise WeightsError(source, "cell", f"grid {nx}x{ny} must divide by {2 * self.head_stride}")
        hx, hy = self.head_grid
        if self.top_k > hx * hy:
            raise bad("top_k", f"must be at most the {hx * hy} cells of the head grid")
