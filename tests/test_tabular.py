"""Tabular CSV / Parquet datasets: encoding, missing values, task inference, errors (fixtures)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dltrain.config import expected_task, options
from dltrain.data import tabular
from dltrain.data.splits import DataSplits
from dltrain.data.table_encoding import encode_frame, encode_targets
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS
from dltrain.train import run

from .helpers import FAST, JOBS, SHARED, compose_config, write_table

BANK = SHARED / "bank_marketing" / "bank.csv"
TARGETS = ["deposit", "color", "grade", "price"]  # the fixture's possible targets
PARQUET = any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet"))


@pytest.fixture
def table(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    path = tmp_path / "data.csv"
    return path, write_table(path)


def build(path: Path, target: str = "deposit", **kwargs: object) -> DataSplits:
    drop = [t for t in TARGETS if t != target]
    return DATASETS.build("csv", {"path": str(path), "target": target, "drop": drop, **kwargs})


def features_by_row(data: DataSplits) -> dict[str, dict[int, np.ndarray]]:
    """Each split's feature rows keyed by the fixture's row_id (undoing standardisation)."""
    spec = data.meta.preprocessing["tabular"]
    col = spec["numeric"].index("row_id")
    found = {}
    for split in ("train", "val", "test"):
        if (ds := getattr(data, split)) is None:
            continue
        x = ds.tensors[0].numpy()
        ids = x[:, col].astype(np.float64)
        if spec["mean"] is not None:
            ids = ids * spec["std"][col] + spec["mean"][col]
        found[split] = dict(zip(np.rint(ids).astype(int).tolist(), x, strict=True))
    return found


def test_every_column_kind_is_encoded(table: tuple[Path, pd.DataFrame]) -> None:
    path, _ = table
    data = build(path, missing="median")
    meta = data.meta
    assert meta.task == "binary" and meta.class_names == ["no", "yes"] and meta.num_classes == 2
    jobs = [f"job={j}" for j in JOBS]
    numeric = ["row_id", "age", "income", "const"]
    assert meta.feature_names == [*numeric, "owns_home", *jobs, "flag=False", "flag=True"]
    assert meta.input_shape == (len(meta.feature_names),)
    x = torch.cat([data.train.tensors[0], data.val.tensors[0], data.test.tensors[0]])
    assert x.dtype == torch.float32 and not torch.isnan(x).any()
    coded = x[:, len(numeric) :]  # yes/no and one-hot columns: exactly 0/1, never standardised
    assert set(coded.unique().tolist()) == {0.0, 1.0}
    assert torch.all(coded[:, 1:5].sum(1) == 1) and torch.all(coded[:, 5:].sum(1) == 1)
    spec = meta.preprocessing["tabular"]
    assert json.loads(json.dumps(meta.to_dict())) == meta.to_dict()  # plain JSON all the way
    assert spec["yes_no"] == ["owns_home"] and spec["categorical"]["job"] == JOBS


@pytest.mark.parametrize("missing", ["drop", "mean", "median", "most_frequent"])
def test_missing_value_strategies(table: tuple[Path, pd.DataFrame], missing: str) -> None:
    path, raw = table
    data = build(path, missing=missing, standardize=False)
    spec = data.meta.preprocessing["tabular"]
    rows = features_by_row(data)
    kept = {i for split in rows.values() for i in split}
    used = raw.drop(columns=TARGETS[1:])
    if missing == "drop":
        assert kept == set(used.dropna().row_id) and spec["impute"] == {}
        return
    assert kept == set(used.dropna(subset=["deposit"]).row_id)  # no target: dropped anyway
    train = raw.iloc[sorted(rows["train"])]
    expected = {
        "mean": train.age.mean(),
        "median": train.age.median(),
        "most_frequent": train.age.mode()[0],
    }[missing]
    assert spec["impute"]["age"] == pytest.approx(expected)
    assert spec["impute"]["job"] == train.job.mode()[0]  # categorical: always most frequent
    features = {i: x for split in rows.values() for i, x in split.items()}
    names = data.meta.feature_names
    for i in (3, 40):  # age missing (and job, in row 40): filled with the train values
        assert features[i][names.index("age")] == pytest.approx(expected)
    assert features[40][names.index(f"job={spec['impute']['job']}")] == 1


@pytest.mark.parametrize(
    ("target", "task", "classes"),
    [
        ("deposit", "binary", ["no", "yes"]),
        ("color", "multiclass", ["blue", "green", "red"]),
        ("grade", "multiclass", ["1", "2", "3", "4"]),
        ("price", "regression", None),
    ],
)
def test_task_is_inferred_from_the_target(
    table: tuple[Path, pd.DataFrame], target: str, task: str, classes: list[str] | None
) -> None:
    path, raw = table
    data = build(path, target=target, missing="mean")
    assert data.meta.task == task and data.meta.class_names == classes
    y = torch.cat([data.train.tensors[1], data.val.tensors[1], data.test.tensors[1]])
    if task == "regression":
        assert y.dtype == torch.float32 and y.shape == (len(raw), 1)
    else:
        assert y.dtype == torch.int64 and sorted(y.unique().tolist()) == list(range(len(classes)))
    assert expected_task(compose_config("dataset=csv").dataset) is None  # auto: after loading
    assert expected_task(compose_config("dataset=csv", f"dataset.task={task}").dataset) == task


def test_explicit_task_overrides_inference(table: tuple[Path, pd.DataFrame]) -> None:
    path, _ = table
    assert build(path, target="grade", task="regression").meta.task == "regression"
    assert build(path, target="deposit", task="multiclass").meta.num_classes == 2


def test_standardisation_is_fitted_on_the_train_split_only(
    table: tuple[Path, pd.DataFrame],
) -> None:
    path, raw = table
    data = build(path, missing="drop", standardize=True)
    spec = data.meta.preprocessing["tabular"]
    train_raw = raw.iloc[sorted(features_by_row(data)["train"])]
    numeric = spec["numeric"]
    assert spec["mean"] == pytest.approx(train_raw[numeric].mean().tolist())
    assert spec["std"][:3] == pytest.approx(train_raw[numeric[:3]].std(ddof=0).tolist())
    assert spec["std"][3] == 1.0  # the constant column: no division by zero
    x = data.train.tensors[0][:, :3]
    assert torch.allclose(x.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std(0, unbiased=False), torch.ones(3), atol=1e-5)
    assert spec["mean"] != pytest.approx(raw.dropna()[numeric].mean().tolist())  # not all rows


def test_encode_frame_reproduces_the_splits_from_raw_rows(
    table: tuple[Path, pd.DataFrame],
) -> None:
    path, raw = table
    data = build(path, missing="median", standardize=True, test_fraction=0.25)
    saved = json.loads(json.dumps(data.meta.preprocessing))  # as preprocessing.json holds it
    ids = list(features_by_row(data)["test"])
    test_x, test_y = data.test.tensors
    rows = raw.iloc[ids]
    assert np.array_equal(encode_frame(rows, saved), test_x.numpy())
    assert np.array_equal(encode_targets(rows, saved), test_y.numpy())

    new = rows.iloc[:2].copy()
    new["job"] = ["astronaut", None]  # unseen category: all zeros; missing: the train mode
    x = encode_frame(new.drop(columns=["deposit"]), saved)
    names = data.meta.feature_names
    jobs = [names.index(f"job={j}") for j in JOBS]
    assert x[0, jobs].sum() == 0 and x[1, jobs].sum() == 1
    with pytest.raises(ConfigError, match="lack the columns age"):
        encode_frame(new.drop(columns=["age"]), saved)


def test_rows_with_missing_values_need_an_impute_strategy(table: tuple[Path, pd.DataFrame]) -> None:
    path, raw = table
    spec = build(path, missing="drop").meta.preprocessing
    with pytest.raises(ConfigError, match="column 'age' has missing values"):
        encode_frame(raw.iloc[[3]], spec)


@pytest.mark.skipif(not PARQUET, reason="reading Parquet needs pyarrow or fastparquet")
def test_parquet_reads_like_csv(table: tuple[Path, pd.DataFrame]) -> None:
    path, raw = table
    raw.to_parquet(path.with_suffix(".parquet"))
    from_csv, from_parquet = build(path), build(path.with_suffix(".parquet"))
    assert from_parquet.meta == from_csv.meta
    assert torch.equal(from_parquet.train.tensors[0], from_csv.train.tensors[0])


def test_mistakes_are_one_line_config_errors(table: tuple[Path, pd.DataFrame]) -> None:
    path, _ = table
    absent = path.with_name("nope.csv")
    cases = {
        f"dataset.path: no such file {absent}": dict(path=str(absent), target="deposit"),
        "dataset.target: no column 'deposti' in the file. Did you mean 'deposit'? Columns: "
        "row_id, age": dict(path=str(path), target="deposti"),
        "dataset.drop: no column 'prise' in the file. Did you mean 'price'?": dict(
            path=str(path), target="deposit", drop=["prise"]
        ),
        "column 'color' holds text": dict(path=str(path), target="color", task="regression"),
        "has 3 distinct value": dict(path=str(path), target="color", task="binary"),
        "dataset.target: set it": dict(path=str(path)),
        "dataset.missing: must be one of drop, mean, median, most_frequent": dict(
            path=str(path), target="deposit", missing="avg"
        ),
    }
    for message, kwargs in cases.items():
        error = _error(**kwargs)
        assert message in str(error)
        assert all("\n" not in problem for problem in error.problems)


def _error(**kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        DATASETS.build("csv", kwargs)
    return err.value


def test_parquet_without_an_engine_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_engine(*args: object, **kwargs: object) -> None:
        raise ImportError("Unable to find a usable engine")  # what pandas raises without one

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    assert "needs pyarrow or fastparquet" in str(
        _error(path=str(tmp_path / "data.parquet"), target="y")
    )


def test_unknown_columns_are_found_from_the_header_alone(
    table: tuple[Path, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = table
    reads = []
    real = tabular.read_table
    monkeypatch.setattr(tabular, "read_table", lambda *a, **k: reads.append(k) or real(*a, **k))
    _error(path=str(path), target="nothing")
    assert reads == [{"nrows": 0}]


def test_bank_marketing_without_its_file_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="11,162 rows") as err:
        DATASETS.build("bank_marketing", {"data_dir": str(tmp_path)})
    assert f"missing {tmp_path / 'bank.csv'} (looked in {tmp_path}, " in str(err.value)
    assert str(tmp_path / "bank_marketing") in str(err.value)


@pytest.mark.skipif(not BANK.is_file(), reason=f"needs {BANK}")
def test_bank_marketing_gives_the_reference_48_predictors() -> None:
    cfg = compose_config("dataset=bank_marketing", f"dataset.data_dir={SHARED}").dataset
    data = DATASETS.build("bank_marketing", options(cfg))
    spec = data.meta.preprocessing["tabular"]
    assert data.meta.task == "binary" and data.meta.class_names == ["no", "yes"]
    assert data.meta.input_shape == (48,) and len(spec["numeric"]) == 7
    assert spec["yes_no"] == ["default", "housing", "loan"]
    assert sum(map(len, spec["categorical"].values())) == 38
    assert 8929 <= len(data.train) <= 8930 and 2232 <= len(data.val) <= 2233
    assert data.test is None


def test_training_on_a_csv_end_to_end(table: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, _ = table
    cfg = compose_config(
        *FAST,
        "model=mlp",
        "loss=bce",
        "dataset=csv",
        f"dataset.path={path}",
        "dataset.target=deposit",
        "dataset.drop=[color,grade,price]",
        "dataset.missing=median",
    )
    run_dir = tmp_path / "run"
    summary = run(cfg, run_dir)
    assert summary["status"] == "completed"
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    saved = json.loads((run_dir / "preprocessing.json").read_text())
    assert saved["tabular"]["target"] == "deposit"


def write_rows(path: Path, **columns: list) -> Path:
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_a_target_with_one_value_is_not_a_classification(tmp_path: Path) -> None:
    x = list(range(40))
    path = write_rows(tmp_path / "one.csv", x=x, y=["yes"] * 40)
    one_value = (
        "dataset.target: column 'y' holds one value ('yes') in all 40 rows; a classifier needs "
        "at least two classes"
    )
    for task in ("auto", "multiclass"):
        assert str(_error(path=str(path), target="y", task=task)) == one_value
    data = DATASETS.build("csv", {"path": str(path), "target": "y", "task": "binary"})
    assert data.meta.class_names == ["no", "yes"] and data.meta.num_classes == 2  # known classes
    assert set(data.train.tensors[1].tolist()) == {1}
    write_rows(path, x=x, y=["red"] * 40)
    assert "column 'y' holds one value ('red') in all 40 rows" in str(
        _error(path=str(path), target="y")
    )
    write_rows(path, x=x, y=[3.0] * 40)
    assert "holds one value ('3')" in str(_error(path=str(path), target="y", task="binary"))


@pytest.mark.parametrize(
    ("column", "standardize"),
    [([1.0] * 39 + [np.inf], True), ([1.0] * 39 + [1e308], True), ([1.0] * 39 + [1e39], False)],
    ids=["inf", "overflows-standardisation", "overflows-float32"],
)
def test_features_that_are_not_finite_are_named(
    tmp_path: Path, column: list[float], standardize: bool
) -> None:
    path = write_rows(
        tmp_path / "big.csv",
        fine=list(range(40)),
        big=column,
        huge=[1e308, -1e308] * 20,
        y=["a", "b"] * 20,
    )
    error = _error(path=str(path), target="y", drop=["huge"], standardize=standardize)
    [line] = str(error).splitlines()
    assert line.startswith(f"dataset.path: {path}: feature column(s) 'big' hold values that are")
    assert "not finite" in line and "fine" not in line
    both = str(_error(path=str(path), target="y", standardize=standardize))
    assert "column(s) 'big', 'huge' hold" in both


def test_regression_targets_that_are_not_finite_are_named(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "t.csv", x=list(range(40)), y=[0.5] * 39 + [np.inf])
    error = _error(path=str(path), target="y", task="regression")
    assert "column 'y' of t.csv: 1 regression targets are not finite" in str(error)
