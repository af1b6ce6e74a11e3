"""Bank Marketing: Kaggle's balanced 11,162-row subset of UCI Bank Marketing, as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from dltrain.data.files import find_data, regular_file
from dltrain.data.splits import DataSplits, SplitOptions, with_split_options
from dltrain.data.tabular import check_header, table_splits
from dltrain.registry import DATASETS

BANK_SOURCE = (  # where bank.csv comes from, for the error when it is absent
    'put bank.csv (Kaggle\'s "Bank Marketing" balanced subset of UCI Bank Marketing, '
    "11,162 rows, target 'deposit': "
    "https://www.kaggle.com/datasets/janiobachmann/bank-marketing-dataset) there or give your copy "
    "as dataset.path"
)


def _bank_file(path: str | None = None, data_dir: str | None = None, **_: object) -> Path:
    """bank.csv: `path` when given, else found under the data root (also before a run dir)."""
    if path:
        return regular_file(Path(path).expanduser(), "dataset.path")
    return regular_file(
        find_data("bank_marketing", data_dir, ["bank.csv"], BANK_SOURCE), "dataset.data_dir"
    )


@DATASETS.register(
    "bank_marketing", task="binary", reads_files=True, check=_bank_file, modality="table"
)
@with_split_options(
    val_fraction=0.2, test_fraction=0.0, split_seed=0, stratify=True, standardize=True
)
def bank_marketing(
    path: str | None = None,
    data_dir: str | None = None,
    drop: list[str] | tuple[str, ...] = (),
    missing: Literal["drop", "mean", "median", "most_frequent"] = "drop",
    *,
    split: SplitOptions,
) -> DataSplits:
    """Bank Marketing (Kaggle's balanced 11,162-row subset): will a client subscribe a deposit?"""
    found = _bank_file(path, data_dir)
    check_header(str(found), "deposit", drop, ",", split.val_fraction, split.test_fraction)
    return table_splits(found, "deposit", list(drop), "binary", missing, ",", split)
