"""Make a rebuilt dataset's inputs what a run's saved preprocessing gives them, or refuse.

Evaluating a run rebuilds its dataset, maybe from other files or with other options, and the
statistics fitted on the rebuilt train split can differ from the ones the model learnt with. The
saved preprocessing wins: image normalisation is applied per batch from it anyway; standardised
features (array datasets, the numeric columns of tables) are re-standardised with its mean and
std; text is tokenised with the saved tokenizer (see `saved_tokenizer_options`). Anything else that
differs (one-hot categories, fill values, classes, input shape) cannot be undone: a ConfigError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dltrain.data.splits import DataMeta, DataSplits
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS

PER_BATCH = ("normalize", "augment")  # applied from the saved preprocessing while batching
STATS = ("mean", "std")


def saved_tokenizer_options(name: str, meta: DataMeta, folder: Path) -> dict[str, Any]:
    """Dataset options that make a text dataset encode with the saved tokenizer and length."""
    pre = meta.preprocessing
    if "tokenizer" not in pre or not DATASETS.accepts(name, "tokenizer_file"):
        return {}
    path = Path(folder) / "tokenizer.json"
    path.write_text(pre["tokenizer"])
    return {"tokenizer_file": str(path), "max_length": pre["max_length"]}


def align(data: DataSplits, saved: DataMeta) -> None:
    """Re-encode the splits' inputs with the saved preprocessing; ConfigError where impossible."""
    _check_shape(data.meta, saved)
    new, old = data.meta.preprocessing, saved.preprocessing
    problems = []
    for key in sorted((set(new) | set(old)) - set(PER_BATCH)):
        if new.get(key) == old.get(key):
            continue
        if key == "standardize":
            _restandardize(data, new.get(key), old.get(key), slice(None))
        elif key == "tabular" and _same_but_stats(new[key], old.get(key)):
            columns = slice(0, len(old[key]["numeric"]))  # numeric features come first
            _restandardize(data, _stats(new[key]), _stats(old[key]), columns)
        else:
            problems.append(_refusal(key, new.get(key), old.get(key)))
    if problems:
        raise ConfigError(problems)
    data.meta.preprocessing = dict(old)


def _check_shape(new: DataMeta, old: DataMeta) -> None:
    """The classes and the input shape must be the run's: the model was built for them."""
    problems = []
    if (new.class_names, new.num_classes) != (old.class_names, old.num_classes):
        problems.append(
            f"the rebuilt dataset has classes {new.class_names or new.num_classes}, the run "
            f"{old.class_names or old.num_classes}; the model predicts the run's classes only"
        )
    if tuple(new.input_shape) != tuple(old.input_shape):
        problems.append(
            f"the rebuilt dataset's inputs are shaped {tuple(new.input_shape)}, the model's "
            f"{tuple(old.input_shape)}; keep the dataset options that set the shape as they were"
        )
    if problems:
        raise ConfigError(problems)


def _stats(spec: dict[str, Any]) -> dict[str, list[float]] | None:
    return None if spec["mean"] is None else {k: spec[k] for k in STATS}


def _same_but_stats(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether two tabular specs differ only in the standardisation statistics."""
    if old is None:
        return False
    return {k: v for k, v in new.items() if k not in STATS} == {
        k: v for k, v in old.items() if k not in STATS
    }


def _restandardize(
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


def _vector(values: list[float]) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def _refusal(key: str, new: Any, old: Any) -> str:
    """Why the rebuilt `key` preprocessing cannot be turned into the saved one."""
    if key == "tabular" and new is not None and old is not None:
        differ = sorted(
            k for k in set(new) | set(old) if k not in STATS and new.get(k) != old.get(k)
        )
        return (
            f"the rebuilt table is encoded differently from the run's ({', '.join(differ)} "
            "differ: other rows in the train split?); features cannot be re-encoded, so the "
            "model's inputs would not be what it learnt from. Use dltrain-predict on the raw "
            "rows: it encodes them with the saved preprocessing"
        )
    return (
        f"the rebuilt dataset's preprocessing '{key}' differs from the run's and cannot be "
        "converted; keep the dataset options that shape the inputs as they were"
    )
