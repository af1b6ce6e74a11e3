"""Images: (channels, height, width) inputs, normalised and augmented per batch on the device.

New inputs are image files (one, or a folder of them); the saved normalisation and augmentation
are applied per batch from the saved preprocessing, so a rebuilt dataset needs no converting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from dltrain.data.files import is_folder, regular_file
from dltrain.data.splits import DataMeta
from dltrain.errors import ConfigError
from dltrain.modalities.modality import Inputs, Modality
from dltrain.modalities.restandardize import saved_statistics


class ImageFiles(Sequence):
    """Image files decoded on access like image_folder's: (C, H, W) uint8 at the model's size."""

    def __init__(self, files: list[Path], shape: tuple[int, int, int]):
        self.files, self.shape = files, shape

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from dltrain.data.image_folder import load_image  # torchvision: only to read images

        return load_image(self.files[i], self.shape, source="input")


def read_images(path: Path, meta: DataMeta, text_column: str) -> Inputs:
    """One image file, or the images under a folder, named by their path within it."""
    if not is_folder(path, "input"):  # never a FIFO or a device: they block the reader
        regular_file(path, "input")
    files = image_files(path)
    names = [f.name if path.is_file() else f.relative_to(path).as_posix() for f in files]
    return Inputs("file", names, ImageFiles(files, tuple(meta.input_shape)))


def image_files(path: Path) -> list[Path]:
    """The image file itself, or the images under a folder (recursively, sorted)."""
    from dltrain.data.image_folder import EXTENSIONS  # imports torchvision: only when reading

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    images = [p for p in files if p.suffix.lower() in EXTENSIONS]
    if not images:
        raise ConfigError(
            f"input: no images ({', '.join(sorted(EXTENSIONS))}) at {path}; this model "
            "predicts from a folder of images or one image file"
        )
    return images


def as_stored(images: torch.Tensor) -> torch.Tensor:
    """Images are stored as (N, C, H, W) pictures already (uint8, or floats in [0, 1])."""
    return images


# Array datasets of images may be standardised (dltrain.data.splits.array_splits) too.
IMAGE = Modality(
    name="image", read=read_images, pictures=as_stored, converters={"standardize": saved_statistics}
)
