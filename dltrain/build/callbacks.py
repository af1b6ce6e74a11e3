"""The run's callbacks, in the order their hooks run: the ones selected (callbacks=[...]), the
schedule's stepping, early stopping, checkpoints, then the epoch's pictures."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig
from torch import nn

from dltrain.callback import Callback, Callbacks
from dltrain.callbacks.checkpointing import EpochCheckpoints, StepCheckpoints
from dltrain.callbacks.schedule import schedule_stepping
from dltrain.config import options
from dltrain.optim import Schedule
from dltrain.registry import CALLBACKS
from dltrain.trainer_options import TrainerOptions
from dltrain.visuals import EpochVisuals
from dltrain.world import World


def build_callbacks(
    cfg: DictConfig,
    trainer: TrainerOptions,
    model: nn.Module,
    regularizers: dict[str, Any],
    schedule: Schedule | None,
    world: World,
) -> Callbacks:
    """Every callback of the run by name (the names key their states in checkpoints)."""
    chosen = {
        name: CALLBACKS.build(name, kwargs or {}, model=model, epochs=trainer.epochs)
        for name, kwargs in options(cfg.get("callbacks") or {}).items()
    }
    named: dict[str, Callback] = dict(chosen)
    owner = next((c for c in chosen.values() if hasattr(c, "take_schedule")), None)
    if schedule is not None and owner is not None:
        owner.take_schedule(schedule)  # SWA: the run's schedule until its own takes over
    elif schedule is not None:
        named["schedule"] = schedule_stepping(schedule)
    named.update({n: r for n, r in regularizers.items() if isinstance(r, Callback)})
    named["checkpoints"] = EpochCheckpoints(trainer.keep_best_k, trainer.keep_checkpoints)
    if trainer.checkpoint_every_n_steps:
        every = trainer.checkpoint_every_n_steps
        named["step_checkpoints"] = StepCheckpoints(every, trainer.keep_checkpoints)
    if world.main:
        named["visuals"] = EpochVisuals()
    return Callbacks(named)
