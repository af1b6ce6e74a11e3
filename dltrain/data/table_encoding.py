"""How table columns become features: an encoding fitted on the train split, saved with the run.

Columns (other than the target) are encoded by kind, decided on the whole file:
- numeric: kept as numbers; standardised with the train mean and std when `standardize` is true;
- yes/no (only "yes"/"no" values, any case): 1/0, never standardised;
- anything else (text, category, bool): one-hot over the sorted categories of the train split;
  a category never seen there encodes as all zeros.
Features are ordered numeric, yes/no, one-hot (file order within each kind).

Missing values: `mean` / `median` fill numeric columns with the train mean / median and other
columns with the train's most frequent value; `most_frequent` uses that for every column; with
`drop` the rows were dropped before splitting and a missing value here is an error.

The spec (plain JSON, in meta.preprocessing["tabular"] and the run dir's preprocessing.json) is
all `encode_frame` needs to encode new rows exactly as the training rows were.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dltrain.errors import ConfigError

YES_NO = {"no": 0, "yes": 1}
AUTO_MAX_CLASSES = 20  # task=auto: whole-number targets with at most this many values are classes


def _text(values: pd.Series) -> pd.Series:
    """Values as the strings categories and class names are made of."""
    return values.astype(str).str.strip()


def _is_yes_no(values: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    seen = {str(v).strip().lower() for v in values.dropna().unique()}
    return bool(seen) and seen <= set(YES_NO)


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _label(value: Any) -> str:
    """A numeric class as text: whole numbers without a decimal point (3.0 -> '3')."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _inferred_task(values: pd.Series, number: bool, distinct: int) -> str:
    """task=auto: two values binary; text or few whole numbers multiclass; else regression."""
    whole = number and bool(np.all(np.mod(values.to_numpy(np.float64), 1) == 0))
    if distinct == 2:
        return "binary"
    if not number or (whole and distinct <= AUTO_MAX_CLASSES):
        return "multiclass"
    return "regression"


def target_spec(values: pd.Series, task: str, name: str) -> dict[str, Any]:
    """How to encode target `values` (no missing ones) for `task`; "auto" picks the task.

    Auto rule: yes/no or exactly 2 distinct values -> binary; text, category or bool -> multiclass;
    whole numbers with at most AUTO_MAX_CLASSES distinct values -> multiclass; else regression.
    Class names are the sorted original values as text (["no", "yes"] for a yes/no target).
    A classifier needs two classes in the data, except an explicit binary task on a yes/no column:
    its classes are known (no, yes) even when the file holds only one of them.
    """
    yes_no = _is_yes_no(values)
    if yes_no:
        values = values.astype(str).str.strip().str.lower().map(YES_NO)
    number = _is_number(values)
    distinct = values.nunique()
    if task == "auto":
        task = _inferred_task(values, number, distinct)
    if distinct == 1 and task != "regression" and not (yes_no and task == "binary"):
        only = values.iloc[0]
        shown = {c: w for w, c in YES_NO.items()}[only] if yes_no else _shown(only, number)
        raise ConfigError(
            f"dataset.target: column '{name}' holds one value ({shown!r}) in all {len(values)} "
            "rows; a classifier needs at least two classes"
        )
    spec = {"target": name, "task": task, "target_yes_no": yes_no, "class_names": None}
    if task == "regression":
        if not number:
            example = values.iloc[0]
            raise ConfigError(
                f"dataset.target: column '{name}' holds text (e.g. {example!r}), not a regression "
                "target; set dataset.task to binary, multiclass or auto"
            )
        return spec
    if yes_no:
        names = list(YES_NO)  # both, also when one is absent (explicit binary only, see above)
    elif number:
        names = [_label(v) for v in sorted(values.unique())]
    else:
        names = sorted(_text(values).unique())
    if len(names) < 2 or (task == "binary" and len(names) != 2):
        raise ConfigError(
            f"dataset.target: column '{name}' has {len(names)} distinct value(s) "
            f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); a {task} task needs "
            f"{'exactly 2' if task == 'binary' else 'at least 2'}; set dataset.task to fit"
        )
    return {**spec, "class_names": names}


def _shown(value: Any, number: bool) -> str:
    """A target value as an error shows it: as its class name would be."""
    return _label(value) if number else str(value).strip()


def encode_targets(frame: pd.DataFrame, spec: dict[str, Any]) -> np.ndarray:
    """Target column of `frame` as class indices (int64) or values (float64), as in training."""
    spec = spec.get("tabular", spec)
    values = frame[spec["target"]]
    if spec["target_yes_no"]:
        values = values.astype(str).str.strip().str.lower()  # the class names: "no", "yes"
        if spec["task"] == "regression":
            values = values.map(YES_NO)
    if spec["task"] == "regression":
        return values.to_numpy(np.float64)
    labels = values.map(_label) if _is_number(values) else _text(values)
    codes = pd.Categorical(labels, categories=spec["class_names"]).codes.astype(np.int64)
    if (codes < 0).any():
        unknown = sorted(set(labels[codes < 0]))[:5]
        raise ConfigError(
            f"target '{spec['target']}': values {', '.join(map(str, unknown))} are not among "
            f"the classes {', '.join(spec['class_names'])}"
        )
    return codes


def fit_features(
    train: pd.DataFrame, kinds: dict[str, list[str]], missing: str, standardize: bool
) -> dict[str, Any]:
    """Categories, impute values and standardisation of the features, from the train rows."""
    numeric, yes_no, categorical = kinds["numeric"], kinds["yes_no"], kinds["categorical"]
    impute: dict[str, Any] = {}
    if missing != "drop":
        for col in numeric:
            s = train[col].dropna()
            value = s.mean() if missing == "mean" else s.median() if missing == "median" else None
            value = _mode(s, 0.0) if value is None else value
            impute[col] = 0.0 if pd.isna(value) else float(value)  # 0.0: no train value at all
        for col in yes_no:
            impute[col] = _mode(train[col].dropna().astype(str).str.strip().str.lower(), "no")
        for col in categorical:
            impute[col] = _mode(_text(train[col].dropna()), "")
    categories = {c: sorted(_text(train[c].dropna()).unique()) for c in categorical}
    names = [*numeric, *yes_no, *(f"{c}={v}" for c in categorical for v in categories[c])]
    spec = {
        "numeric": numeric,
        "yes_no": yes_no,
        "categorical": categories,
        "missing": missing,
        "impute": impute,
        "mean": None,
        "std": None,
        "feature_names": names,
    }
    if standardize and numeric:
        numbers = _numbers(train, spec)
        std = numbers.std(axis=0)
        std[std == 0] = 1.0  # a constant column stays constant instead of dividing by zero
        spec["mean"], spec["std"] = numbers.mean(axis=0).tolist(), std.tolist()
    return spec


def _mode(values: pd.Series, fallback: Any) -> Any:
    """Most frequent value (the smallest on ties, so the result is reproducible)."""
    modes = values.mode()
    if modes.empty:
        return fallback
    value = modes.iloc[0]
    return value.item() if hasattr(value, "item") else value


def encode_frame(frame: pd.DataFrame, spec: dict[str, Any]) -> np.ndarray:
    """Raw rows -> the model's float32 feature matrix, using a spec saved in meta.preprocessing.

    `spec` is meta.preprocessing or its "tabular" entry. Extra columns (the target) are ignored.
    """
    spec = spec.get("tabular", spec)
    needed = [*spec["numeric"], *spec["yes_no"], *spec["categorical"]]
    if absent := [c for c in needed if c not in frame.columns]:
        raise ConfigError(f"rows to encode lack the columns {', '.join(absent)}")
    blocks = [_numbers(frame, spec)]
    if spec["mean"] is not None:  # only the numeric block is standardised
        blocks = [(blocks[0] - np.asarray(spec["mean"])) / np.asarray(spec["std"])]
    for col in spec["yes_no"]:
        words = _filled(frame, col, spec).astype(str).str.strip().str.lower()
        if bad := sorted(set(words) - set(YES_NO)):
            raise ConfigError(f"column '{col}' holds {', '.join(bad[:5])}; expected yes or no")
        blocks.append(words.map(YES_NO).to_numpy(np.float64)[:, None])
    for col, categories in spec["categorical"].items():
        values = _text(_filled(frame, col, spec)).to_numpy(object)
        blocks.append(values[:, None] == np.asarray(categories, dtype=object)[None, :])
    return np.concatenate(blocks, axis=1).astype(np.float32)


def _numbers(frame: pd.DataFrame, spec: dict[str, Any]) -> np.ndarray:
    """The numeric columns, imputed, as a float64 (rows, columns) matrix."""
    columns = [np.zeros(len(frame))]  # keeps the shape right when there is no numeric column
    for col in spec["numeric"]:
        try:
            columns.append(pd.to_numeric(_filled(frame, col, spec)).to_numpy(np.float64))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"column '{col}' should hold numbers: {e}") from None
    return np.stack(columns, axis=1)[:, 1:]


def _filled(frame: pd.DataFrame, col: str, spec: dict[str, Any]) -> pd.Series:
    """Column `col` with missing values imputed; ConfigError when there is no impute value."""
    values = frame[col]
    if col in spec["impute"]:
        values = values.where(values.notna(), spec["impute"][col])
    if values.isna().any():
        raise ConfigError(
            f"column '{col}' has missing values and the data was prepared with "
            f"missing={spec['missing']}; drop those rows or train with missing=mean/median/"
            "most_frequent"
        )
    return values


def column_kinds(features: pd.DataFrame) -> dict[str, list[str]]:
    """Feature columns grouped by encoding: numeric, yes_no, categorical (file order)."""
    kinds: dict[str, list[str]] = {"numeric": [], "yes_no": [], "categorical": []}
    for col in features.columns:
        s = features[col]
        kind = "numeric" if _is_number(s) else "yes_no" if _is_yes_no(s) else "categorical"
        kinds[kind].append(col)
    return kinds
