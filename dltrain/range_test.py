"""The learning-rate range test (Leslie Smith, 2015): train while the lr grows exponentially from
tiny to huge, follow the smoothed loss until it diverges, and suggest the lr where it fell fastest.

Each step is a training step as the loop takes it (precision, accumulation, L1, clipping), and
afterwards the run is exactly as built: weights, optimizer, scaler, RNGs and batch order are put
back, so the training that follows is the one it would have been without the test.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from dltrain import training_state
from dltrain.built_run import BuiltRun
from dltrain.errors import ConfigError
from dltrain.step import backward, loss_of, optimizer_step

MIN_LR, MAX_LR = 1e-7, 10.0  # eight decades: from "nothing happens" to "anything diverges"
# 200 steps with an average over ~20 of them (0.8 of a decade) found the fall on every small
# problem tried; fastai's and Lightning's 100 steps at 0.98 average over ~4 decades, a lag that
# on digits hid SGD's fall entirely and put SGD with momentum's suggestion where it diverges.
STEPS = 200
BETA = 0.95  # the exponential smoothing of the per-batch (noisy) loss
DIVERGENCE = 4.0  # the sweep stops once the smoothed loss is this many times its best
MIN_FALL = 0.1  # a suggestion needs the smoothed loss to fall by at least this fraction
BEGUN = 0.1  # the fall begins where the smoothed loss has gone this share of the way down
MIN_STEPS = 10  # fewer finite losses than this say nothing about where the loss falls


@dataclass
class RangeTest:
    """What the sweep saw, and what it suggests."""

    lrs: list[float]  # the lr of each step
    losses: list[float]  # each step's training loss (the last may be NaN or inf)
    smoothed: list[float]  # their bias-corrected exponential average (NaN after a non-finite)
    suggestion: float | None  # the lr to train with; None when the loss never clearly fell
    falling: tuple[float, float] | None  # the lrs over which the smoothed loss fell
    stopped_early: str  # why the sweep stopped before max_lr ("" when it got there)
    no_suggestion: str  # why there is no suggestion ("" when there is one)


def range_test(
    built: BuiltRun,
    min_lr: float = MIN_LR,
    max_lr: float = MAX_LR,
    steps: int = STEPS,
    beta: float = BETA,
    divergence: float = DIVERGENCE,
) -> RangeTest:
    """Sweep the lr of every param group from min_lr to max_lr over `steps` optimiser steps."""
    check_settings(min_lr, max_lr, steps, beta, divergence)
    ratio = max_lr / min_lr
    lrs = [min_lr * ratio ** (i / max(steps - 1, 1)) for i in range(steps)]
    with left_as_it_was(built):
        losses, smoothed, stopped = sweep(built, lrs, beta, divergence)
    lrs = lrs[: len(losses)]
    suggestion, falling, why = suggest(lrs, smoothed, warm_up=round(1 / (1 - beta)))
    return RangeTest(lrs, losses, smoothed, suggestion, falling, stopped, why)


def check_settings(
    min_lr: float, max_lr: float, steps: int, beta: float, divergence: float
) -> None:
    """Every setting that cannot make a sweep, at once."""
    problems = []
    if not (math.isfinite(min_lr) and math.isfinite(max_lr) and 0 < min_lr < max_lr):
        problems.append(f"--min-lr {min_lr:g} and --max-lr {max_lr:g}: need 0 < min < max")
    if steps < MIN_STEPS:
        problems.append(f"--steps: at least {MIN_STEPS}, got {steps}")
    if not 0 <= beta < 1:
        problems.append(f"--beta: the smoothing must be in [0, 1), got {beta:g}")
    if not divergence > 1:
        problems.append(
            f"--divergence: must be more than 1 (times the best loss), got {divergence:g}"
        )
    if problems:
        raise ConfigError(problems)


def sweep(
    built: BuiltRun, lrs: list[float], beta: float, divergence: float
) -> tuple[list[float], list[float], str]:
    """Train one step at each lr until the loss diverges: (losses, smoothed, why it stopped)."""
    batches = endless(built.batches["train"])
    built.trained.train()
    built.optimizer.zero_grad(set_to_none=True)
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    for i, lr in enumerate(lrs):
        for group in built.optimizer.param_groups:
            group["lr"] = lr
        loss = train_step(built, batches)
        losses.append(loss)
        if not math.isfinite(loss):
            smoothed.append(math.nan)
            return losses, smoothed, f"the loss became {loss} at lr {lr:.2e}"
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** (i + 1)))  # without the pull towards the 0 start
        if smoothed[-1] > divergence * best:
            why = f"the smoothed loss {smoothed[-1]:.4g} passed {divergence:g}x its best {best:.4g}"
            return losses, smoothed, f"{why} at lr {lr:.2e}"
        best = min(best, smoothed[-1])
    return losses, smoothed, ""


def train_step(built: BuiltRun, batches: Iterator[Any]) -> float:
    """One optimiser step as train_one_epoch takes it; the mean loss of its batches per sample.

    A non-finite loss is returned before any update (its gradients are dropped).
    """
    model, context = built.trained, built.context
    total, samples = 0.0, 0
    for _ in range(context.accumulate):
        x, y = next(batches)
        x = context.inputs(x, train=context.augment)
        y = x if context.reconstruct else y.to(context.device, non_blocking=True)
        loss, finite = loss_of(built.loss_fn, context.forward(model, x), y)
        value = loss.item() if finite else math.nan
        if not math.isfinite(value):
            built.optimizer.zero_grad(set_to_none=True)
            return value
        objective = loss + context.l1.penalty(model) if context.l1 else loss
        if context.accumulate > 1:  # each batch's share of the window's mean, as the loop has it
            objective = objective * (len(y) / context.window_samples)
        backward(objective, context.scaler)
        total, samples = total + value * len(y), samples + len(y)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer_step(built.optimizer, params, context)
    return total / samples


def endless(batches: Iterable[Any]) -> Iterator[Any]:
    """The training batches pass after pass (a sweep may be longer than an epoch)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ConfigError("the training split gives no batches to sweep over")


def suggest(
    lrs: list[float], smoothed: list[float], warm_up: int = 0
) -> tuple[float | None, tuple[float, float] | None, str]:
    """(the lr of steepest fall, the lrs over which the loss fell, why there is no suggestion).

    The smoothed loss is followed from its highest point before its minimum down to that
    minimum; the suggestion is the lr where it fell fastest per decade (over about one smoothing
    span, `warm_up` steps, so that one noisy batch cannot pass for the fall). It sits inside
    the fall by construction, and unlike the minimum (or a tenth of it) it is barely moved by
    the smoothing's lag: the average of a falling curve falls fastest where the curve does.
    """
    finite = np.array([s for s in smoothed if math.isfinite(s)])
    if len(finite) < MIN_STEPS:
        return None, None, f"the sweep stopped after {len(finite)} steps, too few to judge"
    # The first steps' average rests on a few losses: their noise could pass for the fall.
    start = min(warm_up, len(finite) // 4)
    low = start + int(finite[start:].argmin())
    high = start + int(finite[start : low + 1].argmax())
    fall = finite[high] - finite[low]
    if low - high < 2 or fall < MIN_FALL * abs(finite[high]):
        why = f"the smoothed loss never fell by {MIN_FALL:.0%}: from {finite[high]:.4g} to "
        hint = "widen the range (--min-lr, --max-lr) or check the data and the loss"
        return None, None, f"{why}{finite[low]:.4g} at its lowest; {hint}"
    steepest = high + int(window_slopes(finite[high : low + 1], max(warm_up // 2, 1)).argmin())
    begun = high + int(np.nonzero(finite[high:] < finite[high] - BEGUN * fall)[0][0]) - 1
    return lrs[steepest], (lrs[max(begun, high)], lrs[low]), ""


def window_slopes(curve: np.ndarray, half: int) -> np.ndarray:
    """Each point's slope per step over the points up to `half` either side (within the curve):
    a single noisy batch moves the smoothed loss more in one step than a real fall does."""
    ends = np.arange(len(curve))
    before, after = np.maximum(ends - half, 0), np.minimum(ends + half, len(curve) - 1)
    return (curve[after] - curve[before]) / np.maximum(after - before, 1)


@contextmanager
def left_as_it_was(built: BuiltRun) -> Iterator[None]:
    """Put back everything a sweep changes when the block ends (also when it fails)."""
    model, optimizer, scaler = built.model, built.optimizer, built.context.scaler
    batches = built.batches["train"]
    saved = {
        "model": copy.deepcopy(model.state_dict()),
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "scaler": copy.deepcopy(scaler.state_dict()) if scaler else None,
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "rng": training_state.rng_states(),
        "batches": (batches.generator.get_state(), batches.epoch_start.clone()),
        "position": (batches.position, batches.skip),
    }
    try:
        yield
    finally:
        model.load_state_dict(saved["model"])  # copied into the same tensors the optimizer holds
        optimizer.load_state_dict(saved["optimizer"])
        if scaler:
            scaler.load_state_dict(saved["scaler"])
        for param, grad in zip(model.parameters(), saved["grads"], strict=True):
            param.grad = grad
        for module, training in zip(model.modules(), saved["modes"], strict=True):
            module.training = training
        training_state.set_rng_states(saved["rng"])
        batches.generator.set_state(saved["batches"][0])
        batches.epoch_start = saved["batches"][1]
        batches.position, batches.skip = saved["position"]
