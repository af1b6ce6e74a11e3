"""run(cfg, run_dir): build everything from the composed config, fit, test, save.

Hydra stays outside: this needs only a composed config and an output folder, so tests call it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import nn

from dltrain import __version__, checkpoint
from dltrain.config import TrainerOptions, check_config, options, task_problems
from dltrain.data.batches import make_batches
from dltrain.data.splits import DataMeta
from dltrain.device import seed_everything, select_device
from dltrain.loop import DivergedError, StepOptions, evaluate, train_one_epoch
from dltrain.losses import num_outputs
from dltrain.metrics import confusion_matrix
from dltrain.optim import Schedule
from dltrain.registry import (
    DATASETS,
    INITIALIZERS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    SCHEDULERS,
    ConfigError,
)
from dltrain.regularization import EarlyStopping, build_regularizers
from dltrain.tracking import Tracker, markdown_matrix

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """Everything a run is built from."""

    cfg: DictConfig
    trainer: TrainerOptions
    meta: DataMeta
    device: torch.device
    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule | None
    regs: dict[str, Any]
    batches: dict[str, Any]  # "train", and "val"/"test" when the dataset has them
    run_dir: Path
    tracker: Tracker


@dataclass
class FitState:
    """Progress through training: what a checkpoint records."""

    epoch: int = 0
    step: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False


def run(cfg: DictConfig, run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """Train and test one configuration; writes the run dir and returns the metrics.json dict."""
    started = time.perf_counter()
    parts = build(cfg, Path(run_dir), console)
    state = FitState()
    summary: dict[str, Any] = {}
    try:
        fit(parts, state)
        summary = {"status": "completed", **finish(parts, state)}
    except BaseException as e:
        status = {DivergedError: "diverged", KeyboardInterrupt: "interrupted"}.get(
            type(e), "failed"
        )
        summary = {"status": status, "error": f"{type(e).__name__}: {e}", "step": state.step}
        raise
    finally:
        summary.update(
            wall_time_s=round(time.perf_counter() - started, 3),
            seed=parts.trainer.seed,
            device=str(parts.device),
            epochs_completed=state.epoch,
        )
        checkpoint.save_json_atomic(summary, parts.run_dir / "metrics.json")
        parts.tracker.close()
    return summary


def build(cfg: DictConfig, run_dir: Path, console: Console | None) -> Parts:
    """Validate the config, then build data, model, loss, optimizer, schedule and tracker."""
    check_config(cfg)
    trainer = TrainerOptions(**options(cfg.trainer))
    if trainer.seed is None:  # record the drawn seed so the run can be repeated
        trainer.seed = cfg.trainer.seed = random.SystemRandom().randrange(2**31)
    seed_everything(trainer.seed, trainer.deterministic)
    device = select_device(trainer.device)

    data = DATASETS.build(cfg.dataset.name, options(cfg.dataset))
    if problems := task_problems(cfg, data.meta.task):
        raise ConfigError(problems)
    regs = build_regularizers(options(cfg.get("regularization") or {}))
    model = build_model(cfg, data.meta, regs).to(device)
    loss_fn = LOSSES.build(cfg.loss.name, options(cfg.loss)).to(device)
    optimizer_kwargs = options(cfg.optimizer)
    if "l2" in regs:
        optimizer_kwargs["weight_decay"] = regs["l2"].weight_decay
    optimizer = OPTIMIZERS.build(cfg.optimizer.name, optimizer_kwargs, params=model.parameters())

    splits = {"train": data.train, "val": data.val, "test": data.test}
    batches = {
        name: make_batches(
            ds, trainer.batch_size, name == "train", trainer.seed, trainer.num_workers
        )
        for name, ds in splits.items()
        if ds is not None
    }
    schedule = SCHEDULERS.build(
        cfg.scheduler.name,
        options(cfg.scheduler),
        optimizer=optimizer,
        epochs=trainer.epochs,
        steps_per_epoch=len(batches["train"]),
    )

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tracker = Tracker(run_dir, console)
    tracker.text("config", f"```yaml\n{OmegaConf.to_yaml(cfg, resolve=True)}```")
    count = sum(p.numel() for p in model.parameters())
    log.info(
        "run dir %s | device %s | %s (%s parameters) on %s (%s task, %d train samples)",
        run_dir,
        device,
        cfg.model.name,
        f"{count:,}",
        cfg.dataset.name,
        data.meta.task,
        len(data.train),
    )
    return Parts(
        cfg,
        trainer,
        data.meta,
        device,
        model,
        loss_fn,
        optimizer,
        schedule,
        regs,
        batches,
        run_dir,
        tracker,
    )


def build_model(cfg: DictConfig, meta: DataMeta, regs: dict[str, Any]) -> nn.Module:
    """The model for this dataset's shape and task, with dropout and weight init applied."""
    kwargs = options(cfg.model)
    if "dropout" in regs:
        kwargs["dropout"] = regs["dropout"].p
        if regs["dropout"].input_p is not None:
            kwargs["input_dropout"] = regs["dropout"].input_p
    model = MODELS.build(
        cfg.model.name,
        kwargs,
        in_features=math.prod(meta.input_shape),
        out_features=num_outputs(meta, cfg.loss.name),
        input_shape=tuple(meta.input_shape),
        num_classes=meta.num_classes,
    )
    init = cfg.model.get("init") or {"name": "default"}
    return INITIALIZERS.build(init["name"], options(init), model=model)


def fit(parts: Parts, state: FitState) -> None:
    """Epochs of training and validation, with checkpoints, schedules and early stopping."""
    trainer, tracker = parts.trainer, parts.tracker
    early_stopping: EarlyStopping | None = parts.regs.get("early_stopping")
    step_opts = StepOptions(
        parts.device,
        parts.regs.get("l1"),
        parts.regs.get("grad_clip"),
        parts.schedule,
        trainer.log_every_n_steps,
    )
    train_batches = parts.batches["train"]
    with tracker.progress() as progress:
        bar = progress.add_task("training", total=trainer.epochs * len(train_batches), status="")
        for epoch in range(state.epoch + 1, trainer.epochs + 1):
            progress.update(bar, description=f"epoch {epoch}/{trainer.epochs}")
            train_loss, state.step = train_one_epoch(
                parts.model,
                progress.track(train_batches, task_id=bar),
                parts.loss_fn,
                parts.optimizer,
                state.step,
                step_opts,
                tracker.scalars,
            )
            metrics = {"train/loss": train_loss}
            if "val" in parts.batches:
                val, _, _ = evaluate(
                    parts.model,
                    parts.batches["val"],
                    parts.loss_fn,
                    parts.device,
                    parts.meta.task,
                    "val",
                )
                metrics.update(val)
            state.epoch = epoch
            tracker.scalars(
                {
                    "epoch": epoch,
                    "train/epoch_loss": train_loss,
                    **{k: v for k, v in metrics.items() if k.startswith("val/")},
                },
                state.step,
            )
            if parts.schedule is not None and parts.schedule.interval == "epoch":
                parts.schedule.step(metrics)
            if improved(state, metrics, trainer):
                state.best_value, state.best_epoch = metrics.get(trainer.monitor), epoch
                state.best_metrics = metrics
                save_checkpoint(parts, state, "best.pt")
            state.stopped_early = bool(early_stopping and early_stopping.should_stop(metrics))
            save_checkpoint(parts, state, "last.pt")
            shown = list(metrics.items())[:3]  # train/loss, val/loss and the first task metric
            progress.update(bar, status="  ".join(f"{k} {v:.4f}" for k, v in shown))
            if state.stopped_early:
                log.info(
                    "early stopping after epoch %d: %s did not improve for %d epochs",
                    epoch,
                    early_stopping.monitor,
                    early_stopping.patience,
                )
                break


def improved(state: FitState, metrics: dict[str, float], trainer: TrainerOptions) -> bool:
    """Whether this epoch is the best so far (the latest is best when nothing is monitored)."""
    value = metrics.get(trainer.monitor)
    if value is None or state.best_value is None:
        return True
    return value < state.best_value if trainer.monitor_mode == "min" else value > state.best_value


def save_checkpoint(parts: Parts, state: FitState, name: str) -> None:
    """Write the one checkpoint dict (atomically) to checkpoints/<name>."""
    early_stopping = parts.regs.get("early_stopping")
    checkpoint.save_atomic(
        {
            "model": parts.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.schedule.scheduler.state_dict() if parts.schedule else None,
            "epoch": state.epoch,
            "step": state.step,
            "best": {
                "monitor": parts.trainer.monitor,
                "mode": parts.trainer.monitor_mode,
                "value": state.best_value,
                "epoch": state.best_epoch,
            },
            "early_stopping": early_stopping.state_dict() if early_stopping else None,
            "rng": checkpoint.rng_states(),
            "config": OmegaConf.to_container(parts.cfg, resolve=True),
            "data_meta": parts.meta.to_dict(),
            "dltrain_version": __version__,
        },
        parts.run_dir / "checkpoints" / name,
    )


def finish(parts: Parts, state: FitState) -> dict[str, Any]:
    """Restore the best weights, test them, save model.pt and log the final metrics."""
    best = checkpoint.load(parts.run_dir / "checkpoints" / "best.pt")
    parts.model.load_state_dict(best["model"])
    checkpoint.save_atomic(parts.model.state_dict(), parts.run_dir / "model.pt")
    final = {k: v for k, v in state.best_metrics.items() if k.startswith("val/")}
    matrices = {}
    if "test" in parts.batches:
        test, outputs, targets = evaluate(
            parts.model, parts.batches["test"], parts.loss_fn, parts.device, parts.meta.task, "test"
        )
        final.update(test)
        parts.tracker.scalars(test, state.step)
        if parts.meta.task != "regression":
            matrices["test"] = confusion_matrix(
                outputs, targets, parts.meta.task, parts.meta.num_classes
            )
            labels = parts.meta.class_names or [str(i) for i in range(parts.meta.num_classes)]
            parts.tracker.text("test/confusion_matrix", markdown_matrix(matrices["test"], labels))
    best_val = {f"best/{k}": v for k, v in final.items() if k.startswith("val/")}
    parts.tracker.scalars(best_val, state.step)
    parts.tracker.hparams(
        hparams(parts.cfg),
        {**best_val, **{k: v for k, v in final.items() if k.startswith("test/")}},
    )
    parts.tracker.table(
        f"{parts.cfg.model.name} on {parts.cfg.dataset.name}",
        f"best epoch {state.best_epoch} of {state.epoch} by {parts.trainer.monitor}",
        final,
    )
    return {
        "metrics": final,
        "best_epoch": state.best_epoch,
        "monitor": parts.trainer.monitor,
        "stopped_early": state.stopped_early,
        "confusion_matrix": matrices,
        "steps": state.step,
    }


def hparams(cfg: DictConfig) -> dict[str, Any]:
    """The config flattened to `group.key` scalars for TensorBoard's HPARAMS tab."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(node, bool | int | float | str):
            flat[prefix] = node
        else:  # lists and nulls become text
            flat[prefix] = str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat
