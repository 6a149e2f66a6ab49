"""A ``centerpoint`` model card run as a :class:`~fusion_stream.infer.detector.Detector`.

The sweep is moved into the model's frame and voxelized like a ``pillars`` card's. A one-file
export takes the voxels; for Autoware's two files, the voxel encoder gets the pillar features
and its output is scattered to the BEV image the head file takes. The heads are decoded by the
pure :func:`~fusion_stream.infer.centerpoint_decode.decode_heads` and the boxes go back to the
rig frame like every card's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from fusion_stream.core import calib, msgs
from fusion_stream.errors import InferenceError
from fusion_stream.infer.backends import ort_session
from fusion_stream.infer.boxes_model import CardDetector, decode_boxes
from fusion_stream.infer.centerpoint_card import CenterPointCard
from fusion_stream.infer.centerpoint_decode import LAYOUT, decode_heads
from fusion_stream.infer.pillar_features import encoder_features, scatter
from fusion_stream.infer.voxelize import voxelize


class CenterPointDetector(CardDetector):
    """A ``centerpoint`` card: one file fed voxels, or an encoder and a head with a scatter between."""

    def __init__(
        self, card: CenterPointCard, rig: calib.Rig, *, device: str = "cpu", threads: int = 0, **options: Any
    ) -> None:
        super().__init__(card, rig, device=device, threads=threads, **options)
        self.centerpoint = card
        self.fields = card.fields
        self.decoding = dataclasses.replace(card.decoding, score_threshold=self.threshold)
        self._encoder = None if card.encoder is None else ort_session(card.encoder, device, threads)

    def feeds(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The head's inputs for N×F rows already in the model's frame (for two files, after the
        voxel encoder and the scatter)."""
        c = self.centerpoint
        v = voxelize(rows, c.grid, c.coords_order)
        if self._encoder is None:
            return {
                c.inputs["voxels"]: v.voxels,
                c.inputs["voxel_coords"]: v.coords.astype(self._types.get(c.inputs["voxel_coords"], np.int32)),
                c.inputs["voxel_num_points"]: v.num_points.astype(
                    self._types.get(c.inputs["voxel_num_points"], np.int32)
                ),
            }
        features = encoder_features(v, c.grid, c.fields, c.encoder_features, c.coords_order)
        try:
            (pillars,) = self._encoder.run([c.inputs["pillar_features"]], {c.inputs["input_features"]: features})
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise InferenceError(f"{c.encoder}: onnxruntime failed: {err}") from err
        return {c.inputs["spatial_features"]: scatter(pillars, v, c.grid, c.coords_order)}

    def heads(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The head tensors by role (``heatmap``, ``reg``, ...) for the graph's inputs."""
        roles = list(self.centerpoint.heads)
        try:
            out = self._session.run([self.centerpoint.heads[r] for r in roles], dict(feeds))
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise InferenceError(f"{self.centerpoint.onnx}: onnxruntime failed: {err}") from err
        return dict(zip(roles, out, strict=True))

    def run(self, feeds: Mapping[str, np.ndarray]) -> tuple[msgs.Box3D, ...]:
        c = self.centerpoint
        boxes, scores, labels = decode_heads(self.heads(feeds), self.decoding, len(c.classes))
        return decode_boxes(boxes, scores, labels, LAYOUT, c.classes, c.class_map, self.to_rig, self.threshold)
