"""Features: flat vectors of numbers (the array datasets), maybe standardised with train statistics.

New inputs are a table of the feature columns, standardised with the saved statistics; a rebuilt
dataset's own statistics are swapped for the saved ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dltrain.data.splits import DataMeta
from dltrain.errors import ConfigError
from dltrain.modalities.modality import Inputs, Modality, one_file, rows
from dltrain.modalities.restandardize import saved_statistics

if TYPE_CHECKING:
    import pandas as pd


def read_features(path: Path, meta: DataMeta, text_column: str) -> Inputs:
    """A table's raw feature columns in the training order, standardised as in training."""
    from dltrain.data.tabular import read_table  # pandas: only to read new inputs

    frame = read_table(one_file(path, "features"))
    return Inputs("row", rows(len(frame)), feature_rows(frame, meta, path))


def feature_rows(frame: pd.DataFrame, meta: DataMeta, path: Path) -> torch.Tensor:
    """A frame's feature columns (by name, else all in order) standardised with saved statistics."""
    names, width = meta.feature_names, meta.input_shape[0]
    if names and (absent := [n for n in names if n not in frame.columns]):
        raise ConfigError(
            f"input: {path} lacks the feature columns {_some(absent)} (it has "
            f"{_some(list(frame.columns))})"
        )
    if names:
        frame = frame[names]
    elif frame.shape[1] != width:
        raise ConfigError(
            f"input: {path} has {frame.shape[1]} columns; the model expects {width} feature "
            "columns, in the training order"
        )
    try:
        x = frame.to_numpy(np.float64)
    except (ValueError, TypeError):
        raise ConfigError(f"input: {path}: every feature column must hold numbers") from None
    if stats := meta.preprocessing.get("standardize"):
        x = (x - np.asarray(stats["mean"])) / np.asarray(stats["std"])
    return torch.from_numpy(x.astype(np.float32))


def _some(names: list[str], first: int = 5) -> str:
    """The first few names, and how many there are when some are left out."""
    more = f", ... ({len(names)} in all)" if len(names) > first else ""
    return ", ".join(map(str, names[:first])) + more


FEATURES = Modality(
    name="features", read=read_features, converters={"standardize": saved_statistics}
)
