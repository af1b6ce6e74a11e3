"""Modalities: each dataset's inputs owned by one module, decided once and saved in checkpoints."""

from __future__ import annotations

import copy
import importlib
import pkgutil
from pathlib import Path

import pandas as pd
import pytest

import dltrain.modalities
from dltrain import checkpoints
from dltrain.data.splits import DataMeta
from dltrain.errors import ConfigError
from dltrain.files import save_torch
from dltrain.finished_run import load_run
from dltrain.modalities.lookup import MODALITIES, decide_modality, modality_of, settle_modality
from dltrain.modalities.modality import Modality
from dltrain.predict import predict_file

from .trained_runs import table_path, trained

METAS = {  # a meta of each kind of dataset, as its builder describes it
    "image": DataMeta("multiclass", (1, 28, 28), preprocessing={"normalize": {}}),
    "sequence": DataMeta("regression", (10, 1)),
    "text": DataMeta("binary", (64,), vocab=["[PAD]", "[UNK]", "good"]),
    "table": DataMeta("binary", (5,), preprocessing={"tabular": {}}),
    "features": DataMeta("multiclass", (64,), preprocessing={"standardize": {}}),
}


@pytest.fixture(autouse=True)
def data_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny runs' data lies under pytest's temp folder: make that the data root."""
    monkeypatch.setenv("DLTRAIN_DATA_DIR", str(tmp_path_factory.getbasetemp()))


def test_every_module_of_the_package_that_makes_a_modality_is_registered() -> None:
    made = {}
    for info in pkgutil.iter_modules(dltrain.modalities.__path__):
        module = importlib.import_module(f"dltrain.modalities.{info.name}")
        made |= {v.name: v for v in vars(module).values() if isinstance(v, Modality)}
    assert made == MODALITIES


@pytest.mark.parametrize("name", list(METAS))
def test_the_modality_is_decided_from_the_meta_once(name: str) -> None:
    meta = copy.deepcopy(METAS[name])
    assert decide_modality(meta) == name and meta.modality is None
    assert modality_of(meta).name == name and meta.modality is None  # a lookup changes nothing
    settle_modality(meta, "dataset x")
    assert meta.modality == name


def test_a_dataset_may_name_its_modality_but_only_a_known_one() -> None:
    meta = DataMeta("regression", (3,), modality="sequence")
    settle_modality(meta, "dataset x")
    assert meta.modality == "sequence" and modality_of(meta).name == "sequence"
    with pytest.raises(ConfigError, match=r"dataset x: modality 'imag' .* Did you mean 'image'"):
        settle_modality(DataMeta("regression", (3,), modality="imag"), "dataset x")


def test_only_modalities_that_show_images_draw_pictures() -> None:
    shown = {name for name, m in MODALITIES.items() if m.shows_images}
    assert shown == {"image"}
    assert all(m.variable_length == (name == "text") for name, m in MODALITIES.items())


@pytest.mark.parametrize(
    ("run", "modality"),
    [("digits", "features"), ("mnist", "image"), ("text", "text"), ("table", "table")],
)
def test_checkpoints_carry_the_modality(
    run: str, modality: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    saved = checkpoints.load(trained(run, tmp_path_factory) / "checkpoints" / "best.pt")
    assert saved["data_meta"]["modality"] == modality


def test_checkpoints_from_before_the_modality_still_load_and_predict(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run_dir = trained("table", tmp_path_factory)
    saved = checkpoints.load(run_dir / "checkpoints" / "best.pt")
    del saved["data_meta"]["modality"]
    old = tmp_path / "old.pt"
    save_torch(saved, old)
    meta = load_run(old).meta
    assert meta.modality == "table"
    spec = meta.preprocessing["tabular"]
    used = [*spec["numeric"], *spec["yes_no"], *spec["categorical"]]
    rows = pd.read_csv(table_path(run_dir)).dropna(subset=used).head(5)  # trained missing=drop
    rows.to_csv(tmp_path / "rows.csv", index=False)
    for source, out in ((old, "old.csv"), (run_dir, "new.csv")):
        predict_file(load_run(source), tmp_path / "rows.csv", tmp_path / out)
    assert len(pd.read_csv(tmp_path / "old.csv")) == len(rows) > 0
    assert (tmp_path / "old.csv").read_text() == (tmp_path / "new.csv").read_text()


@pytest.mark.parametrize("bad", ["audio", ["image"], 3])
def test_a_saved_modality_that_is_not_known_is_refused(bad: object, tmp_path: Path) -> None:
    values = {"task": "binary", "input_shape": [3], "modality": bad}
    with pytest.raises(ConfigError, match=r"its data meta is not dltrain's: modality .* not one"):
        checkpoints.saved_meta(values, tmp_path / "best.pt")
