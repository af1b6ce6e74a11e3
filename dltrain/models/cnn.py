"""Small convolutional networks for images: the classic MNIST net and the Cats vs Dogs net."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dltrain.errors import ConfigError
from dltrain.registry import MODELS


def image_shape(model: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """The (C, H, W) of `input_shape`; ConfigError when the data are not images."""
    shape = tuple(input_shape)
    if len(shape) != 3 or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ConfigError(
            f"model '{model}' needs images shaped (C, H, W), but the dataset's input_shape is "
            f"{shape}; choose an image dataset or a model for flat features (e.g. model=mlp)"
        )
    return shape


def dropout_problems(dropout: float) -> list[str]:
    """The problem with a dropout probability outside [0, 1), if any."""
    return [] if 0 <= dropout < 1 else [f"model.dropout: must be in [0, 1), got {dropout}"]


def _option_problems(channels: Sequence[int], kernel_size: int, hidden: int) -> list[str]:
    problems = []
    if not channels or any(not isinstance(c, int) or c < 1 for c in channels):
        problems.append(
            f"model.channels: must be a non-empty list of positive integers, got {list(channels)}"
        )
    if kernel_size < 1 or kernel_size % 2 == 0:
        # Odd kernels with padding k // 2 keep the size, so only the pools shrink the image.
        problems.append(f"model.kernel_size: must be a positive odd integer, got {kernel_size}")
    if hidden < 1:
        problems.append(f"model.hidden: must be a positive integer, got {hidden}")
    return problems


def _pooled_size(model: str, height: int, width: int, stages: int) -> tuple[int, int]:
    """Height and width after `stages` MaxPool2d(2); ConfigError if an image shrinks to nothing."""
    smallest = 2**stages
    if min(height, width) < smallest:
        raise ConfigError(
            f"model '{model}': images of {height}x{width} are too small for {stages} pooling "
            f"stages; they must be at least {smallest}x{smallest} (resize them or use fewer "
            "model.channels)"
        )
    return height // smallest, width // smallest


def conv_net(
    model: str,
    input_shape: Sequence[int],
    out_features: int,
    channels: Sequence[int],
    kernel_size: int,
    hidden: int,
    dropout: float,
    batch_norm: bool,
) -> nn.Sequential:
    """[conv -> (BatchNorm) -> ReLU -> MaxPool2d(2)] per channel count -> MLP head."""
    problems = _option_problems(channels, kernel_size, hidden) + dropout_problems(dropout)
    if problems:
        raise ConfigError(problems)
    in_channels, height, width = image_shape(model, input_shape)
    height, width = _pooled_size(model, height, width, len(channels))
    layers: list[nn.Module] = []
    for out_channels in channels:
        # The conv bias is redundant when BatchNorm's shift follows.
        layers.append(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                padding=kernel_size // 2,
                bias=not batch_norm,
            )
        )
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        in_channels = out_channels
    layers += [nn.Flatten(), nn.Linear(in_channels * height * width, hidden), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, out_features))
    return nn.Sequential(*layers)


@MODELS.register("cnn", tasks=("binary", "multiclass"), input="image")
def cnn(
    input_shape: tuple[int, ...],
    out_features: int,
    channels: list[int] = (16, 32),
    kernel_size: int = 3,
    hidden: int = 128,
    dropout: float = 0.0,
    batch_norm: bool = True,
) -> nn.Module:
    """The classic MNIST net: conv blocks with BatchNorm, then an MLP head (28x28: fc 1568->128)."""
    return conv_net(
        "cnn", input_shape, out_features, channels, kernel_size, hidden, dropout, batch_norm
    )


@MODELS.register("cnn_large", tasks=("binary", "multiclass"), input="image")
def cnn_large(
    input_shape: tuple[int, ...],
    out_features: int,
    channels: list[int] = (16, 32, 64, 128),
    hidden: int = 128,
    dropout: float = 0.0,
) -> nn.Module:
    """The Cats vs Dogs net: four 3x3 conv blocks without BatchNorm (224x224: fc 25088->128)."""
    return conv_net("cnn_large", input_shape, out_features, channels, 3, hidden, dropout, False)
