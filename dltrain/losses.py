"""Losses. Models output raw scores; each loss applies its own link (sigmoid, log-softmax)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dltrain.data.splits import DataMeta
from dltrain.registry import LOSSES

REGRESSION = ("regression", "reconstruction")  # reconstruction: the target is the input
BINARY = ("binary",)
CLASSES = ("binary", "multiclass")


class TaskLoss(nn.Module):
    """Fits model outputs and targets to a torch criterion: link, shape and dtype."""

    def __init__(self, criterion: nn.Module, target: str, link: Callable | None = None):
        super().__init__()
        self.criterion = criterion
        self.target = target  # "value": float like outputs; "binary": one score; "class": index
        self.link = link

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.target == "binary":
            outputs, targets = outputs.squeeze(-1), targets.to(outputs.dtype)
        elif self.target == "value":
            targets = targets.to(outputs.dtype)
        if self.link is not None:
            outputs = self.link(outputs)
        return self.criterion(outputs, targets)


def _log_softmax(outputs: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(outputs, dim=-1)


@LOSSES.register("mse", tasks=REGRESSION)
def mse() -> nn.Module:
    """Mean squared error."""
    return TaskLoss(nn.MSELoss(), "value")


@LOSSES.register("mae", tasks=REGRESSION)
def mae() -> nn.Module:
    """Mean absolute error (L1 loss)."""
    return TaskLoss(nn.L1Loss(), "value")


@LOSSES.register("huber", tasks=REGRESSION)
def huber(delta: float = 1.0) -> nn.Module:
    """Huber loss: quadratic near zero, linear beyond delta."""
    return TaskLoss(nn.HuberLoss(delta=delta), "value")


@LOSSES.register("smooth_l1", tasks=REGRESSION)
def smooth_l1(beta: float = 1.0) -> nn.Module:
    """Smooth L1 loss (Huber divided by beta)."""
    return TaskLoss(nn.SmoothL1Loss(beta=beta), "value")


@LOSSES.register("bce", tasks=BINARY)
def bce() -> nn.Module:
    """Sigmoid output + binary cross-entropy, as in the classic `nn.Sigmoid()` + `nn.BCELoss()`."""
    return TaskLoss(nn.BCELoss(), "binary", link=torch.sigmoid)


@LOSSES.register("bce_with_logits", tasks=BINARY)
def bce_with_logits(pos_weight: float | None = None) -> nn.Module:
    """Binary cross-entropy on logits (numerically stable); pos_weight scales the positive class."""
    weight = None if pos_weight is None else torch.tensor(float(pos_weight))
    return TaskLoss(nn.BCEWithLogitsLoss(pos_weight=weight), "binary")


@LOSSES.register("cross_entropy", tasks=CLASSES, outputs="classes")
def cross_entropy(label_smoothing: float = 0.0) -> nn.Module:
    """Softmax cross-entropy on logits, one output per class."""
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)  # takes class indices as they are


@LOSSES.register("nll", tasks=CLASSES, outputs="classes")
def nll() -> nn.Module:
    """Log-softmax output + negative log-likelihood."""
    return TaskLoss(nn.NLLLoss(), "class", link=_log_softmax)


def num_outputs(meta: DataMeta, loss: str) -> int:
    """How many scores the model must output for this dataset and loss."""
    if meta.task in ("regression", "reconstruction"):
        return meta.num_targets
    if LOSSES.info(loss).outputs == "classes":
        return meta.num_classes
    return 1
