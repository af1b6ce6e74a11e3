"""The run's step context: how every batch runs (device, transform, precision, per-step parts)."""

from __future__ import annotations

from typing import Any

import torch

from dltrain.data.splits import DataMeta
from dltrain.data.transforms import BatchTransform
from dltrain.optim import Schedule
from dltrain.step import DivergenceCheck, StepContext
from dltrain.trainer_options import PRECISIONS, TrainerOptions
from dltrain.world import World


def build_step_context(
    trainer: TrainerOptions,
    meta: DataMeta,
    regularizers: dict[str, Any],
    schedule: Schedule | None,
    device: torch.device,
    world: World,
) -> StepContext:
    """What train_one_epoch and evaluate need besides the model, loss and batches."""
    return StepContext(
        device=device,
        transform=BatchTransform.for_data(meta.preprocessing, trainer.channels_last),
        amp_dtype=PRECISIONS[trainer.precision],
        scaler=torch.amp.GradScaler(device.type) if trainer.precision == "16-mixed" else None,
        l1=regularizers.get("l1"),
        grad_clip=regularizers.get("grad_clip"),
        schedule=schedule,
        log_every_n_steps=trainer.log_every_n_steps,
        accumulate=trainer.accumulate_grad_batches,
        window_samples=trainer.accumulate_grad_batches * trainer.batch_size,
        augment=not trainer.overfit_batches,
        reconstruct=meta.task == "reconstruction",
        world=world,
        divergence=DivergenceCheck(trainer.divergence_threshold),
    )
