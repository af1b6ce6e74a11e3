"""Standardised columns of a rebuilt dataset put on the run's saved statistics instead of its own.

Array datasets of any shape may be standardised (dltrain.data.splits.array_splits: the
"standardize" entry), tables their numeric columns (the "tabular" entry's mean and std).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dltrain.data.splits import DataSplits
from dltrain.errors import ConfigError

STATS = ("mean", "std")


def restandardize(
    data: DataSplits, new: dict[str, Any] | None, old: dict[str, Any] | None, columns: slice
) -> None:
    """Undo the rebuilt standardisation of `columns` (if any) and apply the saved one (if any)."""
    for split in (data.train, data.val, data.test):
        if split is None:
            continue
        if not isinstance(split, TensorDataset):
            raise ConfigError("standardised features must be in-memory tensors to re-standardise")
        x = split.tensors[0].double()
        part = x[:, columns]
        if new is not None:
            part = part * _vector(new["std"]) + _vector(new["mean"])
        if old is not None:
            part = (part - _vector(old["mean"])) / _vector(old["std"])
        x[:, columns] = part
        split.tensors = (x.to(split.tensors[0].dtype), *split.tensors[1:])


def saved_statistics(data: DataSplits, new: Any, old: Any) -> None:
    """An array dataset's features re-standardised with the saved statistics (or none)."""
    restandardize(data, new, old, slice(None))


def _vector(values: list[float]) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))
