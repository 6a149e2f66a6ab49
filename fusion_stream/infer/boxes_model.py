"""A ``boxes`` model card run as a :class:`~fusion_stream.infer.detector.Detector`.

The newest LiDAR sweep of a set is moved from its sensor's frame into the model's (the card's
``frame``: a sensor of the rig, or the rig frame itself), cut to the card's fields, zero-padded
to ``max_points`` and run in ONNX Runtime; the boxes come back through the card's layout, class
list and class map, and are moved back to the rig frame. The pure steps (:func:`cloud_rows`,
:func:`pad_points`, :func:`decode_boxes`) are what a numpy reference of the same model checks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusion_stream.core import calib, msgs
from fusion_stream.errors import InferenceError, UnknownNameError
from fusion_stream.infer.backends import ort_session
from fusion_stream.infer.cards import BoxesCard, CardError, OnnxCard, check_onnx
from fusion_stream.infer.centerpoint_card import CenterPointCard
from fusion_stream.infer.detector import StageTimes

log = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(float)": np.float32}


# --------------------------------------------------------------------------- pure steps


def cloud_rows(cloud: msgs.PointCloud, fields: Sequence[str], to_model: calib.Transform) -> np.ndarray:
    """The cloud's points as N×F float32 in the card's field order, x/y/z moved into the model's
    frame; a field the cloud lacks is zeros (and said once in the log)."""
    xyz = to_model.apply(np.stack([cloud.data[:, cloud.fields.index(c)] for c in ("x", "y", "z")], axis=1))
    out = np.zeros((len(cloud.data), len(fields)), np.float32)
    for j, name in enumerate(fields):
        if name in ("x", "y", "z"):
            out[:, j] = xyz[:, "xyz".index(name)]
        elif name in cloud.fields:
            out[:, j] = cloud.data[:, cloud.fields.index(name)]
        elif name not in _warned_fields:
            _warned_fields.add(name)
            log.warning("the LiDAR clouds have no field %r (they have %s); fed as zeros", name, list(cloud.fields))
    return out


_warned_fields: set[str] = set()


def pad_points(rows: np.ndarray, max_points: int) -> tuple[np.ndarray, int]:
    """``rows`` zero-padded (or cut, keeping the first) to ``max_points`` rows, and how many are real."""
    n = min(len(rows), max_points)
    padded = np.zeros((max_points, rows.shape[1]), np.float32)
    padded[:n] = rows[:n]
    return padded, n


def model_frame(rig: calib.Rig, frame: str) -> calib.Transform:
    """Model frame → rig frame: the card's ``frame`` is a sensor of the rig, or the rig frame."""
    if frame == rig.frame_id:
        return calib.Transform.identity()
    return rig[frame].extrinsics


def label_names(labels: np.ndarray, classes: Sequence[str], class_map: Mapping[str, str]) -> list[str | None]:
    """Class indices → our class names through the card's ``classes`` and ``class_map``
    (None for an index outside ``classes``)."""
    out: list[str | None] = []
    for i in labels.astype(np.int64).tolist():
        name = classes[i] if 0 <= i < len(classes) else None
        out.append(None if name is None else class_map.get(name, name))
    return out


def decode_boxes(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    layout: Sequence[str],
    classes: Sequence[str],
    class_map: Mapping[str, str],
    to_rig: calib.Transform,
    threshold: float,
) -> tuple[msgs.Box3D, ...]:
    """The model's K×C boxes (columns named by ``layout``, in the model frame) scoring at least
    ``threshold`` as rig-frame :class:`~fusion_stream.core.msgs.Box3D`, best first. A box with a
    non-finite value, a negative size or a class index outside ``classes`` is dropped."""
    col = {name: i for i, name in enumerate(layout)}
    rows = boxes.reshape(-1, len(layout)).astype(np.float64)
    scores = scores.reshape(-1).astype(np.float64)
    labels = labels.reshape(-1)
    if not len(rows) == len(scores) == len(labels):
        raise InferenceError(f"the model gave {len(rows)} boxes, {len(scores)} scores and {len(labels)} labels")
    names = label_names(labels, classes, class_map)
    centres = to_rig.apply(rows[:, [col["x"], col["y"], col["z"]]])
    rot = to_rig.rotation
    turn = math.atan2(rot[1, 0], rot[0, 0])  # the frames' yaw difference (sensors sit near level)
    vel = np.zeros((len(rows), 3))
    if "vx" in col and "vy" in col:
        vel[:, 0], vel[:, 1] = rows[:, col["vx"]], rows[:, col["vy"]]
    vel = vel @ rot.T
    out = []
    for k in np.argsort(-scores, kind="stable"):
        size = rows[k, [col["l"], col["w"], col["h"]]]
        values = np.concatenate([centres[k], size, rows[k, [col["yaw"]]], vel[k], scores[k : k + 1]])
        if scores[k] < threshold or names[k] is None or not np.isfinite(values).all() or (size < 0).any():
            continue
        yaw = math.remainder(float(rows[k, col["yaw"]]) + turn, math.tau)
        out.append(
            msgs.Box3D(
                center=(float(centres[k, 0]), float(centres[k, 1]), float(centres[k, 2])),
                size=(float(size[0]), float(size[1]), float(size[2])),
                yaw=yaw,
                velocity=(float(vel[k, 0]), float(vel[k, 1])),
                label=str(names[k]),
                score=min(1.0, max(0.0, float(scores[k]))),
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------- the detector


class CardDetector:
    """A card's ONNX model that outputs decoded boxes, in ONNX Runtime, fed the LiDAR input of
    each set (``inputs``: ``{lidar: NAME}`` where the set names it otherwise). What a kind feeds
    the graph is its subclass's :meth:`feeds`; frames, the session and decoding are shared."""

    fields: tuple[str, ...]
    """The point features the model takes, in order."""

    def __init__(
        self,
        card: OnnxCard,
        rig: calib.Rig,
        *,
        device: str = "cpu",
        threads: int = 0,
        threshold: float | None = None,
        inputs: Mapping[str, str] | None = None,
        frame_id: str = "base_link",
    ) -> None:
        self.card = card
        self.rig = rig
        try:
            self.to_rig = model_frame(rig, card.frame)
        except UnknownNameError as err:
            raise CardError(str(card.path), "frame", str(err)) from err
        self.threshold = card.score_threshold if threshold is None else threshold
        self.input = (inputs or {}).get("lidar", "lidar")
        self.frame_id = frame_id
        self.tensors = check_onnx(card)
        self._session = ort_session(card.onnx, device, threads)
        self._types = {i.name: _ORT_TYPES.get(i.type, np.float32) for i in self._session.get_inputs()}
        self.name = f"{Path(card.path).name}: onnxruntime ({device})"

    def sensor_to_model(self, cloud: msgs.PointCloud) -> calib.Transform:
        """The cloud's frame (a rig sensor by name, the rig frame, else the rig's first LiDAR) →
        the model's frame."""
        if cloud.frame_id == self.rig.frame_id:
            to_rig = calib.Transform.identity()
        elif cloud.frame_id in self.rig.sensors:
            to_rig = self.rig[cloud.frame_id].extrinsics
        else:
            lidars = self.rig.of_type("lidar")
            to_rig = lidars[0].extrinsics if lidars else calib.Transform.identity()
        return self.to_rig.inverse() @ to_rig

    def feeds(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's inputs for N×F rows (``fields``) already in the model's frame."""
        raise NotImplementedError

    def run(self, feeds: Mapping[str, np.ndarray]) -> tuple[msgs.Box3D, ...]:
        """The graph's decoded boxes in the rig frame (a kind whose graph outputs heads overrides this)."""
        c = self.card
        if isinstance(c, CenterPointCard):
            raise NotImplementedError("a centerpoint card's heads are decoded by its own detector")
        try:
            boxes, scores, labels = self._session.run([c.boxes, c.scores, c.labels], dict(feeds))
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise InferenceError(f"{c.onnx}: onnxruntime failed: {err}") from err
        return decode_boxes(boxes, scores, labels, c.layout, c.classes, c.class_map, self.to_rig, self.threshold)

    def warm_up(self) -> float:
        t0 = time.perf_counter()
        self.run(self.feeds(np.zeros((0, len(self.fields)), np.float32)))
        return (time.perf_counter() - t0) * 1e3

    def present(self, frame: msgs.SyncedFrame) -> list[str]:
        return ["lidar"] if frame.members.get(self.input) else []

    def process(self, frame: msgs.SyncedFrame) -> tuple[msgs.Detections, StageTimes]:
        t0 = time.perf_counter()
        clouds = [m for m in frame.members.get(self.input, ()) if isinstance(m, msgs.PointCloud)]
        if clouds:
            rows = cloud_rows(clouds[-1], self.fields, self.sensor_to_model(clouds[-1]))
        else:
            rows = np.zeros((0, len(self.fields)), np.float32)
        feeds = self.feeds(rows)
        t1 = time.perf_counter()
        boxes = self.run(feeds)
        t2 = time.perf_counter()
        det = msgs.Detections(stamp_ns=frame.stamp_ns, frame_id=self.frame_id, boxes=boxes)
        # inference and decoding are one call here; the decode share is small next to the model's
        return det, StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (time.perf_counter() - t2) * 1e3)


class BoxesDetector(CardDetector):
    """A ``boxes`` card: the sweep's rows zero-padded to ``max_points``."""

    def __init__(self, card: BoxesCard, rig: calib.Rig, **options: Any) -> None:
        super().__init__(card, rig, **options)
        self.points = card.points
        self.num_points = card.num_points
        self.fields = card.points.fields
        self._batched = len(self.tensors[card.points.name].shape) == 3

    def feeds(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's inputs for N×F rows already in the model's frame."""
        padded, n = pad_points(rows, self.points.max_points)
        if n < len(rows):
            log.warning("a sweep of %d points cut to the card's max_points %d", len(rows), n)
        out = {self.points.name: padded[None] if self._batched else padded}
        if self.num_points:
            out[self.num_points] = np.array([n], self._types.get(self.num_points, np.int32))
        return out
