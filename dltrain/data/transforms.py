"""Per-batch input transforms, run on the training device: no per-sample Python work.

Image datasets hand over uint8 batches; this scales them to [0, 1], augments (training only),
normalises with the dataset's statistics and sets the memory format.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class BatchTransform:
    """uint8 -> float, optional random crop with padding and horizontal flip, normalisation."""

    def __init__(
        self,
        normalize: dict[str, list[float]] | None = None,
        crop_padding: int = 0,
        hflip: bool = False,
        channels_last: bool = False,
    ):
        self.mean = self.std = None
        if normalize:
            self.mean, self.std = torch.tensor(normalize["mean"]), torch.tensor(normalize["std"])
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.channels_last = channels_last

    @classmethod
    def for_data(cls, preprocessing: dict[str, Any], channels_last: bool) -> BatchTransform | None:
        """The transform a dataset's preprocessing asks for; None when there is nothing to do."""
        augment = preprocessing.get("augment") or {}
        normalize = preprocessing.get("normalize")
        if not (normalize or any(augment.values()) or channels_last):
            return None
        return cls(
            normalize, augment.get("crop_padding", 0), augment.get("hflip", False), channels_last
        )

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        if train and self.crop_padding > 0:
            x = random_crop(x, self.crop_padding)
        if train and self.hflip:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if self.mean is not None:
            if self.mean.device != x.device:
                self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
            shape = (1, -1) + (1,) * (x.dim() - 2)  # per channel: dim 1 of (N, C, ...)
            x = (x - self.mean.view(shape)) / self.std.view(shape)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad a batch (N, C, H, W) by `padding` and crop each image at its own random offset."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    left = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    rows = (top + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (left + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]
