"""The fusion network: configuration, pre-processing, the net, targets, decoding, data sets, training.

Names load on first use: the net and training import torch, which the configuration and the
decoding (what a deployed model needs) do not."""

from typing import TYPE_CHECKING

from fusion_stream.core.lazy import lazy_exports

if TYPE_CHECKING:
    from fusion_stream.model.config import DEFAULT_WEIGHTS, ModelConfig, WeightsError
    from fusion_stream.model.decode import to_boxes
    from fusion_stream.model.net import FusionNet
    from fusion_stream.model.train import TrainConfig, load_weights, save_weights

__all__ = [
    "DEFAULT_WEIGHTS",
    "FusionNet",
    "ModelConfig",
    "TrainConfig",
    "WeightsError",
    "load_weights",
    "save_weights",
    "to_boxes",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DEFAULT_WEIGHTS": "fusion_stream.model.config",
        "FusionNet": "fusion_stream.model.net",
        "ModelConfig": "fusion_stream.model.config",
        "TrainConfig": "fusion_stream.model.train",
        "WeightsError": "fusion_stream.model.config",
        "load_weights": "fusion_stream.model.train",
        "save_weights": "fusion_stream.model.train",
        "to_boxes": "fusion_stream.model.decode",
    },
)
