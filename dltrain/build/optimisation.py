"""The run's optimisation: loss, optimizer (with L2 as weight decay) and learning-rate schedule."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dltrain.config import options
from dltrain.optim import Schedule
from dltrain.registry import LOSSES, OPTIMIZERS, SCHEDULERS


def build_loss(cfg: DictConfig, device: torch.device) -> nn.Module:
    """The loss of the config, on the device (a plain function, as it is)."""
    loss = LOSSES.build(cfg.loss.name, options(cfg.loss))
    return loss.to(device) if isinstance(loss, nn.Module) else loss


def build_optimizer(
    cfg: DictConfig, model: nn.Module, regularizers: dict[str, Any]
) -> torch.optim.Optimizer:
    """The optimizer over the model's parameters; regularization=l2 sets its weight decay."""
    kwargs = options(cfg.optimizer)
    if "l2" in regularizers:
        kwargs["weight_decay"] = regularizers["l2"].weight_decay
    return OPTIMIZERS.build(cfg.optimizer.name, kwargs, params=model.parameters())


def build_schedule(
    cfg: DictConfig, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
) -> Schedule | None:
    """The learning-rate schedule (None: constant); a torch scheduler steps every epoch."""
    schedule = SCHEDULERS.build(
        cfg.scheduler.name,
        options(cfg.scheduler),
        optimizer=optimizer,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
    )
    return schedule if schedule is None or isinstance(schedule, Schedule) else Schedule(schedule)
