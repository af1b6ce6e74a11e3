"""What every dataset builder returns: train/val/test splits plus the facts models need (meta)."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from dltrain.errors import ConfigError

SPLIT_RULE = "hold_out"  # dltrain's seeded, stratified row split (see hold_out)


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
    split_rule: str | None = SPLIT_RULE  # None: rows held out by scikit-learn (before 2026-12)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so the meta can live in a weights_only checkpoint and in JSON."""
        return {**asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataMeta:
        """Inverse of to_dict (e.g. from a checkpoint)."""
        return cls(**{"split_rule": None, **values, "input_shape": tuple(values["input_shape"])})


def other_split_rule(rule: str | None) -> str | None:
    """Why a run whose rows were held out by `rule` cannot have them rebuilt now, or None."""
    if rule == SPLIT_RULE:
        return None
    drawn_by = "scikit-learn" if rule is None else repr(rule)[:60]  # a checkpoint's: one line
    return (
        f"this run's val/test rows were drawn by {drawn_by} (an older dltrain); "
        f"this dltrain draws others ({SPLIT_RULE}), which may hold rows the run trained on"
    )


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


@dataclass(frozen=True)
class SplitOptions:
    """How a dataset is divided into train/val/test, and whether its features are standardised.

    Fractions are of the whole dataset; a dataset with an official test set takes none from it.
    Standardisation uses the train split's statistics only.
    """

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0
    stratify: bool = True
    standardize: bool = False


def with_split_options(**defaults: Any) -> Callable[[Callable], Callable]:
    """Offer a builder's `split: SplitOptions` to configs as flat options, as builders take them.

    The SplitOptions fields named in `defaults` join the builder's signature with those
    defaults (what the config check binds against); the others keep SplitOptions' own.
    """
    annotations = {f.name: f.type for f in fields(SplitOptions)}
    if unknown := set(defaults) - set(annotations):
        raise TypeError(f"SplitOptions has no {', '.join(sorted(unknown))}")
    offered = [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v, annotation=annotations[k])
        for k, v in defaults.items()
    ]

    def offer(builder: Callable) -> Callable:
        own = [
            p
            for p in inspect.signature(builder).parameters.values()
            if p.name != "split" and p.kind is not inspect.Parameter.VAR_KEYWORD
        ]

        @functools.wraps(builder)
        def build(**options: Any) -> Any:
            split = SplitOptions(**{k: options.pop(k, v) for k, v in defaults.items()})
            return builder(**options, split=split)

        build.__signature__ = inspect.Signature(
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + offered
        )
        return build

    return offer


def split_indices(y: np.ndarray, task: str, split: SplitOptions) -> dict[str, np.ndarray | None]:
    """Row indices of the train/val/test splits (None for an empty one), stratified by `y`."""
    check_fractions(split.val_fraction, split.test_fraction)
    strat = split.stratify and task != "regression"
    parts: dict[str, np.ndarray | None] = {"train": np.arange(len(y)), "val": None, "test": None}
    for name, fraction in (("test", split.test_fraction), ("val", split.val_fraction)):
        if fraction == 0:
            continue
        rest = parts["train"]
        # Fractions are of the whole dataset, so rescale for what is left after earlier cuts.
        size = fraction / (1 - (split.test_fraction if name == "val" else 0))
        kept, held = hold_out(len(rest), size, split.split_seed, y[rest] if strat else None)
        parts["train"], parts[name] = rest[kept], rest[held]
    return parts


def hold_out(
    count: int, fraction: float, seed: int, labels: Sequence[Any] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held): positions 0..count-1 in a seeded order, ceil(fraction * count) of them held.

    With `labels`, each class is held out in proportion to its size (largest remainders get the
    rows that proportions leave over), so val and test see the classes as train does.
    """
    held_count = math.ceil(fraction * count)
    if not 0 < held_count < count:
        raise ConfigError(
            f"dataset: {count} rows are too few to hold out a fraction {fraction:.3g} and keep "
            "some for training; give more data or a smaller val_fraction/test_fraction"
        )
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(count)
        return order[held_count:], order[:held_count]
    _, classes = np.unique(np.asarray(labels), return_inverse=True)
    sizes = np.bincount(classes)
    quotas = held_count * sizes / count
    takes = np.floor(quotas).astype(np.int64)
    left_over = held_count - int(takes.sum())
    remainders = quotas - takes + rng.random(len(sizes)) * 1e-9  # equal remainders: by chance
    takes[np.argsort(-remainders, kind="stable")[:left_over]] += 1
    held = [rng.permutation(np.flatnonzero(classes == c))[:take] for c, take in enumerate(takes)]
    is_held = np.zeros(count, dtype=bool)
    is_held[np.concatenate(held)] = True
    return rng.permutation(np.flatnonzero(~is_held)), rng.permutation(np.flatnonzero(is_held))
