"""Tabular datasets from CSV or Parquet files, encoded with statistics of the train split only.

How columns become features (numeric, yes/no, one-hot; missing values; standardisation) is in
dltrain.data.table_encoding. `missing: drop` removes every row with a missing value (in the
columns used) before splitting; rows with a missing target are always dropped.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from dltrain.data.arrays import check_finite, check_finite_targets, to_tensor_dataset
from dltrain.data.files import reason, regular_file
from dltrain.data.splits import (
    DataMeta,
    DataSplits,
    SplitOptions,
    check_fractions,
    split_indices,
    with_split_options,
)
from dltrain.data.table_encoding import (
    column_kinds,
    encode_frame,
    encode_targets,
    fit_features,
    target_spec,
)
from dltrain.errors import ConfigError, did_you_mean
from dltrain.registry import DATASETS

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
TABLE_SPLIT = {  # every split option, standardised features
    "val_fraction": 0.15,
    "test_fraction": 0.15,
    "split_seed": 0,
    "stratify": True,
    "standardize": True,
}


def read_table(path: Path, sep: str = ",", nrows: int | None = None) -> pd.DataFrame:
    """A CSV file (Parquet for .parquet/.pq) as a frame with string column names."""
    regular_file(path, "dataset file")
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
        raise ConfigError(f"dataset file {path}: cannot be read ({reason(e)})") from None
    frame.columns = [str(c) for c in frame.columns]
    return frame


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
    else:
        try:
            regular_file(Path(path).expanduser(), "dataset.path")
        except ConfigError as e:
            problems += e.problems
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


def check_header(
    path: str | None,
    target: str | None,
    drop: list[str] | tuple[str, ...],
    sep: str,
    val_fraction: float,
    test_fraction: float,
) -> None:
    """Every mistake the options and the file's header show."""
    _check_options(path, target, val_fraction, test_fraction)
    header = read_table(Path(path).expanduser(), sep, nrows=0)
    _check_columns(list(header.columns), target, list(drop or []))


def _check_csv(
    path: str | None = None,
    target: str | None = None,
    drop: list[str] | tuple[str, ...] = (),
    sep: str = ",",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    task: str = "auto",
    missing: str = "drop",
    **_: object,
) -> str:
    """Every mistake the options and the file show, and the task of its target column (preflight
    runs it before a run dir is made: a loss that does not fit the target fails there)."""
    check_header(path, target, drop, sep, val_fraction, test_fraction)
    file = Path(path).expanduser()
    found = os.stat(file)
    stamp = (str(file.resolve()), found.st_size, found.st_mtime_ns)
    return _target_task(stamp, sep, target, tuple(drop or ()), missing, task)


@functools.lru_cache(maxsize=16)
def _target_task(
    stamp: tuple[str, int, int], sep: str, target: str, drop: tuple, missing: str, task: str
) -> str:
    """The task of the rows a run would keep (read once per version of the file)."""
    frame = _read_rows(Path(stamp[0]), sep, target, list(drop), missing)
    return target_spec(frame[target], task, target)["task"]


# The annotations spell their Literals out: the registry checks string annotations against
# builtins and typing names only, so an alias would go unchecked.
@DATASETS.register("csv", task=_csv_task, reads_files=True, check=_check_csv, modality="table")
@with_split_options(
    val_fraction=0.15, test_fraction=0.15, split_seed=0, stratify=True, standardize=True
)
def csv(
    path: str | None = None,
    target: str | None = None,
    drop: list[str] | tuple[str, ...] = (),
    task: Literal["auto", "binary", "multiclass", "regression"] = "auto",
    missing: Literal["drop", "mean", "median", "most_frequent"] = "drop",
    sep: str = ",",
    *,
    split: SplitOptions,
) -> DataSplits:
    """Any CSV (or Parquet) table: predict column `target` from the others (see module doc)."""
    check_header(path, target, drop, sep, split.val_fraction, split.test_fraction)
    return table_splits(Path(path).expanduser(), target, list(drop), task, missing, sep, split)


def table_splits(
    file: Path,
    target: str,
    drop: list[str],
    task: str,
    missing: str,
    sep: str,
    split: SplitOptions,
) -> DataSplits:
    """A table's rows split and encoded (the encoding fitted on the train split only)."""
    frame = _read_rows(file, sep, target, drop, missing)
    spec = target_spec(frame[target], task, target)
    task = spec["task"]  # "auto" resolved
    y = encode_targets(frame, spec)
    if task == "regression":
        check_finite_targets(y, f"dataset.target: column '{target}' of {file.name}")
    rows = split_indices(y, task, split)
    where = f"dataset.path: {file}"
    return encoded_splits(frame, target, spec, y, rows, missing, split.standardize, where)


def encoded_splits(
    frame: pd.DataFrame,
    target: str,
    spec: dict[str, Any],
    y: np.ndarray,
    rows: dict[str, np.ndarray | None],
    missing: str,
    standardize: bool,
    where: str,
) -> DataSplits:
    """The feature columns encoded (fitted on rows["train"] only), checked finite (`where`
    names the source in the error), and split into tensor datasets with the table's meta."""
    task = spec["task"]
    kinds = column_kinds(frame.drop(columns=[target]))
    # Overflow (a 1e308 feature) is caught by check_finite on the result: no numpy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        spec.update(fit_features(frame.iloc[rows["train"]], kinds, missing, standardize))
        x = {k: None if i is None else encode_frame(frame.iloc[i], spec) for k, i in rows.items()}
    stats = () if spec["mean"] is None else (spec["mean"], spec["std"])
    check_finite(x, spec["feature_names"], where, stats)
    sets = {k: None if i is None else to_tensor_dataset(x[k], y[i], task) for k, i in rows.items()}
    names = spec["class_names"]
    meta = DataMeta(
        task=task,
        input_shape=(len(spec["feature_names"]),),
        num_classes=None if names is None else len(names),
        class_names=names,
        feature_names=spec["feature_names"],
        preprocessing={"tabular": spec},
    )
    return DataSplits(sets["train"], sets.get("val"), sets.get("test"), meta)
