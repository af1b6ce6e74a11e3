"""Text classification datasets, tokenised with HF `tokenizers` trained on the train split only.

The trained tokenizer travels in meta.preprocessing (saved as tokenizer.json in the run dir and
inside checkpoints), so evaluation and prediction encode text exactly as training did.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dltrain.data.batches import TokenDataset
from dltrain.data.splits import (
    DataMeta,
    DataSplits,
    SplitOptions,
    check_fractions,
    hold_out,
    with_split_options,
)
from dltrain.data.text_files import (
    Texts,
    check_located,
    locate,
    read_ag_news,
    read_imdb,
    read_sst2,
    read_text_csv,
)
from dltrain.data.tokenizer import (
    TokenizerOptions,
    encode,
    load_tokenizer,
    train_tokenizer,
)
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS


def text_splits(
    splits: dict[str, Texts],
    classes: list[str] | None,
    split: SplitOptions,
    tokens: TokenizerOptions,
) -> DataSplits:
    """Carve missing val/test splits from train (stratified), tokenise, and describe."""
    check_fractions(split.val_fraction, split.test_fraction if "test" not in splits else 0.0)
    tokens.check()
    classes = classes or sorted(set(splits["train"][1]))
    parts = carve(splits, classes, split)
    if tokens.tokenizer_file:
        tok = load_tokenizer(tokens.tokenizer_file)
    else:
        options = (tokens.tokenizer, tokens.vocab_size, tokens.min_frequency, tokens.lowercase)
        tok = train_tokenizer(parts["train"][0], *options)
    sets = {
        k: TokenDataset(encode(tok, texts, tokens.max_length), torch.from_numpy(labels))
        for k, (texts, labels) in parts.items()
    }
    vocab = [token for token, _ in sorted(tok.get_vocab().items(), key=lambda item: item[1])]
    meta = DataMeta(
        task="binary" if len(classes) == 2 else "multiclass",
        input_shape=(tokens.max_length,),
        num_classes=len(classes),
        class_names=classes,
        vocab=vocab,
        preprocessing={"tokenizer": tok.to_str(), "max_length": tokens.max_length},
    )
    return DataSplits(sets["train"], sets.get("val"), sets.get("test"), meta)


def carve(
    splits: dict[str, Texts], classes: list[str], split: SplitOptions
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Labels as class indices; val and test (when not shipped) split from train, stratified."""
    parts = {
        k: (texts, np.array([_index(lab, classes) for lab in labels]))
        for k, (texts, labels) in splits.items()
    }
    carved = 0.0
    for name, fraction in (("test", split.test_fraction), ("val", split.val_fraction)):
        if name in parts or fraction == 0:
            continue
        texts, labels = parts["train"]
        kept, held = hold_out(len(labels), fraction / (1 - carved), split.split_seed, labels)
        rest, rest_y = [texts[i] for i in kept], labels[kept]
        held, held_y = [texts[i] for i in held], labels[held]
        parts["train"], parts[name] = (rest, rest_y), (held, held_y)
        carved += fraction
    return parts


def check_train_split(name: str, texts: list[str], labels: list[str]) -> None:
    """ConfigError for a train split a classifier cannot learn from: no text, or one class."""
    if not texts:
        raise ConfigError(f"dataset {name}: the train split is empty; point it at labelled texts")
    if not any(text.strip() for text in texts):
        raise ConfigError(
            f"dataset {name}: every text in the train split is empty ({len(texts)} rows); "
            "point the dataset at files that hold text (text_csv: check dataset.text_column)"
        )
    if len(set(labels)) < 2:
        raise ConfigError(
            f"dataset {name}: the train split holds one label ({labels[0]!r}) in all "
            f"{len(labels)} rows; a classifier needs at least two classes"
        )


def _index(label: str, classes: list[str]) -> int:
    if label not in classes:
        raise ConfigError(f"label '{label}' is not one of the classes {', '.join(classes)}")
    return classes.index(label)


def text_dataset(
    name: str,
    split: dict[str, Any],
    tokens: dict[str, Any] | None = None,
    **info: Any,
) -> Callable:
    """Register `read(**options) -> (splits, classes)` as dataset `name`, offering every
    TokenizerOptions field (defaults: TokenizerOptions' with `tokens` over them) and the split
    options in `split` (a dataset that ships its own test set offers no test_fraction)."""
    defaults = {**asdict(TokenizerOptions()), **(tokens or {})}
    annotations = {f.name: f.type for f in fields(TokenizerOptions)}
    offered = [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v, annotation=annotations[k])
        for k, v in defaults.items()
    ]

    def register(read: Callable[..., tuple[dict[str, Texts], list[str] | None]]) -> Callable:
        def build(split: SplitOptions, **options: Any) -> DataSplits:
            tokens = TokenizerOptions(**{k: options.pop(k, v) for k, v in defaults.items()})
            splits, classes = read(**options)
            check_train_split(name, *splits["train"])
            return text_splits(splits, classes, split, tokens)

        build.__signature__ = inspect.Signature(
            [*inspect.signature(read).parameters.values(), *offered]
        )
        build.__doc__ = read.__doc__
        registered = DATASETS.register(name, reads_files=True, modality="text", **info)
        registered(with_split_options(**split)(build))
        return read

    return register


OWN_TEST_SET = {"val_fraction": 0.1, "split_seed": 0}  # train is split into train and val
NO_TEST_SET = {**OWN_TEST_SET, "test_fraction": 0.15}  # ... and test


@text_dataset(
    "imdb",
    OWN_TEST_SET,
    {"vocab_size": 25000, "min_frequency": 2},
    check=partial(check_located, "imdb"),
)
def imdb(
    path: str | None = None, data_dir: str | None = None
) -> tuple[dict[str, Texts], list[str]]:
    """IMDB reviews (aclImdb folder or its .tar.gz): 25k train / 25k test, neg=0, pos=1."""
    return read_imdb(locate("imdb", path, data_dir)), ["neg", "pos"]


@text_dataset(
    "sst2",
    {**OWN_TEST_SET, "val_fraction": 0.05},
    {"max_length": 64},
    check=partial(check_located, "sst2"),
)
def sst2(
    path: str | None = None, data_dir: str | None = None
) -> tuple[dict[str, Texts], list[str]]:
    """GLUE SST-2: train (val carved from it) and the labelled dev set as test."""
    read = read_sst2(locate("sst2", path, data_dir))
    return {"train": read["train"], "test": read["dev"]}, ["0", "1"]


@text_dataset(
    "ag_news",
    {**NO_TEST_SET, "test_fraction": 0.2},
    {"min_frequency": 2, "max_length": 128},
    task="multiclass",
    check=partial(check_located, "ag_news"),
)
def ag_news(
    path: str | None = None, data_dir: str | None = None
) -> tuple[dict[str, Texts], list[str]]:
    """AG_NEWS (4 classes); when only one CSV exists, val and test are split from it."""
    splits, names = read_ag_news(locate("ag_news", path, data_dir))
    names = names or ["1", "2", "3", "4"]
    if "train" not in splits:  # only test.csv here: it becomes the pool everything is split from
        splits = {"train": splits.pop("test")}
    # The CSVs number the classes 1-4 in the order of classes.txt (read_ag_news checked them).
    named = {
        k: (texts, [names[int(label) - 1] for label in labels])
        for k, (texts, labels) in splits.items()
    }
    return named, names


@text_dataset("text_csv", {**NO_TEST_SET, "val_fraction": 0.15})
def text_csv(
    path: str | None = None, text_column: str = "text", label_column: str = "label"
) -> tuple[dict[str, Texts], None]:
    """Any CSV with a text column and a label column; classes are the sorted label values."""
    if path is None:
        raise ConfigError("dataset.path: set it to the CSV file")
    return {"train": read_text_csv(Path(path).expanduser(), text_column, label_column)}, None
