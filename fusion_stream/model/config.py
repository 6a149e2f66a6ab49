"""The fusion network's fixed geometry and sizes.

Everything that decides a tensor shape lives here, so the exported ONNX graph, the TensorRT engine
and the numpy pre-processing agree. The config travels inside the weights file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_stream.errors import FormatError

CLASSES: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist")
MODALITIES: tuple[str, ...] = ("lidar", "camera", "radar", "audio")
BOX_FIELDS: tuple[str, ...] = ("x", "y", "z", "l", "w", "h", "yaw", "vx", "vy")
"""Columns of the network's ``boxes`` output, in the rig frame."""
OUTPUT_NAMES: tuple[str, ...] = ("boxes", "scores", "labels", "siren", "audio_siren")
"""What ``FusionNet.detect`` returns, in order; the exported graph's output names."""

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "fusion_sim.pt"
"""The weights shipped in the repository (trained on the simulated rig)."""


@dataclass(frozen=True)
class ModelConfig:
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
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise FormatError(f"model config has unknown keys {unknown}; known: {sorted(names)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        cfg = cls(**fixed)  # type: ignore[arg-type]
        cfg.check()
        return cfg

    def check(self) -> None:
        nx, ny = self.grid
        if nx % (2 * self.head_stride) or ny % (2 * self.head_stride):
            raise FormatError(f"grid {nx}x{ny} must divide by {2 * self.head_stride}")
        h, w = self.image_size
        if h % 16 or w % 16 or h <= 0 or w <= 0:
            raise FormatError(f"image_size {h}x{w}: height and width must be positive multiples of 16")
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad:
            raise FormatError(f"unknown modalities {bad}; known: {list(MODALITIES)}")
