"""The training loop: epochs of training passes and validation; the rest is callbacks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from functools import partial

import torch
from torch import nn

from dltrain import training_state
from dltrain.built_run import BuiltRun, EpochProgress, FitState
from dltrain.metrics import compute_metrics
from dltrain.signals import GracefulStop, Interrupted
from dltrain.step import DivergedError, StepContext, backward, loss_of, optimizer_step
from dltrain.tracking.console import metrics_line

log = logging.getLogger(__name__)
SYNCED = contextlib.nullcontext()  # gradients all-reduced as usual (reusable)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: FitState,
    context: StepContext,
    log_scalars: Callable[[dict[str, float], int], None],
    after_step: Callable[[], None] | None = None,
) -> float:
    """One pass over the training batches; returns its mean loss per sample.

    Every `context.accumulate` batches (and the pass's last) make one optimiser step, which
    state.step counts; `after_step()` runs after each. The epoch's sums go on in state.progress
    (a resumed epoch's sums so far). The one sync per batch is the loss's (and its NaN check).
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    progress, accumulate = state.progress, context.accumulate
    no_sync = getattr(model, "no_sync", None) if accumulate > 1 else None  # DDP
    logged_lr, pending, window_samples = None, 0, 0  # batches and samples not yet stepped on
    optimizer.zero_grad(set_to_none=True)
    for x, y in batches:
        x = context.inputs(x, train=context.augment)
        y = x if context.reconstruct else y.to(context.device, non_blocking=True)
        pending += 1
        stepping = pending == accumulate
        with SYNCED if stepping or no_sync is None else no_sync():
            out = context.forward(model, x)
            loss, finite = loss_of(loss_fn, out, y)
            # One sync per batch; with several ranks the mean over all, so all stop on a NaN.
            value, n = context.world.mean_loss(loss, len(y))
            context.divergence.check(state.step + 1, value, finite)  # before any update
            objective = loss + context.l1.penalty(model) if context.l1 else loss
            if accumulate > 1:  # each batch's share of the window's mean over its samples
                objective = objective * (len(y) / context.window_samples)
            backward(objective, context.scaler)
        progress.add(value, n)
        window_samples += len(y)
        if stepping:
            logged_lr = take_step(optimizer, params, state, context, log_scalars, logged_lr)
            pending = window_samples = 0
            if after_step is not None:
                after_step()
            if state.should_stop:
                break
    if pending:  # the pass ended inside an accumulation window: its mean is over fewer samples
        if no_sync is not None:
            context.world.average_gradients(params)  # its batches ran without DDP's all-reduce
        for p in params:
            if p.grad is not None:
                p.grad.mul_(context.window_samples / window_samples)
        take_step(optimizer, params, state, context, log_scalars, logged_lr)
        if after_step is not None:
            after_step()
    return progress.loss_sum / max(progress.samples, 1)


def take_step(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    state: FitState,
    context: StepContext,
    log_scalars: Callable[[dict[str, float], int], None],
    logged_lr: float | None,
) -> float | None:
    """The optimiser step of the batches so far; logs every log_every_n_steps; the lr logged."""
    lr = optimizer.param_groups[0]["lr"]  # the one this step uses
    grad_norm = optimizer_step(optimizer, params, context)
    state.step += 1
    progress = state.progress
    if state.step % context.log_every_n_steps == 0:
        values = {"train/loss": progress.window_sum / progress.window_steps}
        if lr != logged_lr:  # each epoch and change
            values["lr"] = logged_lr = lr
        if grad_norm is not None:
            values["train/grad_norm"] = grad_norm.item()
        log_scalars(values, state.step)
        progress.window_sum, progress.window_steps = 0.0, 0
    return logged_lr


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
    """Epochs of training and validation; the callbacks checkpoint, schedule and stop early.

    SIGINT / SIGTERM finish the current step, write checkpoints/last.pt and raise Interrupted.
    """
    trainer, callbacks = built.trainer, built.callbacks
    train_batches = built.batches["train"]
    # Ranks started together get a Ctrl-C both from the terminal and from their launcher.
    same_signal_within = 1.0 if built.world.size > 1 else 0.0
    with built.tracker.progress(trainer.epochs) as bar, GracefulStop(same_signal_within) as stop:
        callbacks.fire("on_fit_start", built, state)
        for epoch in range(state.epoch + 1, trainer.epochs + 1):
            built.tracker.epoch = epoch
            batches = callbacks.wrap_train_batches(train_batches)
            batches = bar.track(batches, epoch, partial(running_loss, state))
            metrics = fit_epoch(built, state, batches, partial(after_step, built, state, stop))
            bar.show(metrics)
            line = f"epoch {epoch}/{trainer.epochs} (step {state.step}): {metrics_line(metrics)}"
            built.tracker.record(line)
            if built.world.any(bool(stop.requested)):
                raise Interrupted(stop.requested or "SIGTERM", state.step)
            if state.should_stop:
                log.info(f"training stops after epoch {epoch}: {state.stop_reason}")
                break
        callbacks.fire("on_fit_end", built, state)


def running_loss(state: FitState) -> float | None:
    """The mean train loss of the epoch so far (None before its first batch)."""
    progress = state.progress
    return progress.loss_sum / progress.samples if progress.samples else None


def after_step(built: BuiltRun, state: FitState, stop: GracefulStop | None = None) -> None:
    """After each optimiser step: the callbacks, trainer.max_steps, a stop request."""
    built.callbacks.fire("on_step_end", built, state)
    max_steps = built.trainer.max_steps
    if max_steps is not None and state.step >= max_steps and not state.should_stop:
        state.should_stop, state.stop_reason = True, f"trainer.max_steps={max_steps} reached"
    batches = built.batches["train"]
    if stop is None or batches.exhausted:
        return  # at the epoch's end its own checkpoint follows, then the stop
    if built.world.any(bool(stop.requested)):  # all ranks stop after the same step
        training_state.save(built, state, "last.pt", keep=built.trainer.keep_checkpoints)
        raise Interrupted(stop.requested or "SIGTERM", state.step)


def fit_epoch(
    built: BuiltRun, state: FitState, train_batches: Iterable, after: Callable | None = None
) -> dict[str, float]:
    """Train one epoch, validate when due, log, run the epoch's callbacks; returns its metrics
    ({"train/loss": epoch mean, "val/...": ...})."""
    callbacks = built.callbacks
    train_loss = train_one_epoch(
        built.trained,
        train_batches,
        built.loss_fn,
        built.optimizer,
        state,
        built.context,
        built.tracker.scalars,
        after,
    )
    if state.should_stop:  # cut short: the next pass (of a resumed run) starts afresh
        built.batches["train"].end_pass()
    state.epoch += 1
    state.progress = EpochProgress()
    callbacks.fire("on_train_epoch_end", built, state)
    metrics = {"train/loss": train_loss}
    validated = "val" in built.batches and validation_due(built, state)
    if validated:
        val, _, _ = evaluate(
            built.evaluated,
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
    state.last_metrics = metrics
    if validated or "val" not in built.batches:
        callbacks.fire("on_validation_end", built, state, metrics)
    callbacks.fire("on_epoch_end", built, state, metrics)
    return metrics


def validation_due(built: BuiltRun, state: FitState) -> bool:
    """Every trainer.val_every_n_epochs epochs, and at the last (also one cut short)."""
    every, last = built.trainer.val_every_n_epochs, built.trainer.epochs
    return state.epoch % every == 0 or state.epoch >= last or state.should_stop
