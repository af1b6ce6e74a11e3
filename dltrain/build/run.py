"""build_run: a composed config -> the objects of a run (BuiltRun), in the order they depend."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
from omegaconf import DictConfig
from rich.console import Console

from dltrain.build.callbacks import build_callbacks
from dltrain.build.data import build_batches, build_data
from dltrain.build.model import build_model, place_model
from dltrain.build.optimisation import build_loss, build_optimizer, build_schedule
from dltrain.build.run_dir import start_run_dir
from dltrain.build.step_context import apply_threads, build_step_context, resolve_auto
from dltrain.built_run import BuiltRun
from dltrain.config import check_config, options
from dltrain.data.paths import absolute_paths
from dltrain.data.splits import DataSplits
from dltrain.device import seed_everything, select_device
from dltrain.regularization import build_regularizers
from dltrain.tracking.tracker import Tracker
from dltrain.trainer_options import TrainerOptions
from dltrain.world import World, backend, check_world

log = logging.getLogger(__name__)


def build_run(
    cfg: DictConfig,
    run_dir: Path,
    console: Console | None = None,
    resume_step: int | None = None,
    world: World | None = None,
) -> BuiltRun:
    """Validate the config, then build data, model, loss, optimizer, schedule, callbacks and
    tracker."""
    world = world or World()
    absolute_paths(cfg.dataset)  # as the run's config stores them: it is used from any folder
    check_config(cfg)
    trainer = TrainerOptions(**options(cfg.trainer))
    check_world(cfg.trainer, world)
    if trainer.seed is None:  # record the drawn seed (rank 0's) so the run can be repeated
        seed = world.broadcast_object(random.SystemRandom().randrange(2**31))
        trainer.seed = cfg.trainer.seed = seed
    seed_everything(trainer.seed, trainer.deterministic)
    torch.autograd.set_detect_anomaly(trainer.detect_anomaly)  # set both ways: sweeps share it
    device = select_device(trainer.device, world.local_rank)
    apply_threads(trainer)  # before data and model: both may use torch's thread pool
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and DDP use the current device

    data = build_data(cfg)
    regularizers = build_regularizers(options(cfg.get("regularization") or {}))
    model = build_model(cfg, data.meta, regularizers)
    resolve_auto(trainer, cfg, device, model)  # precision, channels_last: auto -> the choice
    model, ddp = place_model(model, trainer, device, world)
    loss_fn = build_loss(cfg, device)
    optimizer = build_optimizer(cfg, model, regularizers)
    batches = build_batches(data, trainer, device, world)
    steps_per_epoch = -(-len(batches["train"]) // trainer.accumulate_grad_batches)
    schedule = build_schedule(cfg, optimizer, trainer.epochs, steps_per_epoch)
    context = build_step_context(trainer, data.meta, regularizers, schedule, device, world)
    callbacks = build_callbacks(cfg, trainer, model, regularizers, schedule, world)
    tracker = None
    if world.main and trainer.dry_run:  # it writes nothing: no config, loggers or samples
        tracker = Tracker(console=console)
    elif world.main:
        tracker = start_run_dir(cfg, run_dir, data, console, resume_step)
    kept = "a dry run, nothing kept" if trainer.dry_run else f"run dir {run_dir}"
    log.info(f"{kept} | {where(device, world, ddp)} | {what(cfg, model, data)}")
    return BuiltRun(
        cfg=cfg,
        trainer=trainer,
        data=data,
        context=context,
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        regularizers=regularizers,
        batches=batches,
        run_dir=run_dir,
        tracker=tracker or Tracker.silent(),
        ddp=ddp,
        callbacks=callbacks,
    )


def where(device: torch.device, world: World, ddp: object) -> str:
    """The device, and the ranks and backend when DDP trains (for the run's log)."""
    plural = "s" if world.size > 1 else ""
    ranks = f" x {world.size} rank{plural} (DDP) over {backend()}" if ddp is not None else ""
    return f"device {device}{ranks}"


def what(cfg: DictConfig, model: torch.nn.Module, data: DataSplits) -> str:
    """The model, its size, and the data it trains on (for the run's log)."""
    size = sum(p.numel() for p in model.parameters())
    data_facts = f"{data.meta.task}, {len(data.train)} training samples"
    return f"{cfg.model.name} ({size:,} parameters) on {cfg.dataset.name} ({data_facts})"
