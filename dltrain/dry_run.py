"""trainer.dry_run: build everything, push one batch through training and evaluation, report."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf
from rich.table import Table
from torch import nn

from dltrain.built_run import BuiltRun, FitState
from dltrain.loop import evaluate, train_one_epoch


def dry_run(built: BuiltRun) -> dict[str, Any]:
    """One training step and one evaluation batch; prints config, parameters and shapes."""
    console = built.tracker.console
    console.print(OmegaConf.to_yaml(built.cfg, resolve=True))
    model = built.model
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    shapes: list[tuple[str, str, str]] = []
    hooks = [
        module.register_forward_hook(_recorder(name, shapes))
        for name, module in model.named_modules()
        if not list(module.children())
    ]
    batch = next(iter(built.batches["train"]))
    steps = [batch] * built.context.accumulate  # one optimiser step
    loss = train_one_epoch(
        model, steps, built.loss_fn, built.optimizer, FitState(), built.context, lambda *_: None
    )
    for hook in hooks:
        hook.remove()
    split = next((s for s in ("val", "test") if s in built.batches), "train")
    metrics, _, _ = evaluate(
        model,
        [next(iter(built.batches[split]))],
        built.loss_fn,
        built.context,
        built.data.meta.task,
        split,
    )
    table = Table(title=f"{built.cfg.model.name}: {total:,} parameters ({trainable:,} trainable)")
    for column in ("module", "type", "output shape"):
        table.add_column(column)
    table.add_row("(input)", type(batch[0]).__name__, str(tuple(batch[0].shape)))
    for row in shapes:
        table.add_row(*row)
    console.print(table)
    scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    console.print(f"one training step: train/loss {loss:.4f}; one {split} batch: {scores}")
    return {"parameters": total, "trainable": trainable, "train/loss": loss, **metrics}


def _recorder(name: str, shapes: list[tuple[str, str, str]]):
    """A forward hook noting a module's output shape (once per module)."""

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        if all(row[0] != name for row in shapes):
            shapes.append((name, type(module).__name__, str(shape)))

    return record
