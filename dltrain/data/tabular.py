"""Tabular datasets from CSV or Parquet files, encoded with statistics of the train split only.

Columns (other than the target and `drop`) are encoded by kind, decided on the whole file:
- numeric: kept as numbers; standardised with the train mean and std when `standardize` is true;
- yes/no (only "yes"/"no" values, any case): 1/0, never standardised;
- anything else (text, category, bool): one-hot over the sorted categories of the train split;
  a category never seen there encodes as all zeros.
Features are ordered numeric, yes/no, one-hot (file order within each kind).

`missing` says what happens to missing values: `drop` removes every row with one (in the columns
used) before splitting; `mean` / `median` fill numeric columns with the train mean / median and
other columns with the train's most frequent value; `most_frequent` uses that for every column.
Rows with a missing target are always dropped.

Everything needed to encode new rows the same way is in meta.preprocessing["tabular"] (plain
JSON, saved in the run dir): `encode_frame` turns raw rows into features with it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from dltrain.data.files import data_root
from dltrain.data.splits import (
    DataMeta,
    DataSplits,
    check_fractions,
    split_indices,
    to_tensor_dataset,
)
from dltrain.registry import DATASETS, ConfigError, did_you_mean

log = logging.getLogger(__name__)

YES_NO = {"no": 0, "yes": 1}
AUTO_MAX_CLASSES = 20  # task=auto: whole-number targets with at most this many values are classes
PARQUET_SUFFIXES = (".parquet", ".pq")
BANK_FILES = ["bank_marketing/bank.csv", "bank.csv"]


def read_table(path: Path, sep: str = ",", nrows: int | None = None) -> pd.DataFrame:
    """A CSV file (Parquet for .parquet/.pq) as a frame with string column names."""
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            frame = pd.read_parquet(path)
            frame = frame if nrows is None else frame.head(nrows)
        else:
            frame = pd.read_csv(path, sep=sep, nrows=nrows, skipinitialspace=True)
    except ImportError:
        raise ConfigError(
            f"dataset file {path}: reading Parquet needs pyarrow or fastparquet "
            "(pip install pyarrow), or save the table as CSV"
        ) from None
    except (OSError, ValueError) as e:  # pandas' parser errors are ValueErrors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"dataset file {path}: cannot be read ({reason})") from None
    frame.columns = [str(c) for c in frame.columns]
    return frame


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


def target_spec(values: pd.Series, task: str, name: str) -> dict[str, Any]:
    """How to encode target `values` (no missing ones) for `task`; "auto" picks the task.

    Auto rule: yes/no or exactly 2 distinct values -> binary; text, category or bool -> multiclass;
    whole numbers with at most AUTO_MAX_CLASSES distinct values -> multiclass; else regression.
    Class names are the sorted original values as text (["no", "yes"] for a yes/no target).
    """
    yes_no = _is_yes_no(values)
    if yes_no:
        values = values.astype(str).str.strip().str.lower().map(YES_NO)
    number = _is_number(values)
    distinct = values.nunique()
    if task == "auto":
        whole = number and bool(np.all(np.mod(values.to_numpy(np.float64), 1) == 0))
        if distinct == 2:
            task = "binary"
        elif not number or (whole and distinct <= AUTO_MAX_CLASSES):
            task = "multiclass"
        else:
            task = "regression"
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
        names = [word for word, code in YES_NO.items() if code in set(values)]
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


def _check_columns(columns: list[str], target: str, drop: list[str]) -> None:
    """ConfigError naming every unknown target / drop column, with the closest existing one."""
    problems = [
        f"{key}: no column '{name}' in the file.{did_you_mean(name, columns)} "
        f"Columns: {', '.join(columns)}"
        for key, names in (("dataset.target", [target]), ("dataset.drop", drop))
        for name in names
        if name not in columns
    ]
    if target in drop:
        problems.append(f"dataset.drop: lists the target column '{target}'")
    if problems:
        raise ConfigError(problems)


def _check_options(
    path: str | None, target: str | None, val_fraction: float, test_fraction: float
) -> None:
    """Every mistake findable without reading the file, in one ConfigError."""
    problems = []
    if path is None:
        problems.append("dataset.path: set it to the CSV or Parquet file")
    elif not Path(path).expanduser().is_file():
        problems.append(f"dataset.path: no such file {Path(path).expanduser()}")
    if target is None:
        problems.append("dataset.target: set it to the column to predict")
    try:
        check_fractions(val_fraction, test_fraction)
    except ConfigError as e:
        problems += e.problems
    if problems:
        raise ConfigError(problems)


def _read_rows(file: Path, sep: str, target: str, drop: list[str], missing: str) -> pd.DataFrame:
    """The table without `drop` columns and rows lacking values that `missing` cannot fill."""
    _check_columns(list(read_table(file, sep, nrows=0).columns), target, drop)  # header only
    frame = read_table(file, sep).drop(columns=drop)
    before = len(frame)
    frame = frame.dropna() if missing == "drop" else frame.dropna(subset=[target])
    if frame.empty:
        raise ConfigError(f"dataset file {file}: no rows left after dropping missing values")
    if len(frame) < before:
        log.info(f"{file.name}: dropped {before - len(frame)} rows with missing values")
    return frame.reset_index(drop=True)


def _csv_task(task: str = "auto", **_: object) -> str | None:
    return None if task == "auto" else task  # None: known after loading


# The annotations spell their Literals out: the registry checks string annotations against
# builtins and typing names only, so an alias would go unchecked.
@DATASETS.register("csv", task=_csv_task, reads_files=True)
def csv(
    path: str | None = None,
    target: str | None = None,
    drop: list[str] | None = None,
    task: Literal["auto", "binary", "multiclass", "regression"] = "auto",
    missing: Literal["drop", "mean", "median", "most_frequent"] = "drop",
    sep: str = ",",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    stratify: bool = True,
    standardize: bool = True,
) -> DataSplits:
    """Any CSV (or Parquet) table: predict column `target` from the others (see module doc)."""
    _check_options(path, target, val_fraction, test_fraction)
    frame = _read_rows(Path(path).expanduser(), sep, target, list(drop or []), missing)
    spec = target_spec(frame[target], task, target)
    task = spec["task"]  # "auto" resolved
    y = encode_targets(frame, spec)
    rows = split_indices(
        y,
        task,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        stratify=stratify,
    )
    kinds = column_kinds(frame.drop(columns=[target]))
    spec.update(fit_features(frame.iloc[rows["train"]], kinds, missing, standardize))
    sets = {
        k: None if i is None else to_tensor_dataset(encode_frame(frame.iloc[i], spec), y[i], task)
        for k, i in rows.items()
    }
    names = spec["class_names"]
    meta = DataMeta(
        task=task,
        input_shape=(len(spec["feature_names"]),),
        num_classes=None if names is None else len(names),
        class_names=names,
        feature_names=spec["feature_names"],
        preprocessing={"tabular": spec},
    )
    return DataSplits(sets["train"], sets["val"], sets["test"], meta)


@DATASETS.register("bank_marketing", task="binary", reads_files=True)
def bank_marketing(
    path: str | None = None,
    data_dir: str | None = None,
    drop: list[str] | None = None,
    missing: Literal["drop", "mean", "median", "most_frequent"] = "drop",
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    split_seed: int = 0,
    stratify: bool = True,
    standardize: bool = True,
) -> DataSplits:
    """Bank Marketing (Kaggle's balanced 11,162-row subset): will a client subscribe a deposit?"""
    root = data_root(data_dir)
    candidates = [Path(path).expanduser()] if path else [root / f for f in BANK_FILES]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise ConfigError(
            f"dataset bank_marketing: missing {' or '.join(map(str, candidates))}; put bank.csv "
            '(the Kaggle "Bank Marketing" balanced subset of UCI Bank Marketing, 11,162 rows, '
            "target 'deposit') there, or set dataset.path, dataset.data_dir or DLTRAIN_DATA_DIR"
        )
    return csv(
        path=str(found),
        target="deposit",
        drop=drop,
        task="binary",
        missing=missing,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        stratify=stratify,
        standardize=standardize,
    )
