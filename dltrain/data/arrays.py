"""In-memory array datasets (bundled, generated): features and targets split into tensors."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dltrain.data.splits import (
    DataMeta,
    DataSplits,
    SplitOptions,
    split_indices,
    with_split_options,
)
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS


def check_finite(
    features: dict[str, np.ndarray | None],
    names: list[str] | None,
    source: str,
    stats: tuple[Any, ...] = (),
) -> None:
    """ConfigError naming the feature columns that hold inf or NaN in any split.

    Run on the float32 features the model gets, so values that overflowed while being
    standardised or stored (beyond float32's 3.4e38) are caught; `stats` (per-column mean and
    std, the first columns) catch a std that overflowed into inf and turned a column into zeros.
    """
    bad: set[int] = set()
    for values in stats:
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        bad.update(np.flatnonzero(~np.isfinite(flat)).tolist())
    for x in features.values():
        if x is not None and len(x):
            bad.update(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=0)).tolist())
    if not bad:
        return
    columns = [names[i] if names and i < len(names) else str(i) for i in sorted(bad)]
    shown = ", ".join(f"'{c}'" for c in columns[:5]) + (", ..." if len(columns) > 5 else "")
    raise ConfigError(
        f"{source}: feature column(s) {shown} hold values that are not finite (inf or NaN, or "
        "numbers too large to standardise or to store as float32, such as 1e308); remove those "
        "rows or rescale the column(s)"
    )


def check_finite_targets(y: np.ndarray, source: str) -> None:
    """ConfigError when regression targets hold inf or NaN, or overflow float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = int((~np.isfinite(np.asarray(y, dtype=np.float32))).sum())
    if bad:
        raise ConfigError(
            f"{source}: {bad} regression targets are not finite (inf or NaN, or too large to "
            "store as float32); remove those rows or rescale the target"
        )


def split_arrays(
    x: np.ndarray,
    y: np.ndarray,
    task: str,
    split: SplitOptions,
    class_names: list[str] | None = None,
    feature_names: list[str] | None = None,
    source: str = "dataset",
) -> DataSplits:
    """Split features/targets into train/val/test (stratified for classification) as tensors.

    `source` names the dataset in errors (non-finite features or targets).
    """
    rows = split_indices(y, task, split)
    parts = {k: None if i is None else (x[i], y[i]) for k, i in rows.items()}

    preprocessing: dict[str, Any] = {}
    # Overflow is checked below, on the features themselves: numpy need not warn about it.
    with np.errstate(over="ignore", invalid="ignore"):
        if split.standardize:
            mean = parts["train"][0].mean(axis=0)
            std = parts["train"][0].std(axis=0)
            std[std == 0] = 1.0
            parts = {
                k: None if v is None else ((v[0] - mean) / std, v[1]) for k, v in parts.items()
            }
            preprocessing["standardize"] = {"mean": mean.tolist(), "std": std.tolist()}
        parts = {
            k: None if v is None else (np.asarray(v[0], dtype=np.float32), v[1])
            for k, v in parts.items()
        }
    stats = tuple(preprocessing.get("standardize", {}).values())
    features = {k: None if v is None else v[0] for k, v in parts.items()}
    check_finite(features, feature_names, source, stats)
    if task == "regression":
        check_finite_targets(y, source)

    meta = DataMeta(
        task=task,
        input_shape=tuple(x.shape[1:]),
        num_classes=len(np.unique(y)) if task != "regression" else None,
        num_targets=1 if y.ndim == 1 else y.shape[1],
        class_names=class_names,
        feature_names=feature_names,
        preprocessing=preprocessing,
    )
    datasets = {k: None if v is None else to_tensor_dataset(*v, task) for k, v in parts.items()}
    return DataSplits(datasets["train"], datasets["val"], datasets["test"], meta)


def to_tensor_dataset(x: np.ndarray, y: np.ndarray, task: str) -> TensorDataset:
    """Features as float32; targets int64 class indices, or float32 (N, targets) for regression."""
    features = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if task == "regression":
        targets = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(len(y), -1)
    else:
        targets = torch.as_tensor(np.asarray(y, dtype=np.int64))
    return TensorDataset(features, targets)


@dataclass
class Arrays:
    """A whole dataset as arrays, before splitting."""

    x: np.ndarray
    y: np.ndarray
    task: str
    class_names: list[str] | None = None
    feature_names: list[str] | None = None


def array_dataset(name: str, task: str | Callable[..., str], **split: Any) -> Callable:
    """Register `make(**options) -> Arrays` as dataset `name`, with every split option offered.

    `task` is the task, or a function of the options giving it, so configs are checked before
    any data is loaded; `split` holds this dataset's own split defaults (conf/dataset/<name>.yaml
    shows the same values).
    """
    defaults = {**asdict(SplitOptions()), **split}

    def register(make: Callable[..., Arrays]) -> Callable[..., Arrays]:
        def build(split: SplitOptions, **options: Any) -> DataSplits:
            arrays = make(**options)
            names = {"class_names": arrays.class_names, "feature_names": arrays.feature_names}
            return split_arrays(arrays.x, arrays.y, arrays.task, split, **names, source=name)

        build.__signature__ = inspect.signature(make)  # its own options; the split ones join
        build.__doc__ = make.__doc__
        registered = DATASETS.register(name, task=task, modality="features")
        registered(with_split_options(**defaults)(build))
        return make

    return register
