"""The textbook training loop over tensors held on the device: gpu_bench.py's reference.

The recipe's model, AdamW and one-cycle schedule built by hand; images normalised once into
channels_last float32 on the device, sliced by a shuffled index drawn there; no sync until an
epoch ends. As fast as a hand-written loop gets without CUDA graphs.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from dltrain.data.splits import DataSplits
from dltrain.registry import MODELS
from dltrain.trainer_options import PRECISIONS


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (timings end there)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, amp: torch.dtype | None):
    """Mixed precision as dltrain runs it; no autocast at all in float32."""
    return torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()


@dataclass
class Plain:
    """The loop's model (and its compiled form), optimizer, schedule and scaler."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None


def plain_parts(cfg: DictConfig, steps: int, device: torch.device, compiled: bool) -> Plain:
    """The recipe's model, AdamW and one-cycle schedule (`steps` per epoch), built by hand."""
    torch.manual_seed(0)
    model = MODELS.build("cnn", {}, input_shape=(1, 28, 28), out_features=10, num_classes=10)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=cfg.scheduler.max_lr,
        epochs=cfg.trainer.epochs,
        steps_per_epoch=steps,
        pct_start=cfg.scheduler.pct_start,
    )
    amp = PRECISIONS[str(cfg.trainer.precision)]
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    net = torch.compile(model) if compiled else model
    return Plain(model, net, optimizer, schedule, scaler, amp)


def normalised(images: torch.Tensor, data: DataSplits, device: torch.device) -> torch.Tensor:
    """uint8 images as channels_last float32 on the device, normalised once as dltrain does."""
    stats = data.meta.preprocessing["normalize"]
    x = images.to(device).float().div_(255)
    x = (x - stats["mean"][0]) / stats["std"][0]
    return x.contiguous(memory_format=torch.channels_last)


def epoch(p: Plain, x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    """One pass over (x, y) in shuffled batches."""
    p.model.train()
    for index in torch.randperm(len(x), device=x.device).split(batch):
        with autocast(x.device, p.amp):
            out = p.net(x[index])
        loss = F.cross_entropy(out.float(), y[index])
        p.optimizer.zero_grad(set_to_none=True)
        p.scaler.scale(loss).backward()
        p.scaler.step(p.optimizer)
        p.scaler.update()
        p.schedule.step()


@torch.no_grad()
def accuracy(p: Plain, x: torch.Tensor, y: torch.Tensor) -> float:
    """Test accuracy, in batches of 1,000."""
    p.model.eval()
    right = 0
    for xb, yb in zip(x.split(1000), y.split(1000), strict=True):
        with autocast(x.device, p.amp):
            right += int((p.net(xb).argmax(1) == yb).sum())
    return right / len(y)


def plain_loop(
    cfg: DictConfig, data: DataSplits, device: torch.device, compiled: bool
) -> tuple[list[float], list[float]]:
    """(training seconds, test accuracy) of each epoch of the recipe, trained by hand."""
    (images, labels), (test_images, test_labels) = data.train.tensors, data.test.tensors
    x, y = normalised(images, data, device), labels.to(device)
    xt, yt = normalised(test_images, data, device), test_labels.to(device)
    batch = cfg.trainer.batch_size
    parts = plain_parts(cfg, -(-len(x) // batch), device, compiled)
    seconds, accuracies = [], []
    for _ in range(cfg.trainer.epochs):
        sync(device)
        start = time.perf_counter()
        epoch(parts, x, y, batch)
        sync(device)
        seconds.append(time.perf_counter() - start)
        accuracies.append(accuracy(parts, xt, yt))
    return seconds, accuracies
