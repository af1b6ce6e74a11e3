"""MNIST, Fashion-MNIST and CIFAR-10, decoded once into uint8 tensors (N, C, H, W) in memory.

Files are read where they lie (the official .gz / .tar.gz included) and never extracted, so a
read-only data folder works. Normalisation uses the standard per-channel constants of each
official train set (STATS, in [0, 1] pixel units); it and augmentation happen per batch on the
device (dltrain.data.transforms), driven by meta.preprocessing.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dltrain.data import cifar
from dltrain.data.files import (
    IDX_IMAGES,
    IDX_LABELS,
    check_image_options,
    data_folders,
    is_regular,
    missing_data,
    plain_or_gz,
    read_idx,
)
from dltrain.data.splits import DataMeta, DataSplits, SplitOptions, hold_out, with_split_options
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS

IDX_FILES = {  # key -> (file name, magic number)
    "train_images": ("train-images-idx3-ubyte", IDX_IMAGES),
    "train_labels": ("train-labels-idx1-ubyte", IDX_LABELS),
    "test_images": ("t10k-images-idx3-ubyte", IDX_IMAGES),
    "test_labels": ("t10k-labels-idx1-ubyte", IDX_LABELS),
}
IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}  # torchvision's layout
CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": [
        *("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"),
        *("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ],
    "cifar10": [
        *("airplane", "automobile", "bird", "cat", "deer"),
        *("dog", "frog", "horse", "ship", "truck"),
    ],
}
SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
# Per-channel mean/std of each official train set, in [0, 1] pixel units.
STATS = {
    "mnist": ([0.1307], [0.3081]),
    "fashion_mnist": ([0.2860], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
}
Arrays = dict[str, np.ndarray]  # train_images, train_labels, test_images, test_labels


def absent_files(name: str, root: Path) -> list[str]:
    """The expected data files of `name` under `root` that are not there (empty: all present)."""
    if name == "cifar10":
        folder, archive, what = root / cifar.FOLDER, root / cifar.ARCHIVE, "dataset cifar10"
        if all(is_regular(folder / b, what) for b in cifar.BATCHES) or is_regular(archive, what):
            return []
        return [f"{folder}/{{data_batch_1..5,test_batch}} (or {archive})"]
    raw = root / IDX_FOLDERS[name] / "raw"
    return [f"{raw / stem}(.gz)" for stem, _ in IDX_FILES.values() if not plain_or_gz(raw / stem)]


def read_idx_set(name: str, raw: Path) -> Arrays:
    """The four IDX arrays of an MNIST-style dataset; images get their channel axis."""
    paths = {key: plain_or_gz(raw / stem) for key, (stem, _) in IDX_FILES.items()}
    arrays = {key: read_idx(paths[key], magic) for key, (_, magic) in IDX_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[1:] != SHAPES[name][1:] or len(images) != len(labels):
            raise ConfigError(
                f"dataset {name}: {paths[f'{split}_images']} holds {images.shape} images and "
                f"{paths[f'{split}_labels']} {labels.shape} labels; expected (N, 28, 28) and (N,)"
            )
        arrays[f"{split}_images"] = images[:, None]
    return arrays


def download(name: str, root: Path) -> None:
    """torchvision's own download into root; it verifies the checksums."""
    from torchvision import datasets

    cls = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}[name]
    try:
        for train in (True, False):
            getattr(datasets, cls)(root=str(root), train=train, download=True)
    except (OSError, RuntimeError) as e:  # no network, a checksum mismatch, no space
        message = " ".join(str(e).split())
        raise ConfigError(f"dataset {name}: download into {root} failed: {message}") from None


def data_folder(name: str, data_dir: str | None, allow_download: bool = False) -> Path:
    """The first data folder holding all of `name`'s files, downloaded into the root if allowed."""
    folders = data_folders(name, data_dir)
    found = next((f for f in folders if not absent_files(name, f)), None)
    if found is None and allow_download:
        download(name, folders[0])
        found = next((f for f in folders[:1] if not absent_files(name, f)), None)
    if found is None:
        how = "set dataset.download=true (needs internet), or put the official files there"
        raise missing_data(name, ", ".join(absent_files(name, folders[0])), folders, how)
    return found


def load_arrays(name: str, folder: Path) -> Arrays:
    """The dataset's arrays from the `folder` data_folder found."""
    if name == "cifar10":
        return cifar.read_cifar(folder)
    return read_idx_set(name, folder / IDX_FOLDERS[name] / "raw")


def image_splits(name: str, arrays: Arrays, split: SplitOptions) -> DataSplits:
    """Train and a stratified val carved from the official train set; the official test set."""
    images = torch.from_numpy(arrays["train_images"])
    labels = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    for part, values in (("train", labels), ("test", arrays["test_labels"])):
        if len(values) and not 0 <= int(values.min()) <= int(values.max()) < 10:
            raise ConfigError(f"dataset {name}: {part} labels outside 0..9")
    train, val = TensorDataset(images, labels), None
    if split.val_fraction > 0:
        keep, held = hold_out(
            len(labels), split.val_fraction, split.split_seed, arrays["train_labels"]
        )
        keep, held = torch.from_numpy(keep), torch.from_numpy(held)
        train = TensorDataset(images[keep], labels[keep])
        val = TensorDataset(images[held], labels[held])
    test_labels = torch.from_numpy(arrays["test_labels"].astype(np.int64))
    test = TensorDataset(torch.from_numpy(arrays["test_images"]), test_labels)
    mean, std = STATS[name]
    meta = DataMeta(
        task="multiclass",
        input_shape=SHAPES[name],
        num_classes=10,
        class_names=list(CLASSES[name]),
        preprocessing={"normalize": {"mean": list(mean), "std": list(std)}},
    )
    return DataSplits(train, val, test, meta)


def _check_files(name: str, data_dir: str | None = None, download: bool = False, **_: object):
    """The dataset's files are there (or may be downloaded), before a run dir is made."""
    if not download:
        data_folder(name, data_dir)


def _register(name: str, random_crop_padding: int = 0, horizontal_flip: bool = False) -> None:
    @DATASETS.register(
        name,
        task="multiclass",
        reads_files=True,
        check=partial(_check_files, name),
        modality="image",
    )
    @with_split_options(val_fraction=0.1, split_seed=0)  # the official test set is the test split
    def build(
        data_dir: str | None = None,
        download: bool = False,
        random_crop_padding: int = random_crop_padding,
        horizontal_flip: bool = horizontal_flip,
        normalize: bool = True,
        *,
        split: SplitOptions,
    ) -> DataSplits:
        check_image_options(random_crop_padding, val_fraction=split.val_fraction)
        arrays = load_arrays(name, data_folder(name, data_dir, download))
        data = image_splits(name, arrays, split)
        augment = {"crop_padding": random_crop_padding, "hflip": horizontal_flip}
        data.meta.preprocessing["augment"] = augment
        if not normalize:  # pixels stay in [0, 1], e.g. for an autoencoder's sigmoid output
            del data.meta.preprocessing["normalize"]
        return data

    build.__name__ = name
    build.__doc__ = f"{name} from data_dir as uint8 tensors in memory (official test set as test)."


_register("mnist")
_register("fashion_mnist")
_register("cifar10", random_crop_padding=4, horizontal_flip=True)
