"""Optimizers (torch's own classes, registered by name) and learning-rate schedules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.optim import Optimizer, lr_scheduler

from dltrain.registry import OPTIMIZERS, SCHEDULERS

for _name, _cls in {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adadelta": torch.optim.Adadelta,
    "adagrad": torch.optim.Adagrad,
}.items():
    OPTIMIZERS.register(_name)(_cls)


@dataclass
class Schedule:
    """A torch LR scheduler plus when it steps and, for plateau, what it watches."""

    scheduler: lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau
    interval: Literal["epoch", "step"] = "epoch"
    monitor: str | None = None

    def step(self, metrics: dict[str, float] | None = None) -> None:
        """Advance the schedule; plateau schedules read their monitored metric."""
        if self.monitor is None:
            self.scheduler.step()
        elif metrics and self.monitor in metrics:
            self.scheduler.step(metrics[self.monitor])


@SCHEDULERS.register("none")
def none() -> None:
    """Constant learning rate."""
    return None


@SCHEDULERS.register("step")
def step(optimizer: Optimizer, step_size: int = 10, gamma: float = 0.1) -> Schedule:
    """Multiply the LR by gamma every step_size epochs."""
    return Schedule(lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma))


@SCHEDULERS.register("cosine")
def cosine(
    optimizer: Optimizer, epochs: int, t_max: int | None = None, eta_min: float = 0.0
) -> Schedule:
    """Cosine annealing from the initial LR to eta_min over t_max epochs (default: all epochs)."""
    return Schedule(
        lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max or epochs, eta_min=eta_min)
    )


@SCHEDULERS.register("plateau")
def plateau(
    optimizer: Optimizer,
    monitor: str = "val/loss",
    mode: Literal["min", "max"] = "min",
    factor: float = 0.1,
    patience: int = 10,
    min_lr: float = 0.0,
) -> Schedule:
    """Multiply the LR by factor when the monitored metric stops improving for patience epochs."""
    scheduler = lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr
    )
    return Schedule(scheduler, monitor=monitor)


@SCHEDULERS.register("onecycle")
def onecycle(
    optimizer: Optimizer,
    epochs: int,
    steps_per_epoch: int,
    max_lr: float = 0.01,
    pct_start: float = 0.3,
    anneal_strategy: Literal["cos", "linear"] = "cos",
) -> Schedule:
    """One-cycle policy (warm up to max_lr, then anneal), stepped every batch."""
    scheduler = lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lr,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        pct_start=pct_start,
        anneal_strategy=anneal_strategy,
    )
    return Schedule(scheduler, interval="step")
