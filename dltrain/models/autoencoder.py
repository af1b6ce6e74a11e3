"""Fully connected autoencoder: the input squeezed through a small latent code and rebuilt."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from dltrain.errors import ConfigError
from dltrain.models.mlp import ACTIVATIONS
from dltrain.registry import MODELS

OUTPUTS = {"sigmoid": nn.Sigmoid, "none": nn.Identity}


class Autoencoder(nn.Module):
    """Flattened input -> encoder -> latent code -> mirrored decoder -> input's shape."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        sizes: list[int],
        activation: str,
        output_activation: str,
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        widths = [math.prod(input_shape), *sizes]
        self.encoder = _stack(widths, activation, last=nn.Identity())
        self.decoder = _stack(widths[::-1], activation, last=OUTPUTS[output_activation]())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent codes (N, latent_dim)."""
        return self.encoder(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x)).view(-1, *self.input_shape)


def _stack(widths: list[int], activation: str, last: nn.Module) -> nn.Sequential:
    """Linear layers through `widths`, `activation` between them and `last` after the final one."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        layers += [nn.Linear(a, b), last if i == len(widths) - 2 else ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


@MODELS.register("autoencoder", tasks=("reconstruction",), task="reconstruction")
def autoencoder(
    input_shape: tuple[int, ...],
    vocab: list[str] | None = None,
    hidden_sizes: list[int] = (128, 64, 12),
    latent_dim: int = 3,
    activation: Literal["relu", "tanh", "sigmoid", "leaky_relu", "gelu"] = "tanh",
    output_activation: Literal["sigmoid", "none"] = "sigmoid",
) -> nn.Module:
    """Encoder input -> hidden_sizes -> latent_dim (linear code); decoder the mirror image.

    `output_activation: sigmoid` fits inputs in [0, 1] (images with dataset.normalize=false);
    `none` fits standardised tabular features.
    """
    if vocab:
        raise ConfigError(
            "model 'autoencoder' reconstructs image or tabular features, not token ids; "
            "choose an image or tabular dataset"
        )
    sizes = [*hidden_sizes, latent_dim]
    if any(not isinstance(s, int) or s < 1 for s in sizes):
        raise ConfigError(
            "model.hidden_sizes and model.latent_dim must be positive integers, got "
            f"{list(hidden_sizes)} and {latent_dim}"
        )
    return Autoencoder(input_shape, sizes, activation, output_activation)
