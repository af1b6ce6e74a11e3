"""dataset=hf: a Hugging Face `datasets` dataset, routed to the image, text or table path.

Sources: a folder saved with `save_to_disk`, local Parquet/CSV/JSON/Arrow files (a glob too), or
a Hub name already in the local HF cache. Nothing is downloaded (the Hub is kept offline) and no
code runs from a dataset: folders are read with `load_from_disk` (Arrow + JSON) and files with
the packaged readers; `datasets` >= 4 has no loading scripts at all.

Every split is decoded into memory (see conf/dataset/hf.yaml); which path a dataset takes follows
its features (dltrain.data.hf_features). `datasets` is imported only when a dataset is read.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Any, Literal

from dltrain.data.files import is_folder, reason
from dltrain.data.hf_features import Columns, table_path, text_path
from dltrain.data.hf_images import image_splits
from dltrain.data.splits import DataSplits, SplitOptions, check_fractions, with_split_options
from dltrain.data.tokenizer import TokenizerOptions
from dltrain.errors import ConfigError, did_you_mean
from dltrain.registry import DATASETS

FILE_READERS = {  # suffix -> the packaged `datasets` reader (no code from the data)
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".arrow": "arrow",
}
log = logging.getLogger(__name__)

SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk leaves in its folder


def _offline() -> Any:
    """The `datasets` module with the Hub switched off: a dataset not cached is an error."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            "dataset hf: needs the `datasets` library: pip install 'dltrain[hf]'"
        ) from None
    datasets.config.HF_HUB_OFFLINE = True  # also when it was imported before the variables
    datasets.utils.logging.disable_progress_bar()
    return datasets


def _how_to_get(path: str, subset: str | None) -> str:
    args = repr(path) + (f", {subset!r}" if subset else "")
    return (
        f'on a machine with internet run: python -c "import datasets; datasets.load_dataset('
        f"{args}).save_to_disk('{Path(path).name}')\", copy the folder here and set "
        f"dataset.path=<that folder>"
    )


def _local_files(path: str) -> list[Path] | None:
    """The files `path` (a file or a glob) names; None when it names no local file at all."""
    found = sorted(Path(p) for p in glob.glob(os.path.expanduser(path)) if Path(p).is_file())
    return found or None


def _hub_name(path: str) -> bool:
    """Whether `path` reads as a Hub name (`name` or `owner/name`) rather than a local path."""
    suffix = Path(path).suffix.lower()
    return (
        path.count("/") <= 1 and not path.startswith(("/", ".", "~")) and suffix not in FILE_READERS
    )


def load_splits(path: str | None, subset: str | None) -> dict[str, Any]:
    """Every split of the source as a `datasets.Dataset` (memory-mapped Arrow), by split name."""
    if not path:
        raise ConfigError(
            "dataset.path: set it to a save_to_disk folder, a Parquet/CSV/JSON/Arrow file (or "
            "glob), or a Hub dataset name in the local HF cache"
        )
    if path.endswith(".py"):  # a loading script: dltrain never runs code from a dataset
        raise ConfigError(f"dataset.path: {path} is a Python script; dataset hf reads data only")
    datasets = _offline()
    local = Path(path).expanduser()
    try:
        if is_folder(local, "dataset.path"):
            return _saved(datasets, local)
        if files := _local_files(path):
            return _files(datasets, files)
        if not _hub_name(path):
            raise ConfigError(f"dataset.path: {local} does not exist")
        loaded = datasets.load_dataset(path, subset, download_mode="reuse_dataset_if_exists")
    except ConfigError:
        raise
    except (ConnectionError, FileNotFoundError) as e:  # offline: not in the cache
        raise ConfigError(
            f"dataset.path: '{path}' is neither a local file or folder nor a Hub dataset in the "
            f"local HF cache ({reason(e)}); {_how_to_get(path, subset)}"
        ) from None
    except ValueError as e:  # e.g. an unknown subset: its message lists the available ones
        raise ConfigError(f"dataset hf: cannot load '{path}' ({reason(e)})") from None
    except Exception as e:  # `datasets` and pyarrow raise their own types for damaged data
        raise ConfigError(f"dataset hf: cannot read {path} ({reason(e)})") from None
    return dict(loaded)


def _saved(datasets: Any, folder: Path) -> dict[str, Any]:
    """A save_to_disk folder (a Dataset: one split called train; a DatasetDict: its splits)."""
    if not any((folder / m).is_file() for m in SAVED_MARKERS):
        inside = sorted(p.name for p in folder.iterdir())[:10]
        raise ConfigError(
            f"dataset.path: {folder} is not a folder saved with save_to_disk (no "
            f"{' or '.join(SAVED_MARKERS)}; it holds {', '.join(inside) or 'nothing'}); name "
            f"data files instead, e.g. dataset.path='{folder}/*.parquet'"
        )
    loaded = datasets.load_from_disk(str(folder))
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}


def _files(datasets: Any, files: list[Path]) -> dict[str, Any]:
    """Local data files of one format as one split called train."""
    suffixes = {f.suffix.lower() for f in files}
    if len(suffixes) != 1 or (suffix := suffixes.pop()) not in FILE_READERS:
        raise ConfigError(
            f"dataset.path: names files ending {', '.join(sorted({f.suffix for f in files}))}; "
            f"dataset hf reads files of one format: {', '.join(sorted(FILE_READERS))}"
        )
    data_files = [str(f) for f in files]
    return dict(datasets.load_dataset(FILE_READERS[suffix], data_files=data_files))


def pick_splits(
    loaded: dict[str, Any], train: str, val: str | None, test: str | None
) -> dict[str, Any]:
    """The named train/val/test splits (val/test None: split from train later)."""
    problems = [
        f"dataset.{key}: no split '{name}'.{did_you_mean(name, list(loaded))} "
        f"Splits: {', '.join(loaded)}"
        for key, name in (("train_split", train), ("val_split", val), ("test_split", test))
        if name is not None and name not in loaded
    ]
    if problems:
        raise ConfigError(problems)
    return {"train": loaded[train], "val": loaded.get(val), "test": loaded.get(test)}


def _hf_task(target: str | None = None, **_: object) -> str | None:
    return "regression" if target else None  # else known once the label feature is read


def _check_hf(
    path: str | None = None,
    subset: str | None = None,
    train_split: str = "train",
    val_split: str | None = None,
    test_split: str | None = None,
    input_column: str | None = None,
    input_columns: list[str] | tuple[str, ...] = (),
    label_column: str = "label",
    target: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    **_: object,
) -> None:
    """The source, its splits and the named columns exist (memory-mapped: nothing is decoded)."""
    check_fractions(val_fraction, test_fraction)
    loaded, problems = load_splits(path, subset), []
    try:
        pick_splits(loaded, train_split, val_split, test_split)
    except ConfigError as e:
        problems += e.problems
    if train_split not in loaded:
        raise ConfigError(problems)
    try:
        Columns.choose(
            loaded[train_split].features, input_column, list(input_columns), label_column, target
        )
    except ConfigError as e:
        problems += e.problems
    if problems:
        raise ConfigError(problems)


@DATASETS.register("hf", task=_hf_task, reads_files=True, check=_check_hf)
@with_split_options(
    val_fraction=0.15, test_fraction=0.15, split_seed=0, stratify=True, standardize=True
)
def hf(
    path: str | None = None,
    subset: str | None = None,
    train_split: str = "train",
    val_split: str | None = None,
    test_split: str | None = None,
    input_column: str | None = None,
    input_columns: list[str] | tuple[str, ...] = (),
    label_column: str = "label",
    target: str | None = None,
    image_size: int | None = None,
    random_crop_padding: int = 0,
    horizontal_flip: bool = False,
    in_memory: bool = True,
    missing: Literal["drop", "mean", "median", "most_frequent"] = "drop",
    tokenizer: Literal["word", "wordpiece", "bpe"] = "word",
    vocab_size: int = 20000,
    min_frequency: int = 1,
    lowercase: bool = True,
    max_length: int = 256,
    tokenizer_file: str | None = None,
    *,
    split: SplitOptions,
) -> DataSplits:
    """A Hugging Face dataset (saved folder, data files or cached Hub name); see the module doc."""
    check_fractions(split.val_fraction, split.test_fraction)
    splits = pick_splits(load_splits(path, subset), train_split, val_split, test_split)
    columns = Columns.choose(
        splits["train"].features, input_column, list(input_columns), label_column, target
    )
    tokens = TokenizerOptions(
        tokenizer, vocab_size, min_frequency, lowercase, max_length, tokenizer_file
    )
    present = {k: ds for k, ds in splits.items() if ds is not None}
    log.info(f"dataset hf: the {columns.path} path, inputs {', '.join(columns.inputs)}")
    if columns.path == "image":
        return image_splits(
            present, columns, split, image_size, random_crop_padding, horizontal_flip, in_memory
        )
    if columns.path == "text":
        return text_path(present, columns, split, tokens)
    return table_path(present, columns, split, missing)
