"""Weight initialisation schemes, applied to every weight matrix/kernel of a model."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dltrain.registry import INITIALIZERS


def _apply(model: nn.Module, init_weight, zero_bias: bool = True) -> nn.Module:
    # Only matrices and kernels (dim >= 2): norm-layer scales and shifts keep their defaults.
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("weight") and param.dim() >= 2:
                init_weight(param)
            elif leaf.startswith("bias") and zero_bias:
                nn.init.zeros_(param)
    return model


@INITIALIZERS.register("default")
def default(model: nn.Module) -> nn.Module:
    """Keep PyTorch's own per-layer initialisation."""
    return model


@INITIALIZERS.register("uniform")
def uniform(model: nn.Module, a: float = -0.05, b: float = 0.05) -> nn.Module:
    """Weights from U(a, b), biases zero."""
    return _apply(model, lambda w: nn.init.uniform_(w, a, b))


@INITIALIZERS.register("normal")
def normal(model: nn.Module, mean: float = 0.0, std: float = 0.01) -> nn.Module:
    """Weights from N(mean, std^2), biases zero."""
    return _apply(model, lambda w: nn.init.normal_(w, mean, std))


@INITIALIZERS.register("xavier")
def xavier(
    model: nn.Module, gain: float = 1.0, distribution: Literal["uniform", "normal"] = "uniform"
) -> nn.Module:
    """Glorot initialisation (uniform or normal), biases zero."""
    fn = nn.init.xavier_normal_ if distribution == "normal" else nn.init.xavier_uniform_
    return _apply(model, lambda w: fn(w, gain=gain))


@INITIALIZERS.register("kaiming")
def kaiming(
    model: nn.Module,
    nonlinearity: Literal["relu", "leaky_relu", "tanh", "sigmoid", "linear"] = "relu",
    mode: Literal["fan_in", "fan_out"] = "fan_in",
    distribution: Literal["uniform", "normal"] = "normal",
) -> nn.Module:
    """He initialisation for ReLU-family networks, biases zero."""
    fn = nn.init.kaiming_uniform_ if distribution == "uniform" else nn.init.kaiming_normal_
    return _apply(model, lambda w: fn(w, mode=mode, nonlinearity=nonlinearity))


@INITIALIZERS.register("zeros")
def zeros(model: nn.Module) -> nn.Module:
    """All weights and biases zero (a classic demonstration of why symmetry must be broken)."""
    return _apply(model, nn.init.zeros_)
