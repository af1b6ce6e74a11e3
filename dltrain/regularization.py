"""Regularization options; `regularization=[l1,early_stopping]` selects several at once.

Each is a small object that the training recipe consults at one explicit point:
dropout and l2 when building the model and optimizer, l1 and grad_clip in every step;
early_stopping is a callback, judging every validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from dltrain.callback import Callback
from dltrain.errors import ConfigError
from dltrain.registry import REGULARIZERS

if TYPE_CHECKING:
    from dltrain.built_run import BuiltRun, FitState


@REGULARIZERS.register("l1")
@dataclass
class L1:
    """Adds lam * sum(|w|) over weight matrices/kernels to the loss (sparsifies weights)."""

    lam: float = 1e-4

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """The L1 term for the current weights (biases and norm scales are not penalised)."""
        weights = [p for n, p in model.named_parameters() if p.dim() >= 2 and "weight" in n]
        return self.lam * sum(w.abs().sum() for w in weights)


@REGULARIZERS.register("l2")
@dataclass
class L2:
    """L2 penalty applied as the optimizer's weight decay."""

    weight_decay: float = 1e-3


@REGULARIZERS.register("dropout")
@dataclass
class Dropout:
    """Sets the model's dropout probability (the model must have a `dropout` option)."""

    p: float = 0.1
    input_p: float | None = None  # dropout on the input too, for models with `input_dropout`


@REGULARIZERS.register("grad_clip")
@dataclass
class GradClip:
    """Clips gradients by total norm (max_norm) and/or elementwise value (max_value)."""

    max_norm: float | None = 1.0
    max_value: float | None = None
    norm_type: float = 2.0

    def __post_init__(self) -> None:
        if self.max_norm is None and self.max_value is None:
            raise ConfigError("regularization 'grad_clip' needs max_norm or max_value")

    def clip(self, parameters: list[torch.Tensor]) -> torch.Tensor | None:
        """Clip in place; returns the total gradient norm before clipping when clipping by norm."""
        if self.max_value is not None:
            nn.utils.clip_grad_value_(parameters, self.max_value)
        if self.max_norm is not None:
            return nn.utils.clip_grad_norm_(parameters, self.max_norm, norm_type=self.norm_type)
        return None


@REGULARIZERS.register("early_stopping")
@dataclass
class EarlyStopping(Callback):
    """Stops training when `monitor` has not improved by min_delta for `patience` validations."""

    monitor: str = "val/loss"
    mode: Literal["min", "max"] = "min"
    patience: int = 5
    min_delta: float = 0.0
    best: float = field(default=math.nan, init=False)
    bad_epochs: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.patience < 1 or self.min_delta < 0:
            raise ConfigError(
                "regularization 'early_stopping' needs patience >= 1 and min_delta >= 0, got "
                f"patience={self.patience}, min_delta={self.min_delta}"
            )

    def should_stop(self, metrics: dict[str, float]) -> bool:
        """Record this validation's value; True once patience is exhausted."""
        value = metrics[self.monitor]
        sign = 1 if self.mode == "min" else -1
        if math.isnan(self.best) or sign * (self.best - value) > self.min_delta:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def on_validation_end(self, run: BuiltRun, state: FitState, metrics: dict[str, float]) -> None:
        if self.should_stop(metrics):
            state.should_stop = state.stopped_early = True
            state.stop_reason = (
                f"early stopping: {self.monitor} did not improve for {self.patience} validations"
            )

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to resume the patience count."""
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Any) -> None:
        """Resume the patience count."""
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])


def build_regularizers(options: dict) -> dict[str, object]:
    """Build every selected option: {name: object}."""
    return {name: REGULARIZERS.build(name, kwargs or {}) for name, kwargs in options.items()}
