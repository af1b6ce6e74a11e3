"""The run's step context: how every batch runs (device, transform, precision, per-step parts)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dltrain import cpu
from dltrain.data.splits import DataMeta
from dltrain.data.transforms import BatchTransform
from dltrain.optim import Schedule
from dltrain.step import DivergenceCheck, StepContext
from dltrain.trainer_options import PRECISIONS, TrainerOptions
from dltrain.world import World

log = logging.getLogger(__name__)


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


def auto_precision(device: torch.device, model: nn.Module | None = None) -> tuple[str, str]:
    """What trainer.precision=auto picks on `device`, and why: bf16-mixed only where it is fast.

    On a CPU with bf16 instructions that is a conv net (an MNIST CNN epoch: 1.56x float32); a
    model without convolutions stays float32 (the default digits MLP ran 1.2x slower in bf16).
    `model` None (eval given `auto`): the CPU's flags decide. 16-mixed is never picked: float16
    needs loss scaling and can overflow where bf16 cannot.
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "the GPU supports bf16"
        return "32", "the GPU lacks bf16"
    if device.type == "cpu":
        if not (flags := cpu.bf16_flags()):
            return "32", f"CPU lacks {'/'.join(cpu.BF16_FLAGS)}"
        if model is not None and not has_convolutions(model):
            return "32", f"CPU has {flags[-1]}, but the model has no convolutions to speed up"
        return "bf16-mixed", f"CPU has {flags[-1]}"
    return "32", f"bf16 autocast is not faster on {device.type}"


def has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) for m in model.modules())


def auto_channels_last(precision: str, device: torch.device, model: nn.Module) -> tuple[bool, str]:
    """What trainer.channels_last=auto picks: NHWC for conv nets under bf16 on CPU, or on CUDA."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False, "the model has no 2-D convolutions"
    if device.type == "cuda" or (device.type == "cpu" and precision == "bf16-mixed"):
        return True, f"a conv net, {precision} on {device.type}"
    return False, f"a conv net, but {precision} on {device.type} gains nothing from it"


def resolve_auto(
    trainer: TrainerOptions, cfg: DictConfig, device: torch.device, model: nn.Module
) -> None:
    """Turn `auto` precision and channels_last into choices, recorded in the run's config.

    The config (config.yaml, checkpoints) keeps the choice, so a resumed run, eval, predict and
    export use what the run trained with, on whatever machine they run.
    """
    if trainer.precision == "auto":
        trainer.precision, why = auto_precision(device, model)
        log.info(f"precision=auto: {trainer.precision} ({why})")
        cfg.trainer.precision = trainer.precision
    if trainer.channels_last == "auto":
        trainer.channels_last, why = auto_channels_last(trainer.precision, device, model)
        log.info(f"channels_last=auto: {str(trainer.channels_last).lower()} ({why})")
        cfg.trainer.channels_last = trainer.channels_last


def apply_threads(trainer: TrainerOptions) -> int:
    """Set torch's CPU threads: trainer.threads, or this process's share of its CPUs (null)."""
    if trainer.threads is None:
        trainer.threads = cpu.default_threads(trainer.devices, trainer.num_workers)
    cpu.set_threads(trainer.threads)
    return trainer.threads
