"""Training loop for the fusion network (CPU-friendly: small model, cached data, a few epochs).

``fusion-stream train`` calls :func:`train`; the weights file holds the state dict, the model
config and the training record, so the fusion node needs nothing else."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fusion_stream.core import calib, msgs
from fusion_stream.core.yamlio import open_regular
from fusion_stream.model import preprocess, targets
from fusion_stream.model.config import MAX_WEIGHTS_BYTES, OUTPUT_NAMES, ModelConfig, WeightsError
from fusion_stream.model.dataset import SimDataset, boxes_from_array, members_of
from fusion_stream.model.decode import in_range
from fusion_stream.model.net import FusionNet, decode


@dataclass(frozen=True)
class TrainConfig:
    """Training settings: epochs, batch size, learning rate, weight decay, modality dropout, seed."""

    epochs: int = 6
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    drop_modality: float = 0.15
    """Chance of dropping each non-LiDAR modality per sample, so the model learns to work on
    partial sets."""
    drop_lidar: float | None = None
    """Chance of dropping the LiDAR (default: half of ``drop_modality``). Higher makes the network
    learn what the camera and radar see, instead of leaning on the LiDAR alone."""
    seed: int = 0
    threads: int = 0
    """torch threads (0: torch's default)."""


class Source(Protocol):
    """Where training frames come from: the simulator's cache or a KITTI folder."""

    def __len__(self) -> int: ...

    def get(self, i: int) -> tuple[Members, tuple[msgs.Box3D, ...], preprocess.RigGeometry]: ...


Members = dict[str, tuple[msgs.SensorMessage, ...]]


class SimSource:
    def __init__(self, data: SimDataset) -> None:
        self.data = data
        self.rig = calib.load(data.rig_path)
        self.geometry = preprocess.RigGeometry.from_rig(self.rig)

    def __len__(self) -> int:
        return len(self.data)

    def get(self, i: int) -> tuple[Members, tuple[msgs.Box3D, ...], preprocess.RigGeometry]:
        sample = self.data.load(i)
        return members_of(sample, self.rig), boxes_from_array(sample["boxes"]), self.geometry


class KittiSource:
    """A KITTI object folder (LiDAR + camera; every frame has its own calibration)."""

    def __init__(self, root: Path) -> None:
        from fusion_stream.core.kitti import KittiFolder

        self.folder = KittiFolder(root)

    def __len__(self) -> int:
        return len(self.folder)

    def get(self, i: int) -> tuple[Members, tuple[msgs.Box3D, ...], preprocess.RigGeometry]:
        frame = self.folder.load(i)
        return frame.members, frame.boxes, preprocess.RigGeometry.from_rig(frame.rig)


class FrameDataset(Dataset[dict[str, np.ndarray]]):
    """Frames → network inputs and targets, with optional modality dropout."""

    def __init__(
        self,
        source: Source | SimDataset,
        cfg: ModelConfig,
        drop: float = 0.0,
        seed: int = 0,
        drop_lidar: float | None = None,
    ) -> None:
        self.source: Source = SimSource(source) if isinstance(source, SimDataset) else source
        self.cfg = cfg
        self.drop = drop
        self.drop_lidar = drop / 2 if drop_lidar is None else drop_lidar
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self.item(i)[0]

    def item(self, i: int) -> tuple[dict[str, np.ndarray], tuple[msgs.Box3D, ...]]:
        """Inputs and targets of frame ``i``, and its ground-truth boxes."""
        members, boxes, geometry = self.source.get(i)
        members = dict(members)
        if self.drop > 0 or self.drop_lidar > 0:
            rng = random.Random(self.seed * 1_000_003 + self.epoch * 10_007 + i)
            for name in list(members):
                if rng.random() < (self.drop_lidar if name == "lidar" else self.drop):
                    del members[name]
        inputs = preprocess.prepare(members, geometry, self.cfg)
        target = targets.build(boxes, self.cfg)
        target["audio_siren"] = np.asarray(any(b.attributes.get("siren") for b in boxes), np.float32)
        if "camera" in self.cfg.modalities:
            target["image_heatmap"] = targets.image_heatmap(boxes, inputs["cam_proj"], self.cfg)
        return {**inputs, **{f"t_{k}": np.asarray(v) for k, v in target.items()}}, boxes


def collate(items: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}


def run_batch(net: FusionNet, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch_loss(net(*[batch[k] for k in preprocess.INPUT_NAMES]), batch)


def batch_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    target = {k[2:]: v for k, v in batch.items() if k.startswith("t_")}
    target["audio_present"] = batch["present"][:, 3]
    target["camera_present"] = batch["present"][:, 1]
    return targets.loss(out, target)


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train(
    cfg: ModelConfig,
    tc: TrainConfig,
    train_data: Source | SimDataset,
    val_data: Source | SimDataset | None,
    out_path: Path,
    *,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    initial: Path | None = None,
) -> History:
    """Train, validate each epoch, and write the weights to ``out_path`` after every epoch."""
    torch.manual_seed(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    net = FusionNet(cfg)
    if initial is not None:
        net.load_state_dict(load_weights(initial)[0].state_dict())
    ds = FrameDataset(train_data, cfg, tc.drop_modality, tc.seed, drop_lidar=tc.drop_lidar)
    loader = DataLoader(
        ds,
        batch_size=tc.batch_size,
        shuffle=True,
        num_workers=1,
        collate_fn=collate,
        drop_last=True,
        generator=torch.Generator().manual_seed(tc.seed),
        persistent_workers=False,
    )
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    steps = tc.epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, tc.lr, total_steps=max(steps, 1), pct_start=0.15)
    history = History()
    start = time.monotonic()
    step = 0
    for epoch in range(tc.epochs):
        ds.epoch = epoch
        net.train()
        sums: dict[str, float] = {}
        for batch in loader:
            losses = run_batch(net, batch)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            sched.step()
            step += 1
            values = {k: float(v.detach()) for k, v in losses.items()}
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            if on_step is not None:
                on_step(step, steps, values)
        record = {f"train_{k}": v / max(len(loader), 1) for k, v in sums.items()}
        if val_data is not None:
            record.update({f"val_{k}": v for k, v in validate(net, val_data, cfg).items()})
        record["epoch"] = epoch + 1
        history.epochs.append(record)
        history.seconds = time.monotonic() - start
        save_weights(out_path, net, cfg, {"history": history.epochs, "seconds": history.seconds, "train": tc.__dict__})
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
    return history


@torch.no_grad()
def validate(net: FusionNet, data: Source | SimDataset, cfg: ModelConfig) -> dict[str, float]:
    """Mean validation losses (no dropout), and the detection metrics (mAP, NDS) on the same frames."""
    from fusion_stream.eval.metrics import FrameResult, detection_metrics
    from fusion_stream.model.decode import to_boxes

    net.eval()
    ds = FrameDataset(data, cfg)
    sums: dict[str, float] = {}
    n = 0
    frames: list[FrameResult] = []
    for start in range(0, len(ds), 8):
        items = [ds.item(i) for i in range(start, min(start + 8, len(ds)))]
        batch = collate([inputs for inputs, _ in items])
        maps = net(*[batch[k] for k in preprocess.INPUT_NAMES])
        for k, v in batch_loss(maps, batch).items():
            sums[k] = sums.get(k, 0.0) + float(v)
        decoded = decode(maps["heatmap"], maps["regress"], maps["audio_siren"], cfg)
        out = {name: t.numpy() for name, t in zip(OUTPUT_NAMES, decoded, strict=True)}
        for b, (_, boxes) in enumerate(items):
            gt = [g for g in boxes if in_range(g, cfg)]
            frames.append(FrameResult(gt, to_boxes(out, cfg, b, threshold=0.05)))
        n += 1
    result = {k: v / max(n, 1) for k, v in sums.items()}
    metrics = detection_metrics(frames, cfg.classes)
    result["mAP"] = float(metrics["mAP"])  # type: ignore[arg-type]
    result["NDS"] = float(metrics["NDS"])  # type: ignore[arg-type]
    net.train()
    return result


# --------------------------------------------------------------------------- weights files


def save_weights(path: Path, net: FusionNet, cfg: ModelConfig, record: dict[str, Any]) -> None:
    """State dict (fp32), config and training record; written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {
            "format": "fusion_stream.weights/1",
            "config": cfg.to_dict(),
            "state": net.state_dict(),
            "record": json.loads(json.dumps(record)),
        },
        tmp,
    )
    tmp.replace(path)


def load_weights(path: Path | str) -> tuple[FusionNet, dict[str, Any]]:
    """The network (in eval mode) and its training record.

    A bad file is a :class:`WeightsError` naming the file and key: only a regular file of at most
    ``MAX_WEIGHTS_BYTES`` is read (``/dev/zero`` would be read until memory runs out), only
    tensors are unpickled, and the model config is bounds-checked before a network is built."""
    path = Path(path)
    where = str(path)

    def fail(reason: str) -> WeightsError:
        return WeightsError(where, "<file>", reason)

    missing = "no such weights file (train one with `fusion-stream train`)"
    with open_regular(path, fail, max_bytes=MAX_WEIGHTS_BYTES, missing=missing) as f:
        try:
            blob = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a damaged file
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise fail(f"not a fusion_stream weights file ({type(err).__name__}: {first})") from err
    if not isinstance(blob, dict) or blob.get("format") != "fusion_stream.weights/1":
        raise fail("not a fusion_stream weights file (no 'format: fusion_stream.weights/1')")
    cfg = ModelConfig.from_dict(blob.get("config"), source=where)
    state, record = blob.get("state"), blob.get("record", {})
    if not isinstance(state, dict) or not isinstance(record, dict):
        raise WeightsError(where, "state", "state and record must be mappings: not a fusion_stream weights file")
    net = FusionNet(cfg)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(where, "state", f"weights do not fit the model config: {err}") from err
    return net.eval(), dict(record)
