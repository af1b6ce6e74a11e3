"""Linear and logistic regression: one affine layer on the flattened input."""

from __future__ import annotations

from torch import nn

from dltrain.registry import MODELS


@MODELS.register("linear", tasks=("regression",))
def linear(in_features: int, out_features: int) -> nn.Module:
    """Linear regression y = xW^T + b."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features))


@MODELS.register("logistic", tasks=("binary", "multiclass"))
def logistic(in_features: int, out_features: int) -> nn.Module:
    """Logistic (softmax for several classes) regression; outputs logits, the loss adds the link."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features))
