from __future__ import annotations

import torch

from dltrain.data.transforms import BatchTransform, random_crop


def test_uint8_images_are_scaled_and_normalised() -> None:
    x = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    out = BatchTransform({"mean": [0.5], "std": [0.25]})(x, train=False)
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full_like(out, 2.0))


def test_random_crop_shifts_each_image_within_the_padding() -> None:
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    out = random_crop(x, padding=2)
    assert out.shape == x.shape
    for img, src in zip(out, x, strict=True):
        # every crop is the source shifted by the same (dy, dx) in all channels, zeros outside
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.zeros_like(src)
                ys, xs = slice(max(dy, 0), 6 + min(dy, 0)), slice(max(dx, 0), 6 + min(dx, 0))
                yd, xd = slice(max(-dy, 0), 6 + min(-dy, 0)), slice(max(-dx, 0), 6 + min(-dx, 0))
                shifted[:, yd, xd] = src[:, ys, xs]
                found |= torch.equal(shifted, img)
        assert found


def test_flip_and_crop_only_when_training() -> None:
    x = torch.rand(64, 3, 8, 8)
    transform = BatchTransform(crop_padding=2, hflip=True)
    assert torch.equal(transform(x, train=False), x)
    torch.manual_seed(0)
    out = transform(x, train=True)
    assert not torch.equal(out, x)
    flip_only = BatchTransform(hflip=True)(x, train=True)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(flip_only, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(flip_only, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 10 < sum(flipped) < 54


def test_channels_last_and_nothing_to_do() -> None:
    out = BatchTransform(channels_last=True)(torch.rand(2, 3, 4, 4), train=False)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert BatchTransform.for_data({}, channels_last=False) is None
    made = BatchTransform.for_data({"augment": {"crop_padding": 0, "hflip": False}}, False)
    assert made is None
