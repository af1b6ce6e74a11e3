"""The run's model: built for the data's shape and task, initialised, placed on the device."""

from __future__ import annotations

import math
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dltrain.config import options
from dltrain.data.splits import DataMeta
from dltrain.losses import num_outputs
from dltrain.registry import INITIALIZERS, MODELS
from dltrain.trainer_options import TrainerOptions
from dltrain.world import World


def build_model(cfg: DictConfig, meta: DataMeta, regularizers: dict[str, Any]) -> nn.Module:
    """The model for this dataset's shape and task, with dropout and weight init applied."""
    kwargs = options(cfg.model)
    if "dropout" in regularizers:
        kwargs["dropout"] = regularizers["dropout"].p
        if regularizers["dropout"].input_p is not None:
            kwargs["input_dropout"] = regularizers["dropout"].input_p
    model = MODELS.build(cfg.model.name, kwargs, **runtime_values(meta, cfg.loss.name))
    init = cfg.model.get("init") or {"name": "default"}
    return INITIALIZERS.build(init["name"], options(init), model=model)


def runtime_values(meta: DataMeta, loss: str) -> dict[str, Any]:
    """A value for each runtime name a model builder may ask for (MODELS.runtime names them)."""
    values = {
        "in_features": math.prod(meta.input_shape),
        "out_features": num_outputs(meta, loss),
        "input_shape": tuple(meta.input_shape),
        "num_classes": meta.num_classes,
        "vocab": meta.vocab,
    }
    return {name: values[name] for name in MODELS.runtime}


def place_model(
    model: nn.Module, trainer: TrainerOptions, device: torch.device, world: World
) -> tuple[nn.Module, nn.Module | None]:
    """The model on its device and memory format (compiled if asked), and its DDP wrapper."""
    model = model.to(device)
    if trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if trainer.compile:
        model.compile()  # in place: state_dict keys stay those of the plain model
    ddp = world.size > 1 or (world.distributed and trainer.strategy == "ddp")
    return model, distributed_wrapper(model, device) if ddp else None


def distributed_wrapper(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model`: gradients averaged over the ranks every step."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
