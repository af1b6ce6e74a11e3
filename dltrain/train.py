"""run(cfg, run_dir): build everything from the composed config, fit, test, save.

Hydra stays outside: this needs only a composed config and an output folder, so tests call it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import nn

from dltrain import checkpoint
from dltrain.config import TrainerOptions, check_config, options, task_problems
from dltrain.data.batches import make_batches
from dltrain.data.splits import DataMeta
from dltrain.device import seed_everything, select_device
from dltrain.loop import DivergedError, FitState, Parts, evaluate, fit
from dltrain.losses import num_outputs
from dltrain.metrics import confusion_matrix
from dltrain.registry import (
    DATASETS,
    INITIALIZERS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    SCHEDULERS,
    ConfigError,
)
from dltrain.regularization import build_regularizers
from dltrain.tracking import Tracker, markdown_matrix

log = logging.getLogger(__name__)


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
    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    (run_dir / "config.yaml").write_text(resolved)
    tracker = Tracker(run_dir, console)
    tracker.text("config", f"```yaml\n{resolved}```")
    size = sum(p.numel() for p in model.parameters())
    log.info(
        f"run dir {run_dir} | device {device} | {cfg.model.name} ({size:,} parameters) on "
        f"{cfg.dataset.name} ({data.meta.task}, {len(data.train)} training samples)"
    )
    return Parts(
        cfg=cfg,
        trainer=trainer,
        meta=data.meta,
        device=device,
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        schedule=schedule,
        regs=regs,
        batches=batches,
        run_dir=run_dir,
        tracker=tracker,
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
        OmegaConf.to_container(parts.cfg, resolve=True),
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
