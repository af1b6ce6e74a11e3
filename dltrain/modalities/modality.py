"""What every modality provides, as one small record of functions (no base class to learn)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dltrain.data.files import is_folder, regular_file
from dltrain.data.splits import DataMeta, DataSplits
from dltrain.errors import ConfigError

# Turns a rebuilt dataset's preprocessing entry (new) into the saved one (old) in place;
# returns why it cannot, or None once done.
Converter = Callable[[DataSplits, Any, Any], str | None]


@dataclass
class Inputs:
    """What each prediction row is named by, and the model input of each (before the transform)."""

    id_name: str
    ids: list[Any]
    samples: Sequence[torch.Tensor]


def no_options(dataset: str, meta: DataMeta, folder: Path) -> dict[str, Any]:
    """No dataset options: the rebuilt dataset encodes as the run did on its own."""
    return {}


def standard_normal(
    meta: DataMeta, size: int, length: int, generator: torch.Generator
) -> torch.Tensor:
    """Standard-normal values of the input shape (preprocessed inputs are about that scale)."""
    return torch.randn(size, *meta.input_shape, generator=generator)


@dataclass(frozen=True)
class Modality:
    """One kind of model input: what prediction, evaluation, export and the visuals ask of it."""

    name: str
    # New inputs at a path, encoded with the saved preprocessing only (or a ConfigError).
    read: Callable[[Path, DataMeta, str], Inputs]
    # Samples of one prediction batch as a tensor (the samples may differ in length).
    collate: Callable[[list[torch.Tensor]], torch.Tensor] = torch.stack
    # Dataset options that make a rebuilt dataset encode as the run did (given its saved meta).
    rebuild_options: Callable[[str, DataMeta, Path], dict[str, Any]] = no_options
    # Preprocessing entries that a rebuilt dataset may have fitted anew, and how to undo that.
    converters: Mapping[str, Converter] = field(default_factory=dict)
    # Random model inputs: (meta, batch size, length for variable-length inputs, generator).
    example_batch: Callable[[DataMeta, int, int, torch.Generator], torch.Tensor] = standard_normal
    variable_length: bool = False  # axis 1 of a batch is a length that differs between batches
    # Stored samples (a batch) as (N, C, H, W) pictures; None where samples cannot be shown.
    pictures: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def shows_images(self) -> bool:
        """Whether samples can be drawn as pictures (sample grids, reconstructions, thumbnails)."""
        return self.pictures is not None


def one_file(path: Path, modality: str) -> Path:
    """`path` once it is a regular file (never a FIFO: it would block the reader), not a folder."""
    if is_folder(path, "input"):
        raise ConfigError(f"input: {path} is a folder; this {modality} model reads a file")
    return regular_file(path, "input")


def cannot_convert(key: str) -> str:
    """Why a rebuilt dataset's preprocessing entry `key` cannot be made the saved one."""
    return (
        f"the rebuilt dataset's preprocessing '{key}' differs from the run's and cannot be "
        "converted; keep the dataset options that shape the inputs as they were"
    )


def rows(count: int) -> list[int]:
    """Row numbers 1..count, the names of a table's predictions."""
    return list(range(1, count + 1))
