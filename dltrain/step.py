"""How each training step runs (StepContext, its parts) and when a run has diverged."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from dltrain.data.transforms import BatchTransform
from dltrain.optim import Schedule
from dltrain.regularization import L1, GradClip
from dltrain.world import World


class DivergedError(RuntimeError):
    """Training went off the rails: a loss or outputs that are not finite, or a loss exploding."""

    def __init__(self, step: int | None, what: str):
        where = "" if step is None else f" at step {step}"
        super().__init__(
            f"{what}{where}. Usual causes: a learning rate too high (try a 10x smaller "
            "optimizer.lr), exploding gradients (add regularization=grad_clip), inputs that are "
            "not finite or huge, or a loss that does not fit the model output."
        )
        self.step, self.what = step, what

    def __reduce__(self) -> tuple:  # pickled to a parent process as itself (distributed runs)
        return (type(self), (self.step, self.what))


@dataclass
class DivergenceCheck:
    """Judges each step's loss: not finite, or `threshold` times the first step's, is divergence.

    A loss that grew 10,000-fold has left any useful region even if it is still a number (an
    lr of 1e6 ends at chance accuracy with a finite loss); threshold 0 checks finiteness only.
    """

    threshold: float = 1e4
    reference: float | None = None  # the first step's loss (kept in checkpoints)

    def check(self, step: int, value: float, outputs_finite: bool = True) -> None:
        """Raise DivergedError if the loss `value` of `step` says the run diverged."""
        if not outputs_finite:
            raise DivergedError(step, "the model's outputs became NaN or infinite")
        if not math.isfinite(value):
            raise DivergedError(step, f"the training loss became {value}")
        if self.reference is None:
            self.reference = abs(value)
        elif self.threshold and value > self.threshold * max(self.reference, 1e-12):
            raise DivergedError(
                step,
                f"the training loss exploded to {value:.4g}, over {self.threshold:g}x the first "
                f"step's {self.reference:.4g} (trainer.divergence_threshold)",
            )


@dataclass
class StepContext:
    """How each batch is run: device, input transform, precision, per-step regularization."""

    device: torch.device
    transform: BatchTransform | None = None
    amp_dtype: torch.dtype | None = None  # autocast dtype for mixed precision; None: float32
    scaler: torch.amp.GradScaler | None = None  # float16 only
    l1: L1 | None = None
    grad_clip: GradClip | None = None
    schedule: Schedule | None = None  # the run's; stepped by its callback
    log_every_n_steps: int = 10
    accumulate: int = 1  # batches whose gradients add up to one optimiser step
    window_samples: int = 0  # samples of a whole accumulation window on this rank
    augment: bool = True  # training batches go through the augmentation (off to overfit)
    reconstruct: bool = False  # the target is the (transformed) input itself
    world: World = field(default_factory=World)  # the ranks that share each step and split
    divergence: DivergenceCheck = field(default_factory=DivergenceCheck)

    def inputs(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """A batch of inputs on the device, transformed."""
        x = x.to(self.device, non_blocking=True)
        if self.transform is not None:
            return self.transform(x, train)
        return x.float().div_(255) if x.dtype == torch.uint8 else x  # stored images

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The model's outputs for a batch as float32: under autocast with mixed precision."""
        if self.amp_dtype is None:
            return model(x)  # no torch.autocast at all: even disabled it costs time every step
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            return model(x).float()  # the loss runs outside autocast: some are unsafe in fp16


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


def backward(objective: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """Gradients of `objective`, added to what the parameters hold (scaled with float16)."""
    (scaler.scale(objective) if scaler else objective).backward()


def optimizer_step(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], context: StepContext
) -> torch.Tensor | None:
    """Clip, step the optimizer, clear the gradients; the gradient norm if clipped by norm.

    With float16 the GradScaler unscales before clipping, and skips steps with inf gradients.
    """
    scaler, grad_norm = context.scaler, None
    if context.grad_clip:
        if scaler:
            scaler.unscale_(optimizer)
        grad_norm = context.grad_clip.clip(params)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm
