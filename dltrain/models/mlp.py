"""Feed-forward network (multi-layer perceptron)."""

from __future__ import annotations

from typing import Literal

from torch import nn

from dltrain.errors import ConfigError
from dltrain.registry import MODELS

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}


@MODELS.register("mlp", tasks=("regression", "binary", "multiclass"))
def mlp(
    in_features: int,
    out_features: int,
    hidden_sizes: list[int] = (128, 64),
    activation: Literal["relu", "tanh", "sigmoid", "leaky_relu", "gelu"] = "relu",
    dropout: float = 0.0,
    input_dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Module:
    """Flatten -> [Linear -> (BatchNorm) -> activation -> (Dropout)] per hidden size -> Linear."""
    problems = [
        f"model 'mlp' option '{k}' must be in [0, 1), got {p}"
        for k, p in (("dropout", dropout), ("input_dropout", input_dropout))
        if not 0 <= p < 1
    ]
    if any(not isinstance(h, int) or h < 1 for h in hidden_sizes):
        problems.append(
            f"model 'mlp' option 'hidden_sizes' must be positive integers, got {hidden_sizes}"
        )
    if problems:
        raise ConfigError(problems)
    layers: list[nn.Module] = [nn.Flatten()]
    if input_dropout > 0:
        layers.append(nn.Dropout(input_dropout))
    width = in_features
    for size in hidden_sizes:
        layers.append(nn.Linear(width, size))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
