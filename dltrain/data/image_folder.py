"""Images in class folders (`root/{train,val,test}/<class>/*`), e.g. the Cats vs Dogs layout.

Too big to hold in memory in general, so each image is decoded per sample (DataLoader workers),
resized to a square and handed over as uint8; normalisation and augmentation run per batch on the
device. The normalisation statistics are estimated from a sample of the training images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import pil_to_tensor, resize

from dltrain.data.files import check_image_options, is_folder, regular_file
from dltrain.data.splits import (
    DataMeta,
    DataSplits,
    SplitOptions,
    check_fractions,
    hold_out,
    with_split_options,
)
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
STATS_SAMPLE = 500  # training images used to estimate the per-channel mean and std
Files = tuple[list[Path], list[int]]  # image paths and their class indices


def load_image(
    path: Path, shape: tuple[int, int, int], source: str = "dataset image_folder"
) -> torch.Tensor:
    """An image file as uint8 (C, H, W) of `shape`: grey for 1 channel, else RGB, resized.

    `source` names what asked for the file in the error for an undecodable one.
    """
    regular_file(Path(path), source)  # a FIFO named like an image would block the decoder
    channels, height, width = shape
    try:
        image = decode_image(
            str(path), mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
        )
    except RuntimeError:  # torchvision decodes jpeg, png, gif and webp only: BMP goes to Pillow
        try:
            with Image.open(path) as pil:
                image = pil_to_tensor(pil.convert("L" if channels == 1 else "RGB"))
        except OSError as e:
            raise ConfigError(f"{source}: cannot decode image {path} ({e})") from None
    if image.ndim == 4:  # an animated GIF: its first frame
        image = image[0]
    return resize(image, [height, width], antialias=True)


class ImageFiles(Dataset):
    """(uint8 image (3, size, size), class index) for each file, decoded on access."""

    def __init__(self, files: list[Path], labels: list[int], size: int):
        self.files, self.labels, self.size = files, labels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return load_image(self.files[i], (3, self.size, self.size)), self.labels[i]


def layout(base: Path) -> tuple[Path, dict[str, Path | None]]:
    """The train folder, and the val/test folders given (None: to be split from train)."""
    if is_folder(base / "train", "dataset.root"):
        return base / "train", {
            s: base / s if is_folder(base / s, "dataset.root") else None for s in ("val", "test")
        }
    if given := [s for s in ("val", "test") if is_folder(base / s, "dataset.root")]:
        raise ConfigError(f"dataset.root: {base} has {' and '.join(given)}/ but no train/ folder")
    return base, {"val": None, "test": None}


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the subfolders (hidden ones such as .ipynb_checkpoints left out)."""
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def scan(folder: Path, classes: list[str]) -> Files:
    """The image files under folder/<class>/ (recursively) with their class indices."""
    if unknown := sorted(set(class_folders(folder)) - set(classes)):
        raise ConfigError(
            f"dataset image_folder: {folder} has classes {', '.join(unknown)} that the train "
            f"folder lacks (train classes: {', '.join(classes)})"
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in EXTENSIONS)
        files += found
        labels += [label] * len(found)
    if not files:
        raise ConfigError(
            f"dataset image_folder: no images ({', '.join(sorted(EXTENSIONS))}) in class "
            f"folders under {folder}"
        )
    return files, labels


def split_off(part: Files, fraction: float, seed: int) -> tuple[Files, Files]:
    """(rest, held out): a stratified, seeded `fraction` of `part` held out."""
    files, labels = part
    kept, held = hold_out(len(labels), fraction, seed, labels)
    rest_files, rest_labels = [files[i] for i in kept], [labels[i] for i in kept]
    held_files, held_labels = [files[i] for i in held], [labels[i] for i in held]
    return (rest_files, rest_labels), (held_files, held_labels)


def channel_stats(dataset: ImageFiles, seed: int) -> dict[str, list[float]]:
    """Per-channel mean and std in [0, 1] units over a seeded sample of the images."""
    picks = np.random.default_rng(seed).permutation(len(dataset))[:STATS_SAMPLE]
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for i in picks:  # running sums: the sample as one tensor could take hundreds of MB
        pixels = dataset[int(i)][0].double().div_(255).flatten(1)
        total += pixels.sum(1)
        squares += pixels.square().sum(1)
    count = len(picks) * dataset.size**2
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return {"mean": mean.tolist(), "std": std.tolist()}


def collect(base: Path, split: SplitOptions) -> tuple[dict[str, Files | None], list[str]]:
    """The files of each split (given folders, else split from train) and the class names."""
    train_dir, given = layout(base)
    classes = class_folders(train_dir)
    parts: dict[str, Files | None] = {"train": scan(train_dir, classes)}
    present = set(parts["train"][1])
    if empty := [c for i, c in enumerate(classes) if i not in present]:
        raise ConfigError(f"dataset image_folder: no training images for classes {empty}")
    if len(classes) < 2:
        raise ConfigError(f"dataset image_folder: {train_dir} needs at least 2 class folders")
    carved = 0.0  # share of the train folder already split off
    for name, fraction in (("test", split.test_fraction), ("val", split.val_fraction)):
        if given[name] is not None:
            parts[name] = scan(given[name], classes)
        elif fraction > 0:
            share = fraction / (1 - carved)
            parts["train"], parts[name] = split_off(parts["train"], share, split.split_seed)
            carved += fraction
        else:
            parts[name] = None
    return parts, classes


@DATASETS.register("image_folder", reads_files=True, modality="image")
@with_split_options(val_fraction=0.15, test_fraction=0.15, split_seed=0)  # when no val/, test/
def image_folder(
    root: str | None = None,
    image_size: int = 224,
    random_crop_padding: int = 0,
    horizontal_flip: bool = False,
    *,
    split: SplitOptions,
) -> DataSplits:
    """root/{train,val,test}/<class>/*; val and test are split from train when absent."""
    if root is None:
        raise ConfigError(
            "dataset.root: required by dataset image_folder; set it to the folder holding "
            "train/ (or the class folders themselves)"
        )
    check_image_options(random_crop_padding, image_size=image_size)
    check_fractions(split.val_fraction, split.test_fraction)
    base = Path(root).expanduser()
    if not is_folder(base, "dataset.root"):
        raise ConfigError(f"dataset.root: {base} is not a folder")
    parts, classes = collect(base, split)
    sets = {k: None if v is None else ImageFiles(*v, image_size) for k, v in parts.items()}
    meta = DataMeta(
        task="binary" if len(classes) == 2 else "multiclass",
        input_shape=(3, image_size, image_size),
        num_classes=len(classes),
        class_names=classes,
        preprocessing={
            "normalize": channel_stats(sets["train"], split.split_seed),
            "augment": {"crop_padding": random_crop_padding, "hflip": horizontal_flip},
        },
    )
    return DataSplits(sets["train"], sets["val"], sets["test"], meta)
