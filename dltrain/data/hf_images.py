"""dataset=hf's image path: an `Image` column as uint8 (C, H, W) images, as MNIST and
image_folder give them, so dltrain's per-batch normalisation (with train-split statistics) and
augmentation apply.

in_memory (default): every image decoded once into a (N, C, H, W) tensor. Otherwise the images
stay in the memory-mapped Arrow files and are decoded per sample (in the DataLoader's workers,
trainer.num_workers), and the statistics come from a sample of the training images.
Only the encoded bytes stored in the dataset are decoded; an image stored as a path is read only
when that path is a regular file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset
from torchvision.transforms.v2.functional import pil_to_tensor, resize

from dltrain.data.files import check_image_options, reason, regular_file
from dltrain.data.hf_features import Columns, carve, class_names, label_values, name_of
from dltrain.data.splits import DataMeta, DataSplits, SplitOptions
from dltrain.errors import ConfigError

GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
CHUNK = 1024  # images per step of the channel statistics (bounds the float64 copy)
STATS_SAMPLE = 500  # training images the statistics are estimated from when not in memory


def _decode(value: Any, grey: bool, size: int | None, where: str) -> torch.Tensor:
    """One stored image as uint8 (C, H, W): grey or RGB, resized to size x size if given."""
    data = value.get("bytes") if isinstance(value, dict) else None
    try:
        if data is None:
            path = value.get("path") if isinstance(value, dict) else None
            if not path:
                raise ConfigError(f"dataset hf: {where} holds no image")
            data = regular_file(Path(path), "dataset hf image").read_bytes()
        with Image.open(io.BytesIO(data)) as pil:
            image = pil_to_tensor(pil.convert("L" if grey else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ConfigError(f"dataset hf: cannot decode {where} ({reason(e)})") from None
    return image if size is None else resize(image, [size, size], antialias=True)


def _is_grey(value: Any) -> bool:
    """Whether the first training image is single-channel (then every image is read grey)."""
    data = value.get("bytes") if isinstance(value, dict) else None
    if data is None:
        return False
    try:
        with Image.open(io.BytesIO(data)) as pil:
            return pil.mode in GREY_MODES
    except OSError:
        return False  # _decode reports it


def _images(ds: Any, column: str, grey: bool, size: int | None, split: str) -> torch.Tensor:
    """A split's images as one uint8 tensor; differing sizes need `image_size`."""
    raw = ds.cast_column(column, _raw())[column]
    images = [_decode(v, grey, size, f"image {i} of split '{split}'") for i, v in enumerate(raw)]
    shapes = sorted({tuple(x.shape[1:]) for x in images})
    if len(shapes) > 1:
        shown = " and ".join(f"{h}x{w}" for h, w in shapes[:2])
        raise ConfigError(
            f"dataset hf: the images of split '{split}' differ in size ({shown}, ...); set "
            "dataset.image_size=N to resize them all to N x N"
        )
    return torch.stack(images)


def channel_stats(images: torch.Tensor) -> dict[str, list[float]]:
    """Per-channel mean and std in [0, 1] units of uint8 (N, C, H, W) images."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), CHUNK):
        pixels = images[start : start + CHUNK].double().div_(255)
        total += pixels.sum((0, 2, 3))
        squares += pixels.square().sum((0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return {"mean": mean.tolist(), "std": std.tolist()}


def _targets(labels: list[Any], columns: Columns, names: list[str] | None) -> torch.Tensor:
    """Class indices (int64), or float32 (N, 1) regression targets."""
    if names is None:
        return torch.tensor(labels, dtype=torch.float32).reshape(-1, 1)
    index = {n: i for i, n in enumerate(names)}
    shown = [name_of(v, columns) for v in labels]
    if unknown := sorted(set(shown) - set(index))[:5]:
        raise ConfigError(
            f"dataset hf: labels {', '.join(unknown)} are not among the train split's classes "
            f"{', '.join(names)}"
        )
    return torch.tensor([index[s] for s in shown], dtype=torch.int64)


class ArrowImages(Dataset):
    """(uint8 image, target) per row of a memory-mapped `datasets.Dataset`, decoded on access."""

    def __init__(self, ds: Any, column: str, targets: torch.Tensor, grey: bool, size: int):
        self.ds, self.column, self.targets = ds.cast_column(column, _raw()), column, targets
        self.grey, self.size = grey, size

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        where = f"image {i} of the dataset"
        return _decode(self.ds[int(i)][self.column], self.grey, self.size, where), self.targets[i]

    def part(self, rows: np.ndarray) -> ArrowImages:
        """The rows given (still memory-mapped)."""
        chosen = self.ds.select(rows)
        return ArrowImages(chosen, self.column, self.targets[rows], self.grey, self.size)


def _sampled_stats(images: ArrowImages, seed: int) -> dict[str, list[float]]:
    """Channel statistics of a seeded sample of the training images."""
    picks = np.random.default_rng(seed).permutation(len(images))[:STATS_SAMPLE]
    return channel_stats(torch.stack([images[int(i)][0] for i in picks]))


def image_splits(
    splits: dict[str, Any],
    columns: Columns,
    split: SplitOptions,
    size: int | None,
    crop_padding: int,
    hflip: bool,
    in_memory: bool = True,
) -> DataSplits:
    """Images and labels of each split; val/test split from train where not given."""
    check_image_options(crop_padding, image_size=size)
    column = columns.inputs[0]
    labels = {k: label_values(ds, columns, k) for k, ds in splits.items()}
    names = None if columns.regression else class_names(labels["train"], columns)
    if names is not None and len(names) < 2:
        raise ConfigError("dataset hf: one class in the train split; a classifier needs two")
    if not len(splits["train"]):
        raise ConfigError("dataset hf: the train split is empty")
    first = splits["train"].cast_column(column, _raw())[0][column]
    grey = _is_grey(first)
    y = {k: _targets(labels[k], columns, names) for k in splits}
    if in_memory:
        x = {k: _images(ds, column, grey, size, k) for k, ds in splits.items()}
        if len({tuple(v.shape[1:]) for v in x.values()}) > 1:
            raise ConfigError(
                "dataset hf: the splits' images differ in size; set dataset.image_size=N"
            )
        sets = {k: TensorDataset(x[k], y[k]) for k in x}
    else:
        size = size or max(_decode(first, grey, None, "image 0 of split 'train'").shape[1:])
        sets = {k: ArrowImages(ds, column, y[k], grey, size) for k, ds in splits.items()}
    task = "regression" if names is None else "binary" if len(names) == 2 else "multiclass"
    rows = carve(y["train"].reshape(len(y["train"]), -1)[:, 0].numpy(), task, split, set(splits))
    train = sets["train"]
    for k, i in rows.items():
        if i is not None:
            index = np.asarray(i, dtype=np.int64)
            sets[k] = (
                train.part(index)
                if not in_memory
                else TensorDataset(*train[torch.from_numpy(index)])
            )
    stats = channel_stats(sets["train"].tensors[0]) if in_memory else None
    meta = DataMeta(
        task=task,
        input_shape=tuple(sets["train"][0][0].shape),
        num_classes=None if names is None else len(names),
        class_names=names,
        preprocessing={
            "normalize": stats or _sampled_stats(sets["train"], split.split_seed),
            "augment": {"crop_padding": crop_padding, "hflip": hflip},
        },
    )
    return DataSplits(sets["train"], sets.get("val"), sets.get("test"), meta)


def _raw() -> Any:
    from datasets import Image as ImageFeature

    return ImageFeature(decode=False)
