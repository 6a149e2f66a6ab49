"""The standard simulated data splits. Scenario seeds never overlap between splits, so the
held-out scenarios are worlds the model has never seen."""

from __future__ import annotations

from pathlib import Path

from fusion_stream.core import resources
from fusion_stream.core.cache import cache_root
from fusion_stream.errors import ParamError
from fusion_stream.model.dataset import SampleSpec, SimDataset, plan

TRAIN_SEEDS = range(1000, 1375)
HELD_OUT_SEEDS = range(100, 125)
PER_SEED = 8


def cache_dir() -> Path:
    """Where rendered samples are cached."""
    return cache_root() / "sim"


def specs(split: str, per_seed: int = PER_SEED, seeds: int | None = None) -> list[SampleSpec]:
    """``train``; ``val`` (held-out scenarios, conditions as drawn); ``fog``, ``night``: the same
    held-out scenarios under that condition. ``seeds`` takes only the first N scenarios."""
    if split == "train":
        chosen = TRAIN_SEEDS
    elif split in ("val", "fog", "night", "rain", "clear"):
        chosen = HELD_OUT_SEEDS
    else:
        raise ParamError("split", f"unknown split {split!r}; use train, val, fog, rain, clear or night")
    seed_list = list(chosen)[: seeds or None]
    if split == "night":
        return plan(seed_list, per_seed, condition="night")
    if split in ("fog", "rain", "clear"):
        return plan(seed_list, per_seed, weather=split)
    return plan(seed_list, per_seed)


def dataset(split: str, rig_path: Path | str = "calib/sim_rig.yaml", **kw: int | None) -> SimDataset:
    return SimDataset(specs(split, **kw), cache_dir(), resources.resolve(rig_path))  # type: ignore[arg-type]
