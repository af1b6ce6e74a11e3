"""`dataset=webdataset`: image classification from local WebDataset `.tar` shards, streamed.

Shards larger than memory are read front to back by DataLoader workers, shuffled through a
buffer, decoded (torchvision.io) and resized as uint8 in the workers. Sharing out: shard i of
the expanded, sorted list belongs to rank i mod W for the whole run; each pass deals a rank's
shards (in a seeded shuffled order when training) to its workers, j mod K, so every shard goes to
exactly one rank x worker. Training passes of several ranks stop at the smallest rank's sample
count (every rank must step as often): with shards that don't divide evenly the surplus of the
larger ranks is left out of that pass (different samples each pass, as the shuffle differs).
Evaluation passes read every sample once. A resume replays the pass (same seed, same buffers)
and leaves out, before decoding, exactly the samples already trained on (same ranks and workers).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dltrain.data.files import check_image_options
from dltrain.data.image_folder import STATS_SAMPLE
from dltrain.data.shard_batches import ShardBatches
from dltrain.data.shards import (
    SOURCE,
    Shard,
    decode,
    index_shard,
    read_at,
)
from dltrain.data.splits import DataMeta, DataSplits
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS

log = logging.getLogger(__name__)


class ShardDataset(Dataset):
    """The samples of a split's shards: its length, a few samples by index (sample grids) and
    `batches()`, the streamed iterator the loop trains on."""

    def __init__(self, shards: list[Shard], size: int, buffer: int):
        self.shards, self.size, self.buffer = shards, size, buffer
        self.ends = np.cumsum([len(s) for s in shards])

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(np.searchsorted(self.ends, i, side="right"))
        shard, j = self.shards[s], i - (int(self.ends[s - 1]) if s else 0)
        image = decode(read_at(shard, j), self.size, f"{shard.path}#{j}")
        return image, torch.tensor(int(shard.labels[j]))

    def batches(self, batch_size, shuffle, seed, num_workers=0, device="cpu", rank=0, world_size=1):
        """This rank's batch iterator (make_batches' hook)."""
        return ShardBatches(self, batch_size, shuffle, seed, num_workers, device, rank, world_size)


def expand(pattern: str, option: str) -> list[Path]:
    """The shard files of a brace pattern (`data/train-{000000..000009}.tar`), all present."""
    try:
        from webdataset.shardlists import expand_urls
    except ImportError:
        raise ConfigError(
            f"{SOURCE}: needs the webdataset package: pip install 'dltrain[webdataset]'"
        ) from None
    paths = [Path(p).expanduser() for p in expand_urls(str(pattern))]
    if missing := [p for p in paths if not p.is_file()]:
        shown = ", ".join(map(str, missing[:3])) + (" ..." if len(missing) > 3 else "")
        folder = missing[0].parent
        present = sorted(p.name for p in folder.glob("*.tar")) if folder.is_dir() else []
        there = f"{folder} has {', '.join(present[:5]) or 'no .tar files'}"
        raise ConfigError(
            f"dataset.{option}: {len(missing)} of {len(paths)} shards of {pattern} do not "
            f"exist ({shown}); {there if folder.is_dir() else f'{folder} is not a folder'}"
        )
    return sorted(paths)


def channel_stats(data: ShardDataset) -> dict[str, list[float]]:
    """Per-channel mean and std in [0, 1] units over the first training samples."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = min(STATS_SAMPLE, len(data))
    for i in range(count):
        pixels = data[i][0].double().div_(255).flatten(1)
        total += pixels.sum(1)
        squares += pixels.square().sum(1)
    mean = total / (count * data.size**2)
    std = (squares / (count * data.size**2) - mean.square()).clamp_min(1e-12).sqrt()
    return {"mean": mean.tolist(), "std": std.tolist()}


def _check(train_shards: str | None = None, **_: object) -> None:
    """The train pattern is given (its files are checked when the data is built)."""
    if not train_shards:
        raise ConfigError(
            "dataset.train_shards: required by dataset webdataset, e.g. "
            "data/train-{000000..000009}.tar"
        )


@DATASETS.register("webdataset", reads_files=True, modality="image")
def webdataset(
    train_shards: str | None = None,
    val_shards: str | None = None,
    test_shards: str | None = None,
    image_key: str = "jpg;jpeg;png;webp",
    label_key: str = "cls",
    image_size: int = 224,
    shuffle_buffer: int = 1000,
    num_classes: int | None = None,
    random_crop_padding: int = 0,
    horizontal_flip: bool = False,
) -> DataSplits:
    """Image classification from WebDataset shards (train required; val and test optional)."""
    _check(train_shards)
    check_image_options(random_crop_padding, image_size=image_size)
    if shuffle_buffer < 0:
        raise ConfigError(f"dataset.shuffle_buffer: {shuffle_buffer}; it must be >= 0")
    patterns = {"train": train_shards, "val": val_shards, "test": test_shards}
    files = {k: expand(v, f"{k}_shards") for k, v in patterns.items() if v}
    label_key = label_key.strip().lower()
    sets = {
        k: ShardDataset([index_shard(p, image_key, label_key) for p in paths], image_size, buffer)
        for k, paths in files.items()
        for buffer in [shuffle_buffer if k == "train" else 0]
    }
    labels = np.concatenate([s.labels for ds in sets.values() for s in ds.shards])
    classes = num_classes or int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= classes or classes < 2:
        raise ConfigError(
            f"dataset webdataset: labels span {labels.min()}..{labels.max()}; they must be "
            f"class indices 0..num_classes-1 with at least 2 classes (num_classes {classes})"
        )
    meta = DataMeta(
        task="binary" if classes == 2 else "multiclass",
        input_shape=(3, image_size, image_size),
        num_classes=classes,
        preprocessing={
            "normalize": channel_stats(sets["train"]),
            "augment": {"crop_padding": random_crop_padding, "hflip": horizontal_flip},
        },
    )
    return DataSplits(sets["train"], sets.get("val"), sets.get("test"), meta)
