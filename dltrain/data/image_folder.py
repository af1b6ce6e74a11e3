"""Images in class folders (`root/{train,val,test}/<class>/*`), e.g. the Cats vs Dogs layout.

Too big to hold in memory in general, so images are decoded (Pillow) per sample by DataLoader
workers, resized, and handed over as uint8; normalisation and augmentation run per batch on the
device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from dltrain.data.splits import DataMeta, DataSplits, check_fractions
from dltrain.registry import DATASETS, ConfigError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
STATS_SAMPLE = 500  # images used to estimate the per-channel mean and std


class ImageFiles(Dataset):
    """(uint8 image (3, size, size), class index) for each file."""

    def __init__(self, files: list[Path], labels: list[int], size: int):
        self.files, self.labels, self.size = files, labels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            with Image.open(self.files[i]) as image:
                rgb = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        except OSError as e:
            raise ConfigError(
                f"dataset image_folder: cannot decode {self.files[i]} ({e})"
            ) from None
        return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1), self.labels[i]


def scan(folder: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Image files under folder/<class>/ with their labels; the classes found (sorted)."""
    found = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if classes is not None and (unknown := sorted(set(found) - set(classes))):
        raise ConfigError(
            f"dataset image_folder: {folder} has classes {', '.join(unknown)} that the train "
            f"folder lacks (train classes: {', '.join(classes)})"
        )
    classes = classes or found
    files, labels = [], []
    for label, name in enumerate(classes):
        if (folder / name).is_dir():
            picked = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in EXTENSIONS)
            files += picked
            labels += [label] * len(picked)
    if not files:
        raise ConfigError(
            f"dataset image_folder: no images ({', '.join(sorted(EXTENSIONS))}) "
            f"in class folders under {folder}"
        )
    return files, labels, classes


def channel_stats(dataset: ImageFiles, seed: int) -> dict[str, list[float]]:
    """Per-channel mean and std in [0, 1] units, from a sample of the training images."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(dataset), size=min(STATS_SAMPLE, len(dataset)), replace=False)
    pixels = torch.stack([dataset[int(i)][0] for i in picks]).float().div_(255)
    return {
        "mean": pixels.mean((0, 2, 3)).tolist(),
        "std": pixels.std((0, 2, 3)).clamp_min(1e-6).tolist(),
    }


@DATASETS.register("image_folder", reads_files=True)
def image_folder(
    root: str | None = None,
    image_size: int = 224,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    random_crop_padding: int = 0,
    horizontal_flip: bool = False,
) -> DataSplits:
    """root/{train,val,test}/<class>/*; val and test are split from train when absent."""
    if root is None:
        raise ConfigError(
            "dataset.root: set it to the folder holding train/ (or the class folders)"
        )
    if image_size < 1 or random_crop_padding < 0:
        raise ConfigError(
            f"dataset.image_size must be >= 1 and dataset.random_crop_padding >= 0, "
            f"got {image_size} and {random_crop_padding}"
        )
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ConfigError(f"dataset.root: {base} is not a folder")
    check_fractions(val_fraction, test_fraction)
    train_dir = base / "train" if (base / "train").is_dir() else base
    files, labels, classes = scan(train_dir)
    parts = {"train": (files, labels), "val": None, "test": None}
    carved = 0.0  # share of the whole already split off the train folder
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        if (base / name).is_dir() and train_dir != base:
            parts[name] = scan(base / name, classes)[:2]
        elif fraction > 0:
            rest_files, rest_labels = parts["train"]
            tf, ef, tl, el = train_test_split(
                rest_files,
                rest_labels,
                test_size=fraction / (1 - carved),
                random_state=split_seed,
                stratify=rest_labels,
            )
            parts["train"], parts[name] = (tf, tl), (ef, el)
            carved += fraction
    sets = {k: None if v is None else ImageFiles(*v, image_size) for k, v in parts.items()}
    meta = DataMeta(
        task="binary" if len(classes) == 2 else "multiclass",
        input_shape=(3, image_size, image_size),
        num_classes=len(classes),
        class_names=classes,
        preprocessing={
            "normalize": channel_stats(sets["train"], split_seed),
            "augment": {"crop_padding": random_crop_padding, "hflip": horizontal_flip},
        },
    )
    return DataSplits(sets["train"], sets["val"], sets["test"], meta)
