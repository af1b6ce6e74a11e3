"""The training and evaluation passes over one split."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from dltrain.metrics import compute_metrics
from dltrain.optim import Schedule
from dltrain.regularization import L1, GradClip


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, value: float):
        super().__init__(
            f"training loss became {value} at step {step}. Usual causes: a learning rate too "
            "high (try a 10x smaller optimizer.lr), exploding gradients (add "
            "regularization=grad_clip), or a loss that does not fit the model output."
        )
        self.step = step


@dataclass
class StepOptions:
    """What each training step needs besides the model, data, loss and optimizer."""

    device: torch.device
    l1: L1 | None = None
    grad_clip: GradClip | None = None
    schedule: Schedule | None = None  # stepped here only when it is per-batch
    log_every_n_steps: int = 10


def train_one_epoch(
    model: nn.Module,
    batches: Iterable,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    opts: StepOptions,
    log: Callable[[dict[str, float], int], None],
) -> tuple[float, int]:
    """One pass over the training batches; returns (mean loss per sample, global step)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    total = torch.zeros((), device=opts.device)
    window = torch.zeros((), device=opts.device)
    samples = window_steps = 0
    for x, y in batches:
        x, y = x.to(opts.device, non_blocking=True), y.to(opts.device, non_blocking=True)
        loss = loss_fn(model(x).float(), y)
        objective = loss + opts.l1.penalty(model) if opts.l1 else loss
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        grad_norm = opts.grad_clip.clip(params) if opts.grad_clip else None
        optimizer.step()
        if opts.schedule is not None and opts.schedule.interval == "step":
            opts.schedule.step()
        step += 1
        if not torch.isfinite(loss):
            raise DivergedError(step, loss.item())
        total += loss.detach() * len(y)
        window += loss.detach()
        samples, window_steps = samples + len(y), window_steps + 1
        if step % opts.log_every_n_steps == 0:
            values = {
                "train/loss": (window / window_steps).item(),
                "lr": optimizer.param_groups[0]["lr"],
            }
            if grad_norm is not None:
                values["train/grad_norm"] = grad_norm.item()
            log(values, step)
            window.zero_()
            window_steps = 0
    return (total / max(samples, 1)).item(), step


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable,
    loss_fn: nn.Module,
    device: torch.device,
    task: str,
    prefix: str,
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Loss and task metrics over a whole split as `prefix/metric`; also raw outputs and targets."""
    model.eval()
    outputs, targets = [], []
    loss_sum = torch.zeros((), device=device)
    for x, y in batches:
        out = model(x.to(device, non_blocking=True)).float()
        loss_sum += loss_fn(out, y.to(device, non_blocking=True)) * len(y)
        outputs.append(out.cpu())
        targets.append(y)
    outputs, targets = torch.cat(outputs), torch.cat(targets)
    metrics = {"loss": (loss_sum / len(targets)).item(), **compute_metrics(outputs, targets, task)}
    return {f"{prefix}/{k}": v for k, v in metrics.items()}, outputs, targets
