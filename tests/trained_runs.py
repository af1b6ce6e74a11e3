"""Tiny trained runs shared by the inference and export tests (each trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dltrain.train import run

from .helpers import FAST, compose_config, make_folder, make_imdb, make_mnist, write_table

ONE_EPOCH = [*FAST, "trainer.epochs=1"]
SMALL_CNN = ["model=cnn", "model.channels=[4,8]", "model.hidden=16", "trainer.batch_size=16"]
_TRAINED: dict[str, Path] = {}  # module-level: the two test modules share the runs


def run_overrides(name: str, data: Path) -> list[str]:
    """The command line of each tiny run; `data` is a folder for its files."""
    if name == "digits":
        return list(ONE_EPOCH)
    if name == "breast_cancer":
        return [*ONE_EPOCH, "dataset=breast_cancer", "loss=bce"]
    if name == "diabetes":
        return [*ONE_EPOCH, "dataset=diabetes", "loss=mse"]
    if name == "autoencoder":
        return [*ONE_EPOCH, "model=autoencoder", "model.hidden_sizes=[16]", "loss=mse"] + [
            "model.output_activation=none"
        ]
    if name == "table":
        path = data / "table.csv"
        write_table(path)
        return [
            *ONE_EPOCH,
            "loss=bce",
            "dataset=csv",
            f"dataset.path={path}",
            "dataset.target=deposit",
            "dataset.drop=[color,grade,price]",  # missing=drop: no fill values fitted
        ]
    if name == "text":
        folder = make_imdb(data, per_class=8)
        return [
            *ONE_EPOCH,
            "model=text_rnn",
            "model.embedding_dim=8",
            "model.hidden_size=8",
            "model.bidirectional=true",
            "dataset=imdb",
            f"dataset.path={folder}",
            "dataset.min_frequency=1",
            "loss=bce_with_logits",
            "trainer.batch_size=4",
        ]
    if name == "mnist":
        root = make_mnist(data, n=100)
        return [*ONE_EPOCH, *SMALL_CNN, "dataset=mnist", f"dataset.data_dir={root}"]
    if name == "folder":
        root = make_folder(data, ("train",), per_class=6)
        return [*ONE_EPOCH, *SMALL_CNN, "dataset=image_folder", f"dataset.root={root}"] + [
            "dataset.image_size=16"
        ]
    raise ValueError(name)


def trained(name: str, factory: pytest.TempPathFactory) -> Path:
    """The run dir of tiny run `name`, trained on first use."""
    if name not in _TRAINED:
        data = factory.mktemp(f"{name}_data")
        run(compose_config(*run_overrides(name, data)), data / "run")
        _TRAINED[name] = data / "run"
    return _TRAINED[name]


def table_path(run_dir: Path) -> Path:
    """The CSV the table run was trained on."""
    return run_dir.parent / "table.csv"


def table_frame(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(table_path(run_dir))
