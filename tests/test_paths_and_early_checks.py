"""Issue 22, items 2 and 3: a run's data paths are stored absolute (it is evaluated from anywhere),
a missing relative path says what it is relative to, and mistakes knowable from the data's shape
or header (and a dry run) leave no run dir behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from dltrain.data.paths import absolute_paths, path_keys
from dltrain.modalities.lookup import decide_modality
from dltrain.registry import DATASETS, TARGET

from .helpers import build_dataset, checkout_env, dltrain, run_command, run_dirs

QUICK = ["trainer.epochs=1", "trainer.device=cpu", "trainer.seed=0"]


def write_table(path: Path, regression: bool = False) -> None:
    """A tiny CSV: three features, a class (or, with `regression`, a real-valued) target `y`."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = x.sum(axis=1) if regression else (x.sum(axis=1) > 0).astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y}).to_csv(path, index=False)


def nothing_left(folder: Path) -> bool:
    """Whether no run dir (nor any TensorBoard event file) was made under `folder`."""
    outputs = folder / "outputs"
    made = list(outputs.rglob("*")) if outputs.exists() else []
    return not made and not list(folder.rglob("events.out.tfevents*"))


def test_a_relative_data_path_is_stored_absolute_and_evaluated_from_another_folder(
    tmp_path: Path,
) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    write_table(project / "data" / "x.csv")
    elsewhere.mkdir()
    env = {**checkout_env(), "DLTRAIN_DATA_DIR": str(project / "data")}
    trained = dltrain(
        project, "dataset=csv", "dataset.path=data/x.csv", "dataset.target=y", *QUICK, env=env
    )
    assert trained.returncode == 0, trained.stderr
    [run_dir] = run_dirs(project / "outputs")
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.dataset.path == str(project / "data" / "x.csv")
    evaluated = run_command("dltrain-eval", run_dir, cwd=elsewhere, env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert (run_dir / "eval_test.json").is_file()


def test_a_missing_relative_path_is_named_as_given_and_relative_to_the_working_dir(
    tmp_path: Path,
) -> None:
    result = dltrain(tmp_path, "dataset=csv", "dataset.path=data/nope.csv", "dataset.target=y")
    assert result.returncode == 2
    assert "data/nope.csv" in result.stderr and f"relative to {tmp_path}" in result.stderr
    assert nothing_left(tmp_path)


def test_an_image_model_on_flat_features_fails_before_any_run_dir(tmp_path: Path) -> None:
    result = dltrain(tmp_path, "model=cnn", "dataset=digits", *QUICK)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "model=cnn: needs images" in line and "'digits' gives flat features" in line
    assert nothing_left(tmp_path)


def test_a_csv_target_that_does_not_fit_the_loss_fails_before_any_run_dir(tmp_path: Path) -> None:
    write_table(tmp_path / "y.csv", regression=True)
    result = dltrain(
        tmp_path, "dataset=csv", "dataset.path=y.csv", "dataset.target=y", "loss=cross_entropy"
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "loss=cross_entropy" in line and "regression" in line
    assert nothing_left(tmp_path)


@pytest.mark.parametrize("sweep", [[], ["-m", "optimizer.lr=0.1,0.01"]], ids=["run", "sweep"])
def test_a_dry_run_leaves_no_run_dir_and_no_tensorboard_run(
    tmp_path: Path, sweep: list[str]
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**checkout_env(), "TMPDIR": str(scratch)}
    result = dltrain(tmp_path, "--dry-run", *sweep, "dataset=iris", "trainer.device=cpu", env=env)
    assert result.returncode == 0, result.stderr
    assert "failed" not in result.stderr
    assert "one training step: train/loss" in result.stdout
    assert nothing_left(tmp_path) and not list(scratch.glob("dltrain-*"))


def test_path_keys_are_found_by_name_and_only_local_paths_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shards").mkdir()
    (tmp_path / "a.csv").write_text("x\n1\n")
    node = OmegaConf.create(
        {
            "path": "a.csv",
            "data_dir": None,
            "root": "~/pictures",
            "tokenizer_file": "missing.json",
            "train_shards": "shards/train-{000..009}.tar",
            "target": "y",
            "glue": "glue",
        }
    )
    assert path_keys(node) == ["path", "data_dir", "root", "tokenizer_file", "train_shards"]
    absolute_paths(node)
    assert node.path == str(tmp_path / "a.csv") and node.data_dir is None
    assert node.root == os.path.expanduser("~/pictures")
    assert node.tokenizer_file == "missing.json"  # nothing here: said relative when it is missed
    assert node.train_shards == str(tmp_path / "shards" / "train-{000..009}.tar")
    assert node.target == "y"  # not a path key
    hub = OmegaConf.create({"path": "glue"})  # dataset=hf: a Hub name, not a file here
    absolute_paths(hub)
    assert hub.path == "glue"


@pytest.mark.parametrize(
    "name", [n for n in DATASETS.names() if n != TARGET and not DATASETS.info(n).reads_files]
)
def test_a_dataset_made_in_memory_gives_the_modality_it_declares(name: str) -> None:
    data = build_dataset(name)
    assert decide_modality(data.meta) == DATASETS.info(name).modality
