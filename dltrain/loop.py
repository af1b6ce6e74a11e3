"""The training loop: epochs of training passes, validation, checkpoints, early stopping."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial

import torch
from torch import nn

from dltrain import training_state
from dltrain.built_run import BuiltRun, EpochProgress, FitState
from dltrain.metrics import compute_metrics
from dltrain.regularization import EarlyStopping
from dltrain.signals import GracefulStop, Interrupted
from dltrain.step import DivergedError, StepContext
from dltrain.tracking.console import track
from dltrain.trainer_options import TrainerOptions
from dltrain.visuals import epoch_visuals

log = logging.getLogger(__name__)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    context: StepContext,
    log_scalars: Callable[[dict[str, float], int], None],
    progress: EpochProgress | None = None,
    after_step: Callable[[int, Callable[[], EpochProgress]], None] | None = None,
) -> tuple[float, int]:
    """One pass over the training batches; returns (mean loss per sample, global step).

    `progress` carries the sums of an epoch resumed part-way; `after_step(step, progress)` runs
    after every update (mid-epoch checkpoints, stop requests); progress() gives the sums so far.
    The sums are Python floats: the one sync per step is the loss's (and its NaN check).
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    progress = progress or EpochProgress()
    total, samples = progress.loss_sum, progress.samples
    window, window_steps = progress.window_sum, progress.window_steps
    logged_lr = None
    for x, y in batches:
        x = context.inputs(x, train=True)
        y = x if context.reconstruct else y.to(context.device, non_blocking=True)
        out = context.forward(model, x)
        loss, finite = loss_of(loss_fn, out, y)
        # One sync per step; with several ranks the mean over all, so all stop on a NaN together.
        value, n = context.world.mean_loss(loss, len(y))
        context.divergence.check(step + 1, value, finite)  # before the update: weights stay finite
        objective = loss + context.l1.penalty(model) if context.l1 else loss
        grad_norm = update(objective, optimizer, params, context)
        step += 1
        total, samples = total + value * n, samples + n
        window, window_steps = window + value, window_steps + 1
        if step % context.log_every_n_steps == 0:
            values = {"train/loss": window / window_steps}
            if (lr := optimizer.param_groups[0]["lr"]) != logged_lr:  # each epoch and change
                values["lr"] = logged_lr = lr
            if grad_norm is not None:
                values["train/grad_norm"] = grad_norm.item()
            log_scalars(values, step)
            window, window_steps = 0.0, 0
        if after_step is not None:
            after_step(step, partial(EpochProgress, total, samples, window, window_steps))
    return total / max(samples, 1), step


def update(
    objective: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    context: StepContext,
) -> torch.Tensor | None:
    """Backward, clip, step the optimizer (and a per-step schedule); the gradient norm if clipped.

    With float16 the GradScaler scales the loss, and unscales before clipping.
    """
    scaler = context.scaler
    optimizer.zero_grad(set_to_none=True)
    (scaler.scale(objective) if scaler else objective).backward()
    grad_norm = None
    if context.grad_clip:
        if scaler:
            scaler.unscale_(optimizer)
        grad_norm = context.grad_clip.clip(params)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if context.schedule is not None and context.schedule.interval == "step":
        context.schedule.step()
    return grad_norm


def loss_of(loss_fn: nn.Module, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(the loss, whether the outputs were finite): a loss that rejects NaN inputs gives NaN.

    Some losses raise on non-finite inputs (BCE after a sigmoid of NaN); the NaN loss instead
    reaches every rank through the loss all-reduce, so all stop as diverged at the same step.
    """
    try:
        return loss_fn(out, y), True
    except RuntimeError:
        if bool(torch.isfinite(out).all()):
            raise
        return out.new_full((), float("nan")), False


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable,
    loss_fn: nn.Module,
    context: StepContext,
    task: str,
    prefix: str,
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Loss and task metrics over a whole split as `prefix/metric`; also raw outputs and targets."""
    model.eval()
    outputs, targets = [], []
    loss_sum = torch.zeros((), device=context.device)
    for x, y in batches:
        x = context.inputs(x, train=False)
        y = x if context.reconstruct else y.to(context.device, non_blocking=True)
        out = context.forward(model, x)
        loss_sum += loss_of(loss_fn, out, y)[0] * len(y)
        outputs.append(out.cpu())
        targets.append(y.cpu())
    # Each rank evaluated its share of the split: the metrics are of all of it, on every rank.
    outputs, targets, loss_sum = context.world.gather(
        torch.cat(outputs), torch.cat(targets), loss_sum.reshape(1)
    )
    if not bool(torch.isfinite(outputs).all()):
        split = f"the {prefix} split" if prefix else "an evaluation"
        raise DivergedError(None, f"the model's outputs on {split} are NaN or infinite")
    loss = loss_sum.sum() / len(targets)
    metrics = {"loss": loss.item(), **compute_metrics(outputs, targets, task)}
    return {f"{prefix}/{k}": v for k, v in metrics.items()}, outputs, targets


def fit(built: BuiltRun, state: FitState) -> None:
    """Epochs of training and validation, with checkpoints, schedules and early stopping.

    SIGINT / SIGTERM finish the current step, write checkpoints/last.pt and raise Interrupted.
    """
    trainer = built.trainer
    early_stopping: EarlyStopping | None = built.regularizers.get("early_stopping")
    train_batches = built.batches["train"]
    # Ranks started together get a Ctrl-C both from the terminal and from their launcher.
    same_signal_within = 1.0 if built.world.size > 1 else 0.0
    with built.tracker.progress() as progress, GracefulStop(same_signal_within) as stop:
        bar = progress.add_task("training", total=len(train_batches), status="")
        for epoch in range(state.epoch + 1, trainer.epochs + 1):
            batches = track(progress, bar, train_batches, f"epoch {epoch}/{trainer.epochs}")
            metrics = fit_epoch(built, state, batches, partial(after_step, built, state, stop))
            state.last_metrics = metrics
            schedule = built.context.schedule
            if schedule is not None and schedule.interval == "epoch":
                schedule.step(metrics)
            state.stopped_early = bool(early_stopping and early_stopping.should_stop(metrics))
            if improved(state, metrics, trainer):
                state.best_value, state.best_epoch = metrics.get(trainer.monitor), epoch
                state.best_metrics = metrics
                training_state.save(built, state, "best.pt")
            training_state.save(built, state, "last.pt", trainer.keep_checkpoints)
            if built.world.main:
                epoch_visuals(built, state.step, epoch)
            shown = list(metrics.items())[:3]  # train/loss, val/loss and the first task metric
            progress.update(bar, status="  ".join(f"{k} {v:.4f}" for k, v in shown))
            if built.world.any(bool(stop.requested)):
                raise Interrupted(stop.requested or "SIGTERM", state.step)
            if state.stopped_early:
                log.info(
                    f"early stopping after epoch {epoch}: {early_stopping.monitor} did not "
                    f"improve for {early_stopping.patience} epochs"
                )
                break


def after_step(
    built: BuiltRun, state: FitState, stop: GracefulStop, step: int, progress: Callable
) -> None:
    """Mid-epoch: a checkpoint every checkpoint_every_n_steps steps, and on a stop request."""
    batches = built.batches["train"]
    if batches.exhausted:
        return  # the epoch's own checkpoint follows its validation
    every = built.trainer.checkpoint_every_n_steps
    stopping = built.world.any(bool(stop.requested))  # all ranks stop after the same step
    if not (stopping or (every and step % every == 0)):
        return
    state.step, state.progress = step, progress()
    training_state.save(built, state, "last.pt", keep=built.trainer.keep_checkpoints)
    if stopping:
        raise Interrupted(stop.requested or "SIGTERM", step)


def fit_epoch(
    built: BuiltRun, state: FitState, train_batches: Iterable, after: Callable | None = None
) -> dict[str, float]:
    """Train one epoch, validate, log; returns {"train/loss": epoch mean, "val/...": ...}."""
    train_loss, state.step = train_one_epoch(
        built.trained,
        train_batches,
        built.loss_fn,
        built.optimizer,
        state.step,
        built.context,
        built.tracker.scalars,
        state.progress,
        after,
    )
    state.epoch += 1
    state.progress = EpochProgress()
    metrics = {"train/loss": train_loss}
    if "val" in built.batches:
        val, _, _ = evaluate(
            built.model,
            built.batches["val"],
            built.loss_fn,
            built.context,
            built.data.meta.task,
            "val",
        )
        metrics.update(val)
    val_only = {k: v for k, v in metrics.items() if k.startswith("val/")}
    built.tracker.scalars(
        {"epoch": state.epoch, "train/epoch_loss": train_loss, **val_only}, state.step
    )
    return metrics


def improved(state: FitState, metrics: dict[str, float], trainer: TrainerOptions) -> bool:
    """Whether this epoch is the best so far (the latest is best when nothing is monitored)."""
    value = metrics.get(trainer.monitor)
    if value is None or state.best_value is None:
        return True
    return value < state.best_value if trainer.monitor_mode == "min" else value > state.best_value
