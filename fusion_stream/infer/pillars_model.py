"""A ``pillars`` model card run as a :class:`~fusion_stream.infer.detector.Detector`.

The sweep is moved into the model's frame and cut to the card's ``fields`` like a ``boxes``
card's, then voxelized as OpenPCDet does (:func:`~fusion_stream.infer.voxelize.voxelize`) into
the graph's ``voxels``, ``voxel_coords`` and ``voxel_num_points``, zero-padded to
``MAX_NUMBER_OF_VOXELS``; the decoded boxes come back through the shared
:class:`~fusion_stream.infer.boxes_model.CardDetector`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fusion_stream.core import calib
from fusion_stream.infer.boxes_model import CardDetector
from fusion_stream.infer.cards import PillarsCard
from fusion_stream.infer.voxelize import voxelize


class PillarsDetector(CardDetector):
    """A ``pillars`` card: the sweep voxelized by the card's grid."""

    def __init__(self, card: PillarsCard, rig: calib.Rig, **options: Any) -> None:
        super().__init__(card, rig, **options)
        self.pillars = card
        self.fields = card.fields

    def feeds(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's three voxel inputs for N×F rows already in the model's frame."""
        c = self.pillars
        v = voxelize(rows, c.grid, c.coords_order)
        return {
            c.voxels: v.voxels,
            c.voxel_coords: v.coords.astype(self._types.get(c.voxel_coords, np.int32)),
            c.voxel_num_points: v.num_points.astype(self._types.get(c.voxel_num_points, np.int32)),
        }
