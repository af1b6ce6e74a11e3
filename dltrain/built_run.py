"""What a run is made of once built from its config (BuiltRun), and how far training got."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dltrain.callback import Callbacks
from dltrain.data.splits import DataSplits
from dltrain.step import StepContext
from dltrain.tracking.tracker import Tracker
from dltrain.trainer_options import TrainerOptions
from dltrain.world import World


@dataclass
class BuiltRun:
    """Everything a run is built from: data, model, optimisation, step context, tracker, hooks."""

    cfg: DictConfig
    trainer: TrainerOptions
    data: DataSplits
    context: StepContext
    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    regularizers: dict[str, Any]
    batches: dict[str, Any]  # "train", and "val"/"test" when the dataset has them
    run_dir: Path
    tracker: Tracker
    ddp: nn.Module | None = None  # the DistributedDataParallel wrapper when several ranks train
    callbacks: Callbacks = field(default_factory=Callbacks)

    @property
    def world(self) -> World:
        return self.context.world

    @property
    def trained(self) -> nn.Module:
        """What training steps call: the DDP wrapper, or the model itself on one rank."""
        return self.ddp or self.model

    @property
    def evaluated(self) -> nn.Module:
        """What validation, testing and model.pt use: the model, or a callback's averaged one."""
        return self.callbacks.evaluation_model(self)


@dataclass
class EpochProgress:
    """Running sums of the epoch in progress, so a mid-epoch resume logs the same numbers."""

    loss_sum: float = 0.0  # sum over samples of the training loss
    samples: int = 0
    window_sum: float = 0.0  # since train/loss was last logged
    window_steps: int = 0  # batches in window_sum

    def add(self, loss: float, samples: int) -> None:
        """One batch's mean loss over its samples."""
        self.loss_sum += loss * samples
        self.samples += samples
        self.window_sum += loss
        self.window_steps += 1


@dataclass
class FitState:
    """Progress through training: what a checkpoint records."""

    epoch: int = 0
    step: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    last_metrics: dict[str, float] = field(default_factory=dict)  # of the latest epoch
    stopped_early: bool = False
    progress: EpochProgress = field(default_factory=EpochProgress)  # of the epoch under way
    should_stop: bool = False  # set (by a callback) to end training once this epoch is done
    stop_reason: str = ""  # why, for the log
