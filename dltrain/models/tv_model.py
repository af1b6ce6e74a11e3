"""Any torchvision classification model, with a new head, optional local weights and freezing."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from dltrain.errors import ConfigError, did_you_mean
from dltrain.models.cnn import dropout_problems, image_shape
from dltrain.registry import MODELS

IMAGENET_CLASSES = 1000  # every torchvision classification model is built with this head
AUX_HEADS = ("aux1", "aux2", "AuxLogits")  # googlenet and inception_v3 side classifiers


def architectures() -> list[str]:
    """Names of torchvision's classification models (no detection, segmentation, video...)."""
    return torchvision.models.list_models(module=torchvision.models)


def resolve_weights(arch: str, weights: str | None) -> WeightsEnum | None:
    """The torchvision weights entry called `weights` for `arch` (None when not set)."""
    if weights is None:
        return None
    choices = list(torchvision.models.get_model_weights(arch).__members__)
    if weights not in choices:
        raise ConfigError(
            f"model.weights: '{weights}' is not a weights name of {arch}."
            f"{did_you_mean(weights, choices)} Choose one of: {', '.join(choices)}"
        )
    return torchvision.models.get_model_weights(arch)[weights]


def cached_weights_file(weights: WeightsEnum) -> Path:
    """Where torch.hub caches `weights`; ConfigError naming that path when the file is absent."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    if not path.is_file():
        raise ConfigError(
            f"model.weights: {weights} is not in the local torch hub cache: expected the file "
            f"{path}. dltrain does not download weights; download {weights.url} on a machine "
            f"with internet access and copy it to {path} (or set TORCH_HOME)"
        )
    return path


def load_architecture(arch: str, weights: WeightsEnum | None) -> nn.Module:
    """The torchvision model, its weights read from the local cache only, without aux heads."""
    if weights is None:
        extra = {"init_weights": True} if arch in ("googlenet", "inception_v3") else {}
        model = torchvision.models.get_model(arch, weights=None, **extra)
    else:
        cached_weights_file(weights)
        # The file is in the cache, so torchvision reads it from there instead of downloading;
        # its builder also applies each family's loading quirks (densenet keys, ViT image size).
        model = torchvision.models.get_model(arch, weights=weights)
    if getattr(model, "aux_logits", False):
        # In training these return (logits, aux) tuples that dltrain's losses cannot take.
        model.aux_logits = False
        for name in AUX_HEADS:
            if hasattr(model, name):
                setattr(model, name, None)
    return model


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def replace_head(model: nn.Module, arch: str, out_features: int, dropout: float) -> nn.Module:
    """Swap the last Linear/Conv2d (the 1000-class ImageNet head) for one giving `out_features`."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    name, old = layers[-1]
    if isinstance(old, nn.Linear) and old.out_features == IMAGENET_CLASSES:
        new: nn.Module = nn.Linear(old.in_features, out_features)
    elif isinstance(old, nn.Conv2d) and old.out_channels == IMAGENET_CLASSES:
        new = nn.Conv2d(old.in_channels, out_features, old.kernel_size, old.stride, old.padding)
    else:
        raise ConfigError(f"model.arch: cannot find the classification head of '{arch}'")
    head = nn.Sequential(nn.Dropout(dropout), new) if dropout > 0 else new
    _replace(model, name, head)
    return head


def replace_stem(
    model: nn.Module, arch: str, in_channels: int, pretrained: bool
) -> nn.Module | None:
    """Swap the first conv for one taking `in_channels` (None when it already takes them)."""
    name, old = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if old.in_channels == in_channels:
        return None
    if old.in_channels != 3 or old.groups != 1:
        raise ConfigError(
            f"model.arch: cannot adapt '{arch}' to {in_channels}-channel images (its first layer "
            "is not a plain 3-channel convolution); use 3-channel images"
        )
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    if pretrained:
        # Mean RGB filter on every channel, rescaled: a gray image replicated to RGB matches.
        with torch.no_grad():
            mean = old.weight.mean(dim=1, keepdim=True)
            new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * 3 / in_channels)
            if old.bias is not None:
                new.bias.copy_(old.bias)
    _replace(model, name, new)
    if getattr(model, "transform_input", False):
        model.transform_input = False  # googlenet's RGB renormalisation needs 3 channels
    return new


def _check_size(model: nn.Module, arch: str, height: int, width: int) -> None:
    size = getattr(model, "image_size", None)  # vision transformers take one size only
    if isinstance(size, int) and (height, width) != (size, size):
        raise ConfigError(
            f"model.arch: '{arch}' takes {size}x{size} images only, got {height}x{width}; "
            "resize the images or choose another arch"
        )


@MODELS.register("tv_model", tasks=("binary", "multiclass"), input="image")
def tv_model(
    input_shape: tuple[int, ...],
    out_features: int,
    arch: str = "resnet18",
    weights: str | None = None,
    freeze_backbone: bool = False,
    dropout: float = 0.0,
) -> nn.Module:
    """A torchvision classifier by name, with a new `out_features` head and stem for C != 3."""
    if problems := dropout_problems(dropout):
        raise ConfigError(problems)
    if arch not in architectures():
        raise ConfigError(
            f"model.arch: unknown torchvision classification model '{arch}'."
            f"{did_you_mean(arch, architectures())} Choose one of: {', '.join(architectures())}"
        )
    channels, height, width = image_shape("tv_model", input_shape)
    resolved = resolve_weights(arch, weights)
    model = load_architecture(arch, resolved)
    _check_size(model, arch, height, width)
    head = replace_head(model, arch, out_features, dropout)
    stem = replace_stem(model, arch, channels, pretrained=resolved is not None)
    if freeze_backbone:
        model.requires_grad_(False)
        for trainable in (head, stem):
            if trainable is not None:
                trainable.requires_grad_(True)
    return model
