"""MNIST, Fashion-MNIST and CIFAR-10, decoded once into uint8 tensors (N, C, H, W) in memory.

Files are read where they lie (the official .gz / .tar.gz included) and never extracted, so a
read-only data folder works. Normalisation and augmentation happen per batch on the device
(dltrain.data.transforms), driven by meta.preprocessing.
"""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from dltrain.data.splits import DataMeta, DataSplits
from dltrain.registry import DATASETS, ConfigError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
# Per-channel mean/std of each official train set, in [0, 1] pixel units.
STATS = {
    "mnist": ([0.1307], [0.3081]),
    "fashion_mnist": ([0.2860], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
}


def data_root(data_dir: str | None) -> Path:
    """`data_dir`, else $DLTRAIN_DATA_DIR, else ~/.cache/dltrain."""
    chosen = data_dir or os.environ.get("DLTRAIN_DATA_DIR") or Path.home() / ".cache" / "dltrain"
    return Path(chosen).expanduser()


def missing(dataset: str, paths: list[Path]) -> ConfigError:
    """The one-line error for absent data files, saying how to get them."""
    return ConfigError(
        f"dataset {dataset}: missing {', '.join(map(str, paths))}; set dataset.download=true "
        "(needs internet), or put the official files there, or point dataset.data_dir (or "
        "DLTRAIN_DATA_DIR) at the folder that holds them"
    )


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally .gz) as a uint8 array; ConfigError when it is not a valid one."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ConfigError(f"dataset file {path} cannot be read: {e}") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ConfigError(f"dataset file {path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)):
        raise ConfigError(f"dataset file {path} is truncated: {len(body)} of {np.prod(dims)} bytes")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def idx_arrays(name: str, folder: Path) -> dict[str, np.ndarray]:
    """The four IDX arrays of an MNIST-style dataset from `folder` (plain or .gz files)."""
    found, absent = {}, []
    for key, stem in IDX_FILES.items():
        candidates = [folder / stem, folder / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            absent.append(folder / f"{stem}(.gz)")
        else:
            found[key] = path
    if absent:
        raise missing(name, absent)
    return {key: read_idx(path) for key, path in found.items()}


def cifar_arrays(root: Path) -> dict[str, np.ndarray]:
    """CIFAR-10's python batches from root/cifar-10-batches-py or root/cifar-10-python.tar.gz."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    folder, archive = root / "cifar-10-batches-py", root / "cifar-10-python.tar.gz"
    if all((folder / n).is_file() for n in names):
        raw = {n: (folder / n).read_bytes() for n in names}
    elif archive.is_file():
        with tarfile.open(archive, "r:gz") as tar:
            raw = {n: tar.extractfile(f"cifar-10-batches-py/{n}").read() for n in names}
    else:
        raise missing("cifar10", [folder / n for n in names] + [archive])
    batches = {}
    for n, blob in raw.items():
        try:
            entry = pickle.loads(blob, encoding="bytes")  # noqa: S301 - the official format
            batches[n] = (
                np.asarray(entry[b"data"], np.uint8).reshape(-1, 3, 32, 32),
                np.asarray(entry[b"labels"], np.int64),
            )
        except Exception as e:
            raise ConfigError(f"dataset cifar10: batch {n} is not a CIFAR-10 batch ({e})") from None
    train = [batches[n] for n in names[:-1]]
    return {
        "train_images": np.concatenate([b[0] for b in train]),
        "train_labels": np.concatenate([b[1] for b in train]),
        "test_images": batches["test_batch"][0],
        "test_labels": batches["test_batch"][1],
    }


def download(name: str, root: Path) -> None:
    """torchvision's own download (with its checksums) into root."""
    from torchvision import datasets

    cls = {
        "mnist": datasets.MNIST,
        "fashion_mnist": datasets.FashionMNIST,
        "cifar10": datasets.CIFAR10,
    }[name]
    for train in (True, False):
        cls(str(root), train=train, download=True)


def load_arrays(name: str, root: Path, download_missing: bool) -> dict[str, np.ndarray]:
    """The dataset's arrays, downloading first when asked to and the files are absent."""
    read = {
        "mnist": lambda: idx_arrays("mnist", root / "MNIST" / "raw"),
        "fashion_mnist": lambda: idx_arrays("fashion_mnist", root / "FashionMNIST" / "raw"),
        "cifar10": lambda: cifar_arrays(root),
    }[name]
    try:
        return read()
    except ConfigError:
        if not download_missing:
            raise
    download(name, root)
    return read()


def image_splits(
    name: str, arrays: dict[str, np.ndarray], val_fraction: float, split_seed: int, augment: dict
) -> DataSplits:
    """Train/val (stratified from the official train set) and the official test set."""
    images, labels = arrays["train_images"], arrays["train_labels"].astype(np.int64)
    if images.ndim == 3:  # (N, H, W) grey images
        images = images[:, None]
    test_images = arrays["test_images"]
    test_images = test_images[:, None] if test_images.ndim == 3 else test_images
    val = None
    if val_fraction > 0:
        images, val_x, labels, val_y = train_test_split(
            images, labels, test_size=val_fraction, random_state=split_seed, stratify=labels
        )
        val = TensorDataset(torch.from_numpy(val_x.copy()), torch.from_numpy(val_y))
    mean, std = STATS[name]
    meta = DataMeta(
        task="multiclass",
        input_shape=tuple(images.shape[1:]),
        num_classes=10,
        class_names={
            "mnist": MNIST_CLASSES,
            "fashion_mnist": FASHION_CLASSES,
            "cifar10": CIFAR_CLASSES,
        }[name],
        preprocessing={"normalize": {"mean": mean, "std": std}, "augment": augment},
    )
    train = TensorDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels))
    test = TensorDataset(
        torch.from_numpy(test_images.copy()),
        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
    )
    return DataSplits(train, val, test, meta)


def _register(name: str) -> None:
    @DATASETS.register(name, task="multiclass", reads_files=True)
    def build(
        data_dir: str | None = None,
        download: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        random_crop_padding: int = 0,
        horizontal_flip: bool = False,
    ) -> DataSplits:
        problems = []
        if not 0 <= val_fraction < 1:
            problems.append(f"dataset.val_fraction: must be in [0, 1), got {val_fraction}")
        if random_crop_padding < 0:
            problems.append(f"dataset.random_crop_padding: must be >= 0, got {random_crop_padding}")
        if problems:
            raise ConfigError(problems)
        arrays = load_arrays(name, data_root(data_dir), download)
        augment = {"crop_padding": random_crop_padding, "hflip": horizontal_flip}
        return image_splits(name, arrays, val_fraction, split_seed, augment)

    build.__doc__ = f"{name} from data_dir, in memory as uint8 (official test set as test)."


for _name in ("mnist", "fashion_mnist", "cifar10"):
    _register(_name)
