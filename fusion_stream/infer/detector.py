"""What every model the graph can run looks like: one synced set in, detections out.

The project's own network (:class:`~fusion_stream.infer.pipeline.FusionPipeline`), a user's ONNX
detector described by a model card, and the model-free LiDAR baseline all keep this contract, so
the fusion node, ``eval``, ``eval-sim`` and the benchmarks run any of them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fusion_stream.core import msgs


@dataclass(frozen=True)
class StageTimes:
    """How long one frame spent in pre-processing, inference and decoding (ms)."""

    preprocess_ms: float
    inference_ms: float
    decode_ms: float

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.decode_ms


class Detector(Protocol):
    """A model ready to run on synced sets; boxes come back in the rig frame (``frame_id``)."""

    name: str
    """What runs, for logs and reports (``"onnxruntime (cpu)"``, ``"cluster"``)."""

    def warm_up(self) -> float:
        """Compile, allocate and run once on an empty set, before the first real one; the ms it took."""
        ...

    def present(self, frame: msgs.SyncedFrame) -> list[str]:
        """The modalities of ``frame`` this model uses (e.g. ``["lidar", "camera"]``)."""
        ...

    def process(self, frame: msgs.SyncedFrame) -> tuple[msgs.Detections, StageTimes]:
        """The detections of one synced set, stamped like it, and what each stage cost."""
        ...
