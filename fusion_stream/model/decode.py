"""The network's top-K outputs → ``Box3D`` detections above a score threshold."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fusion_stream.model.config import ModelConfig
from fusion_stream.msgs import Box3D

DEFAULT_THRESHOLD = 0.3


def to_boxes(
    outputs: Mapping[str, np.ndarray], cfg: ModelConfig, index: int = 0, threshold: float = DEFAULT_THRESHOLD
) -> tuple[Box3D, ...]:
    """Detections of batch item ``index``, best first. Each carries its class score, the siren
    attribute (bool) and its probability."""
    boxes = np.asarray(outputs["boxes"][index], np.float64)
    scores = np.asarray(outputs["scores"][index], np.float64)
    labels = np.asarray(outputs["labels"][index])
    siren = np.asarray(outputs["siren"][index], np.float64)
    out = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < threshold:
            break
        x, y, z, length, width, height, yaw, vx, vy = (float(v) for v in boxes[i])
        out.append(
            Box3D(
                center=(x, y, z),
                size=(length, width, height),
                yaw=yaw,
                velocity=(vx, vy),
                label=cfg.classes[int(labels[i])],
                score=float(scores[i]),
                attributes={"siren": bool(siren[i] > 0.5), "siren_probability": round(float(siren[i]), 4)},
            )
        )
    return tuple(out)
