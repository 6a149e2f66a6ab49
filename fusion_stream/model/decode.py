"""The network's top-K outputs → ``Box3D`` detections above a score threshold."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from fusion_stream.core.msgs import Box3D
from fusion_stream.model.config import ModelConfig

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


SIREN_CLASSES = ("car", "truck")


def assign_siren(
    boxes: tuple[Box3D, ...],
    audio_features: np.ndarray,
    siren_probability: float,
    array_xy: tuple[float, float],
    azimuth_bins: int,
    threshold: float = 0.5,
) -> tuple[Box3D, ...]:
    """Give the siren attribute to the car or truck the siren is heard from.

    When the audio branch hears a siren (``siren_probability`` ≥ ``threshold``), the detection
    whose direction from the microphone array has the strongest SRP-PHAT response gets
    ``siren=True``; every other box ``siren=False``. (The head's per-box siren output does not
    separate emergency vehicles from their neighbours yet, so the sound's direction decides.)"""
    srp = np.asarray(audio_features[:azimuth_bins], np.float64)
    best = -1
    if siren_probability >= threshold:
        responses = [
            srp[
                round(
                    math.degrees(math.atan2(b.center[1] - array_xy[1], b.center[0] - array_xy[0])) * azimuth_bins / 360
                )
                % azimuth_bins
            ]
            if b.label in SIREN_CLASSES
            else -1.0
            for b in boxes
        ]
        if responses and max(responses) >= 0:
            best = int(np.argmax(responses))
    out = []
    for i, b in enumerate(boxes):
        attrs = dict(b.attributes)
        attrs["siren"] = i == best
        attrs["siren_probability"] = round(float(siren_probability), 4) if i == best else 0.0
        out.append(dataclasses.replace(b, attributes=attrs))
    return tuple(out)


def in_range(box: Box3D, cfg: ModelConfig) -> bool:
    """Whether a box's centre lies on the model's grid (boxes outside are neither learnt nor scored)."""
    x, y = box.center[0], box.center[1]
    return cfg.x_range[0] <= x < cfg.x_range[1] and cfg.y_range[0] <= y < cfg.y_range[1]
