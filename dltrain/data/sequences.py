"""Sequence datasets: MNIST rows as time steps, and sine windows predicting the cosine."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dltrain.data.splits import (
    DataMeta,
    DataSplits,
    SplitOptions,
    check_fractions,
    with_split_options,
)
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS


@DATASETS.register("mnist_seq", task="multiclass", reads_files=True, modality="sequence")
@with_split_options(val_fraction=0.1, split_seed=0)  # the official test set is the test split
def mnist_seq(
    data_dir: str | None = None, download: bool = False, *, split: SplitOptions
) -> DataSplits:
    """MNIST with each image read as 28 time steps of 28 pixels (rows)."""
    kept = {"val_fraction": split.val_fraction, "split_seed": split.split_seed}
    images = DATASETS.build("mnist", {"data_dir": data_dir, "download": download, **kept})

    def rows(ds: TensorDataset | None) -> TensorDataset | None:
        return None if ds is None else TensorDataset(ds.tensors[0].squeeze(1), ds.tensors[1])

    meta = images.meta
    meta.input_shape = meta.input_shape[1:]  # (1, 28, 28) -> (28 steps, 28 features)
    meta.preprocessing.pop("augment", None)
    return DataSplits(rows(images.train), rows(images.val), rows(images.test), meta)


@DATASETS.register("sine_cosine", task="regression", modality="sequence")
@with_split_options(val_fraction=0.15, test_fraction=0.15)  # in time order: no seed
def sine_cosine(
    length: int = 1000,
    window: int = 10,
    step: float = 0.1,
    noise: float = 0.0,
    seed: int = 0,
    *,
    split: SplitOptions,
) -> DataSplits:
    """Windows of sin(t) predict cos(t) at the window's last step; split in time order."""
    check_fractions(split.val_fraction, split.test_fraction)
    if window < 1 or length <= window or step <= 0 or noise < 0:
        raise ConfigError(
            f"dataset sine_cosine needs 1 <= window < length, step > 0, noise >= 0; "
            f"got window={window}, length={length}, step={step}, noise={noise}"
        )
    t = np.arange(length) * step
    signal = np.sin(t) + np.random.default_rng(seed).normal(0.0, noise, length)
    starts = np.arange(length - window + 1)
    x = np.stack([signal[s : s + window] for s in starts])[:, :, None].astype(np.float32)
    y = np.cos(t[starts + window - 1])[:, None].astype(np.float32)
    # Consecutive windows overlap, so a random split would leak test points into training.
    n_test, n_val = int(len(x) * split.test_fraction), int(len(x) * split.val_fraction)
    n_train = len(x) - n_val - n_test
    cuts = {
        "train": (0, n_train),
        "val": (n_train, n_train + n_val),
        "test": (n_train + n_val, len(x)),
    }
    sets = {
        name: TensorDataset(torch.from_numpy(x[a:b]), torch.from_numpy(y[a:b])) if b > a else None
        for name, (a, b) in cuts.items()
    }
    meta = DataMeta(
        task="regression", input_shape=(window, 1), num_targets=1, feature_names=["sin(t)"]
    )
    return DataSplits(sets["train"], sets["val"], sets["test"], meta)
