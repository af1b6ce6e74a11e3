"""What every dataset builder returns: train/val/test splits plus the facts models need (meta)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, TensorDataset

from dltrain.errors import ConfigError
from dltrain.registry import DATASETS


@dataclass
class DataMeta:
    """Facts about a dataset that the model, loss and metrics need."""

    task: str
    input_shape: tuple[int, ...]
    num_classes: int | None = None  # classification only
    num_targets: int = 1  # regression only
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    vocab: list[str] | None = None  # text: token of each id (0 is padding)
    preprocessing: dict[str, Any] = field(default_factory=dict)  # e.g. standardisation stats
    modality: str | None = None  # image, text, ... (dltrain.modalities); set by the run's build

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so the meta can live in a weights_only checkpoint and in JSON."""
        return {**asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataMeta:
        """Inverse of to_dict (e.g. from a checkpoint)."""
        return cls(**{**values, "input_shape": tuple(values["input_shape"])})


@dataclass
class DataSplits:
    """The three splits (val and test may be None) and the meta."""

    train: Dataset
    val: Dataset | None
    test: Dataset | None
    meta: DataMeta


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Val and test fractions must leave a non-empty train split."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"dataset.val_fraction={val_fraction} and dataset.test_fraction={test_fraction} must "
            "each be in [0, 1) and sum to less than 1 (the rest is the train split)"
        )


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


def split_indices(
    y: np.ndarray,
    task: str,
    *,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    stratify: bool,
) -> dict[str, np.ndarray | None]:
    """Row indices of the train/val/test splits (None for an empty one), stratified by `y`."""
    check_fractions(val_fraction, test_fraction)
    strat = stratify and task != "regression"
    parts: dict[str, np.ndarray | None] = {"train": np.arange(len(y)), "val": None, "test": None}
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        if fraction == 0:
            continue
        rest = parts["train"]
        # Fractions are of the whole dataset, so rescale for what is left after earlier cuts.
        size = fraction / (1 - (test_fraction if name == "val" else 0))
        parts["train"], parts[name] = train_test_split(
            rest,
            test_size=size,
            random_state=split_seed,
            stratify=y[rest] if strat else None,
        )
    return parts


def split_arrays(
    x: np.ndarray,
    y: np.ndarray,
    task: str,
    *,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    stratify: bool,
    standardize: bool,
    class_names: list[str] | None = None,
    feature_names: list[str] | None = None,
    source: str = "dataset",
) -> DataSplits:
    """Split features/targets into train/val/test (stratified for classification) as tensors.

    `source` names the dataset in errors (non-finite features or targets).
    """
    rows = split_indices(
        y,
        task,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        stratify=stratify,
    )
    parts = {k: None if i is None else (x[i], y[i]) for k, i in rows.items()}

    preprocessing: dict[str, Any] = {}
    # Overflow is checked below, on the features themselves: numpy need not warn about it.
    with np.errstate(over="ignore", invalid="ignore"):
        if standardize:
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


def _split_options(
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    stratify: bool = True,
    standardize: bool = False,
) -> None:
    """Signature holder: the split options every in-memory array dataset accepts."""


SPLIT_PARAMS = inspect.signature(_split_options).parameters


def array_dataset(name: str, task: str | Callable[..., str]) -> Callable:
    """Register `make(**options) -> Arrays` as dataset `name`, adding the standard split options.

    `task` is the task, or a function of the options giving it, so configs are checked before
    any data is loaded.
    """

    def register(make: Callable[..., Arrays]) -> Callable[..., Arrays]:
        def build(**options: Any) -> DataSplits:
            split = {k: options.pop(k, p.default) for k, p in SPLIT_PARAMS.items()}
            arrays = make(**options)
            return split_arrays(
                arrays.x,
                arrays.y,
                arrays.task,
                class_names=arrays.class_names,
                feature_names=arrays.feature_names,
                source=f"dataset {name}",
                **split,
            )

        own = list(inspect.signature(make).parameters.values())
        build.__signature__ = inspect.Signature([*own, *SPLIT_PARAMS.values()])
        build.__doc__ = make.__doc__
        DATASETS.register(name, task=task)(build)
        return make

    return register
