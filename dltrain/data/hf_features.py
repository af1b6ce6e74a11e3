"""Which dltrain path a Hugging Face dataset takes, read from its features, and the text and
table paths (images: dltrain.data.hf_images; dltrain.data.hf picks one).

The label: a `ClassLabel` is a classification over its names (binary when two); integer, bool and
string values are classes too (their sorted values); a float value, or any column named by
`target`, is a regression target. The inputs (unless named): one `Image` column -> image; else
exactly one string column and no float column -> text; else the other columns -> table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dltrain.data.arrays import check_finite_targets
from dltrain.data.splits import DataSplits, SplitOptions, split_indices
from dltrain.data.table_encoding import (
    encode_targets,
    target_spec,
)
from dltrain.data.tabular import encoded_splits
from dltrain.data.text import check_train_split, text_splits
from dltrain.data.tokenizer import TokenizerOptions
from dltrain.errors import ConfigError, did_you_mean

NUMBERS = ("int", "uint", "float", "bool")  # prefixes of numeric `Value` dtypes
STRINGS = ("string", "large_string")


def _kind(feature: Any) -> str:
    """image, text, class_label, float, number or other: what a column feature holds."""
    kind = type(feature).__name__
    if kind in ("Image", "ClassLabel"):
        return {"Image": "image", "ClassLabel": "class_label"}[kind]
    dtype = getattr(feature, "dtype", "") if kind == "Value" else ""
    if dtype in STRINGS:
        return "text"
    if dtype.startswith("float"):
        return "float"
    return "number" if dtype.startswith(NUMBERS) else "other"


@dataclass(frozen=True)
class Columns:
    """The columns a run reads: its inputs, how they are read, and the label."""

    path: str  # image, text or table
    inputs: list[str]
    label: str
    regression: bool
    class_names: list[str] | None  # a ClassLabel's names (else found in the data)

    @classmethod
    def choose(
        cls,
        features: Any,
        input_column: str | None,
        input_columns: list[str],
        label_column: str,
        target: str | None,
    ) -> Columns:
        """The columns for these options; one ConfigError naming every absent one."""
        names = list(features)
        label = target or label_column
        wanted = [("target" if target else "label_column", label)]
        wanted += [("input_column", input_column)] if input_column else []
        wanted += [("input_columns", c) for c in input_columns]
        if problems := [
            f"dataset.{key}: no column '{c}' in the train split.{did_you_mean(c, names)} "
            f"Columns: {', '.join(f'{n} ({_kind(features[n])})' for n in names)}"
            for key, c in wanted
            if c not in names
        ]:
            raise ConfigError(problems)
        kinds = {n: _kind(features[n]) for n in names}
        regression = bool(target) or kinds[label] == "float"
        if regression and kinds[label] not in ("float", "number"):
            raise ConfigError(
                f"dataset.target: column '{label}' holds {kinds[label]} values, not numbers"
            )
        if kinds[label] in ("image", "other"):
            raise ConfigError(f"dataset.label_column: column '{label}' holds {kinds[label]} values")
        path, inputs = _inputs(kinds, label, input_column, input_columns)
        class_label = kinds[label] == "class_label" and not regression
        label_names = list(features[label].names) if class_label else None
        return cls(path, inputs, label, regression, label_names)


def _inputs(
    kinds: dict[str, str], label: str, input_column: str | None, input_columns: list[str]
) -> tuple[str, list[str]]:
    """The path (image, text, table) and its input columns."""
    if label in [input_column, *input_columns]:
        raise ConfigError(f"dataset: the label column '{label}' is also named as an input")
    chosen = input_columns or ([input_column] if input_column else [])
    others = chosen or [n for n in kinds if n != label]
    images = [n for n in others if kinds[n] == "image"]
    texts = [n for n in others if kinds[n] == "text"]
    if len(chosen) == 1 and kinds[chosen[0]] in ("image", "text"):
        return kinds[chosen[0]], chosen
    if not input_columns and len(images) == 1:
        return "image", images
    floats = [n for n in others if kinds[n] == "float"]
    if not chosen and len(texts) == 1 and not floats:  # an id column beside a text is common
        return "text", texts
    if bad := [n for n in others if kinds[n] in ("image", "other")]:
        raise ConfigError(
            f"dataset.input_columns: columns {', '.join(bad)} hold "
            f"{', '.join(sorted({kinds[n] for n in bad}))} values, which a table cannot; name "
            "one image or text column with dataset.input_column, or table columns with "
            "dataset.input_columns"
        )
    if not others:
        raise ConfigError(f"dataset hf: no input columns besides the label '{label}'")
    return "table", others


def label_values(ds: Any, columns: Columns, split: str) -> list[Any]:
    """The label column of a split; ClassLabel indices become their names."""
    values = ds[columns.label]
    if columns.class_names is None:
        if not columns.regression and any(v is None for v in values):
            raise ConfigError(f"dataset hf: split '{split}' has rows without a label")
        return values
    if any(v is None or v < 0 for v in values):  # -1: HF's "no label" (e.g. GLUE's test sets)
        raise ConfigError(
            f"dataset hf: split '{split}' has unlabelled rows (label -1); use another split "
            "(dataset.test_split) or let val/test be split from train"
        )
    return [columns.class_names[v] for v in values]


def class_names(labels: list[Any], columns: Columns) -> list[str]:
    """The ClassLabel's names, else the train split's values sorted (numbers as numbers)."""
    if columns.class_names is not None:
        return columns.class_names
    values = sorted(set(labels))
    return [str(int(v)) if isinstance(v, float | int) else str(v) for v in values]


def carve(y: np.ndarray, task: str, split: SplitOptions, given: set[str]) -> dict[str, Any]:
    """Train-split rows of train/val/test; splits given by the source are not carved."""
    zero = {f"{k}_fraction": 0.0 for k in ("val", "test") if k in given}
    options = SplitOptions(**{**split.__dict__, **zero})
    return split_indices(y, task, options)


def text_path(
    splits: dict[str, Any], columns: Columns, split: SplitOptions, tokens: TokenizerOptions
) -> DataSplits:
    """Texts and label names through text_csv's path (a tokenizer trained on train)."""
    if columns.regression:
        raise ConfigError(
            f"dataset hf: text with a regression target ('{columns.label}') is not supported; "
            "dltrain's text models classify"
        )
    labels = {k: label_values(ds, columns, k) for k, ds in splits.items()}
    classes = class_names(labels["train"], columns)
    texts = {
        k: ([t or "" for t in ds[columns.inputs[0]]], [name_of(v, columns) for v in labels[k]])
        for k, ds in splits.items()
    }
    check_train_split("hf", *texts["train"])
    return text_splits(texts, classes, split, tokens)


def name_of(value: Any, columns: Columns) -> str:
    """A label as its class name (a ClassLabel's already is one)."""
    if columns.class_names is not None or isinstance(value, str):
        return value
    return str(int(value)) if isinstance(value, float | int) else str(value)


def table_path(
    splits: dict[str, Any], columns: Columns, split: SplitOptions, missing: str
) -> DataSplits:
    """The columns as one frame through dataset=csv's encoding, fitted on the train rows."""
    label = columns.label
    frames = []
    for k, ds in splits.items():
        frame = ds.select_columns([*columns.inputs, label]).to_pandas()
        frame[label] = label_values(ds, columns, k)
        frame = frame.dropna() if missing == "drop" else frame.dropna(subset=[label])
        frames.append(frame.assign(_split=k))
    frame = pd.concat(frames, ignore_index=True)
    where = frame.pop("_split").to_numpy()
    if not (where == "train").any():
        raise ConfigError("dataset hf: no train rows left after dropping missing values")
    train_labels = frame[label][where == "train"]
    if columns.regression:
        spec = target_spec(frame[label].astype(float), "regression", label)
    else:
        names = class_names(train_labels.tolist(), columns)
        frame[label] = [name_of(v, columns) for v in frame[label]]
        task = "binary" if len(names) == 2 else "multiclass"
        spec = {"target": label, "task": task, "target_yes_no": False, "class_names": names}
    task = spec["task"]
    y = encode_targets(frame, spec)
    if task == "regression":
        check_finite_targets(y, f"dataset.target: column '{label}'")
    train_rows = np.flatnonzero(where == "train")
    rows = {k: np.flatnonzero(where == k) for k in splits}
    carved = carve(y[train_rows], task, split, set(splits))
    rows |= {k: train_rows[i] for k, i in carved.items() if i is not None}
    return encoded_splits(frame, label, spec, y, rows, missing, split.standardize, "dataset hf")
