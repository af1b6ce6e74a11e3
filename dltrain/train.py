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

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import nn

from dltrain import checkpoint, distributed, files, visuals
from dltrain.config import (
    PRECISIONS,
    TrainerOptions,
    check_config,
    options,
    run_task,
    task_problems,
)
from dltrain.data.batches import make_batches, samples
from dltrain.data.splits import DataMeta, DataSplits
from dltrain.data.transforms import BatchTransform
from dltrain.device import seed_everything, select_device
from dltrain.distributed import World
from dltrain.dry_run import dry_run
from dltrain.loop import DivergedError, evaluate, fit
from dltrain.losses import num_outputs
from dltrain.parts import DivergenceCheck, FitState, Parts, StepOptions
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
from dltrain.tracking import Tracker, flatten

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """Train and test one configuration; writes the run dir and returns the metrics.json dict.

    With trainer.devices (x num_nodes) > 1 and no launcher, the ranks are started here; under a
    launcher (torchrun, srun) this process is one of them.
    """
    if distributed.should_spawn(cfg.trainer):
        return distributed.spawn(OmegaConf.to_container(cfg, resolve=True), Path(run_dir))
    with distributed.joined() as world:
        return run_rank(cfg, Path(run_dir), world, console)


def run_rank(
    cfg: DictConfig, run_dir: Path, world: World, console: Console | None = None
) -> dict[str, Any]:
    """run() in one process, one of `world`'s ranks (only rank 0 writes)."""
    started = time.perf_counter()
    saved = None
    if cfg.get("resume"):  # the same run dir, the checkpoint's config (epochs may grow)
        path = checkpoint.resume_path(cfg.resume)
        saved = checkpoint.load_for_resume(path)
        cfg = resumed_config(cfg, checkpoint.saved_config(saved["config"], path), path)
        run_dir = path.parent.parent
        if world.main:  # temp files of writes that a kill cut short
            for folder in (run_dir, run_dir / "checkpoints"):
                files.remove_orphans(folder)
    try:
        parts = build(cfg, Path(run_dir), console, saved["step"] if saved else None, world)
    except Exception as e:
        if not saved and world.main:  # a new run dir says why it holds no run; not a resumed one
            failed = {"status": "failed", "error": f"{type(e).__name__}: {e}", "step": 0}
            files.save_json_atomic(failed, Path(run_dir) / "metrics.json")
        raise
    if parts.trainer.dry_run:  # one batch each way, a report, no checkpoints or metrics
        with parts.tracker:
            return {"status": "dry_run", **dry_run(parts)}
    state = FitState()
    if saved:
        try:
            checkpoint.restore_training_state(parts, state, saved, path)
        except ConfigError:
            parts.tracker.close()
            raise
        log.info(f"resumed {run_dir} after epoch {state.epoch} + {state.progress.samples} samples")
    summary: dict[str, Any] = {}
    try:
        fit(parts, state)
        summary = {"status": "completed", **finish(parts, state)}
    except BaseException as e:
        status = (
            "diverged"
            if isinstance(e, DivergedError)
            else "interrupted"
            if isinstance(e, KeyboardInterrupt)
            else "failed"
        )
        summary = {"status": status, "error": f"{type(e).__name__}: {e}", "step": state.step}
        raise
    finally:
        summary.update(
            wall_time_s=round(time.perf_counter() - started, 3),
            seed=parts.trainer.seed,
            device=str(parts.opts.device),
            epochs_completed=state.epoch,
        )
        if world.main:
            try:
                files.save_json_atomic(summary, parts.run_dir / "metrics.json")
            except files.SaveError as e:  # a full disk: the error that got here counts
                log.error(f"no metrics.json: {e}")
        parts.tracker.close()
    return summary


# Settings of where a run trains; a resumed run takes them from its new command.
PLACES = ("trainer.device", "trainer.devices", "trainer.num_nodes", "trainer.strategy")


def resumed_config(cfg: DictConfig, saved: DictConfig, path: Path) -> DictConfig:
    """The checkpoint's config, with more epochs if asked; other values given are reported.

    A value left unset (null, e.g. a seed the first run drew) is no conflict.
    """
    given = flatten(OmegaConf.to_container(cfg, resolve=True))
    merged = saved
    ignored = [
        f"{key}={given[key]} (checkpoint: {value})"
        for key, value in flatten(OmegaConf.to_container(saved, resolve=True)).items()
        if given.get(key) not in (None, value) and key not in ("trainer.epochs", "resume", *PLACES)
    ]
    if ignored:
        log.warning(f"resume: the checkpoint's settings win over {', '.join(ignored)}")
    merged.trainer.epochs = max(cfg.trainer.epochs, merged.trainer.epochs)
    for key in PLACES:  # where it goes on is the new command's choice
        OmegaConf.update(merged, key, OmegaConf.select(cfg, key), force_add=True)
    merged.resume = str(path)
    return merged


def build(
    cfg: DictConfig,
    run_dir: Path,
    console: Console | None,
    resume_step: int | None = None,
    world: World | None = None,
) -> Parts:
    """Validate the config, then build data, model, loss, optimizer, schedule and tracker."""
    world = world or World()
    check_config(cfg)
    trainer = TrainerOptions(**options(cfg.trainer))
    distributed.check_world(cfg.trainer, world)
    if trainer.seed is None:  # record the drawn seed (rank 0's) so the run can be repeated
        seed = world.broadcast_object(random.SystemRandom().randrange(2**31))
        trainer.seed = cfg.trainer.seed = seed
    seed_everything(trainer.seed, trainer.deterministic)
    torch.autograd.set_detect_anomaly(trainer.detect_anomaly)  # set both ways: sweeps share it
    device = select_device(trainer.device, world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and DDP use the current device

    data = DATASETS.build(cfg.dataset.name, options(cfg.dataset))
    data.meta.task = run_task(cfg, data.meta.task)
    if problems := task_problems(cfg, data.meta.task):
        raise ConfigError(problems)
    regs = build_regularizers(options(cfg.get("regularization") or {}))
    model = build_model(cfg, data.meta, regs).to(device)
    if trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = LOSSES.build(cfg.loss.name, options(cfg.loss)).to(device)
    optimizer_kwargs = options(cfg.optimizer)
    if "l2" in regs:
        optimizer_kwargs["weight_decay"] = regs["l2"].weight_decay
    optimizer = OPTIMIZERS.build(cfg.optimizer.name, optimizer_kwargs, params=model.parameters())
    if trainer.compile:
        model.compile()  # in place: state_dict keys stay those of the plain model
    ddp = distributed.wrap(model, device) if world.size > 1 else None

    splits = {"train": data.train, "val": data.val, "test": data.test}
    batches = {
        name: make_batches(
            ds,
            trainer.batch_size,
            name == "train",
            trainer.seed,
            trainer.num_workers,
            device,
            world.rank,
            world.size,
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
    opts = StepOptions(
        device=device,
        transform=BatchTransform.for_data(data.meta.preprocessing, trainer.channels_last),
        amp_dtype=PRECISIONS[trainer.precision],
        scaler=torch.amp.GradScaler(device.type) if trainer.precision == "16-mixed" else None,
        l1=regs.get("l1"),
        grad_clip=regs.get("grad_clip"),
        schedule=schedule,
        log_every_n_steps=trainer.log_every_n_steps,
        reconstruct=data.meta.task == "reconstruction",
        world=world,
        divergence=DivergenceCheck(trainer.divergence_threshold),
    )

    tracker = start_run_dir(cfg, run_dir, data, console, resume_step) if world.main else None
    size = sum(p.numel() for p in model.parameters())
    ranks = f" x {world.size} ranks (DDP)" if world.size > 1 else ""
    log.info(
        f"run dir {run_dir} | device {device}{ranks} | {cfg.model.name} ({size:,} parameters) "
        f"on {cfg.dataset.name} ({data.meta.task}, {len(data.train)} training samples)"
    )
    return Parts(
        cfg=cfg,
        trainer=trainer,
        data=data,
        opts=opts,
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        regs=regs,
        batches=batches,
        run_dir=run_dir,
        tracker=tracker or Tracker.silent(),
        ddp=ddp,
    )


def start_run_dir(
    cfg: DictConfig,
    run_dir: Path,
    data: DataSplits,
    console: Console | None,
    resume_step: int | None = None,
) -> Tracker:
    """Write the resolved config (and tokenizer); open TensorBoard with the config and samples.

    A resumed run appends to its TensorBoard run, hiding what was logged after `resume_step`.
    """
    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    files.save_text_atomic(resolved, run_dir / "config.yaml")
    preprocessing = dict(data.meta.preprocessing)  # what new inputs must go through, as here
    if tokenizer := preprocessing.pop("tokenizer", None):
        files.save_text_atomic(tokenizer, run_dir / "tokenizer.json")
    if preprocessing:
        files.save_json_atomic(preprocessing, run_dir / "preprocessing.json")
    if resume_step is not None:
        return Tracker(run_dir, console, purge_step=resume_step + 1)
    tracker = Tracker(run_dir, console)
    tracker.text("config", f"```yaml\n{resolved}```")
    if len(data.meta.input_shape) == 3:  # images: show what the model is fed
        tracker.images("train/samples", samples(data.train, list(range(min(64, len(data.train))))))
    return tracker


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
        vocab=meta.vocab,
    )
    init = cfg.model.get("init") or {"name": "default"}
    return INITIALIZERS.build(init["name"], options(init), model=model)


def finish(parts: Parts, state: FitState) -> dict[str, Any]:
    """Restore the best weights, test them, save model.pt and log the final metrics.

    Every rank evaluates its share (the metrics are gathered); rank 0 alone writes and draws.
    """
    main = parts.world.main
    if main:
        best = checkpoint.load_checkpoint(parts.run_dir / "checkpoints" / "best.pt")
        parts.model.load_state_dict(best["model"])
        files.save_torch(parts.model.state_dict(), parts.run_dir / "model.pt")
        files.save_safetensors(parts.model.state_dict(), parts.run_dir / "model.safetensors")
    parts.world.broadcast_state(parts.model)  # rank 0 read best.pt: the others need not see it
    final = {k: v for k, v in state.best_metrics.items() if k.startswith("val/")}
    matrices, scored = {}, {}
    task = parts.data.meta.task
    if "test" in parts.batches:
        test, *scored["test"] = evaluate(
            parts.model, parts.batches["test"], parts.loss_fn, parts.opts, task, "test"
        )
        final.update(test)
        parts.tracker.scalars(test, state.step)
        if main:
            matrices = visuals.test_visuals(parts, *scored["test"], state.step)
    elif task == "reconstruction" and main:
        visuals.latent_space(parts, state.step)
    if task == "binary":  # ROC curves of every split, with the best weights
        for split in ("train", "val"):
            if split in parts.batches:
                batches = parts.batches[split]
                _, *scored[split] = evaluate(
                    parts.model, batches, parts.loss_fn, parts.opts, task, ""
                )
        if main:
            visuals.roc_figure(parts, scored, state.step)
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
        "last_metrics": state.last_metrics,
        "best_epoch": state.best_epoch,
        "monitor": parts.trainer.monitor,
        "stopped_early": state.stopped_early,
        "confusion_matrix": matrices,
        "steps": state.step,
    }
