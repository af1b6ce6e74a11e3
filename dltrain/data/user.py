"""Your own data as plain torch Datasets: what a dataset builder may return besides DataSplits.

A builder registered with `@DATASETS.register("my_data")` (or named by `dataset=target
dataset.target=my_pkg.data:make`) may return:
- a `DataSplits` (full control over the splits and the meta), or
- one `torch.utils.data.Dataset` yielding `(x, y)`: val and test are split off it at random
  (`SplitOptions`' 15% each, seed 0), or
- a dict `{"train": ds, "val": ds, "test": ds}` (val and test optional: absent ones are split off
  train), with optional facts `task`, `num_classes`, `class_names` that are otherwise inferred.
Inferred from the train split: the input shape (the first sample's x), the task (integer targets:
classes, binary when two, else multiclass; float targets: regression), and the classes (a
`targets` attribute of the dataset is used when it has one, else every sample is read once).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import Dataset, random_split

from dltrain.data.splits import DataMeta, DataSplits, SplitOptions
from dltrain.errors import ConfigError

FACTS = ("task", "num_classes", "class_names")
SPLITS = ("train", "val", "test")


def as_data_splits(result: Any, name: str) -> DataSplits:
    """A dataset builder's result as DataSplits (see the module doc for what it may be)."""
    if isinstance(result, DataSplits):
        return result
    if isinstance(result, Dataset):
        result = {"train": result}
    if not isinstance(result, Mapping) or not isinstance(result.get("train"), Dataset):
        raise ConfigError(
            f"dataset {name}: its builder returned a {type(result).__name__}; return DataSplits, "
            "a torch Dataset of (x, y), or a dict of Datasets with 'train' (and 'val', 'test')"
        )
    if unknown := sorted(set(result) - {"train", "val", "test", *FACTS}):
        raise ConfigError(f"dataset {name}: its builder returned unknown keys {unknown}")
    splits = carve(dict(result), SplitOptions())
    meta = infer_meta(splits["train"], name, {k: result[k] for k in FACTS if k in result})
    typed = {k: None if v is None else Samples(v, meta) for k, v in splits.items() if k in SPLITS}
    return DataSplits(typed["train"], typed.get("val"), typed.get("test"), meta)


class Samples(Dataset):
    """A user's (x, y) samples as dltrain's built-in datasets give them: x a float32 tensor (or
    the integer type it has), y a class index (int64) or a float32 vector of the targets."""

    def __init__(self, dataset: Dataset, meta: DataMeta):
        self.dataset, self.regression = dataset, meta.task == "regression"

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.dataset[i]
        x = torch.as_tensor(x)
        x = x.float() if x.is_floating_point() else x
        if self.regression:
            return x, torch.as_tensor(y, dtype=torch.float32).reshape(-1)
        return x, torch.as_tensor(y, dtype=torch.int64).reshape(())


def carve(splits: dict[str, Any], split: SplitOptions) -> dict[str, Any]:
    """Val and test split off train at random where the builder gave none."""
    missing = [k for k in ("val", "test") if splits.get(k) is None]
    if not missing:
        return splits
    train = splits["train"]
    fractions = {"val": split.val_fraction, "test": split.test_fraction}
    sizes = {k: int(len(train) * fractions[k]) for k in missing}
    generator = torch.Generator().manual_seed(split.split_seed)
    parts = random_split(train, [len(train) - sum(sizes.values()), *sizes.values()], generator)
    return {**splits, "train": parts[0], **dict(zip(missing, parts[1:], strict=True))}


def infer_meta(train: Dataset, name: str, facts: dict[str, Any]) -> DataMeta:
    """Input shape, task and classes of a train split of (x, y) samples."""
    if len(train) == 0:
        raise ConfigError(f"dataset {name}: its train split is empty")
    x, y = train[0]
    shape, target = tuple(torch.as_tensor(x).shape), torch.as_tensor(y)
    if target.is_floating_point() and facts.get("task") in (None, "regression"):
        return DataMeta("regression", shape, num_targets=max(1, target.numel()))
    labels = _labels(train)
    num_classes = facts.get("num_classes") or int(labels.max()) + 1
    if num_classes < 2:
        raise ConfigError(f"dataset {name}: one class in the train split; a classifier needs two")
    task = facts.get("task") or ("binary" if num_classes == 2 else "multiclass")
    names = facts.get("class_names")
    return DataMeta(task, shape, num_classes=num_classes, class_names=names)


def _labels(train: Dataset) -> torch.Tensor:
    """Every class index of the train split (its `targets` attribute if it has one)."""
    source = getattr(train, "dataset", None) if hasattr(train, "indices") else None
    known = getattr(source if source is not None else train, "targets", None)
    if known is not None:
        labels = torch.as_tensor(known)
        return labels[torch.as_tensor(train.indices)] if source is not None else labels
    return torch.as_tensor([int(torch.as_tensor(train[i][1])) for i in range(len(train))])
