"""Run dir names that say what ran: `<time>_<model>_<dataset>`, sweep jobs `<num>_<swept>`."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dltrain.run_names import MAX_LEN, safe_name

from .helpers import dltrain, run_dirs

ONE_EPOCH = ["dataset=iris", "trainer.epochs=1", "trainer.device=cpu"]
SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")  # no /, spaces, quotes, = or , (Hydra's)


@pytest.mark.slow
def test_a_run_dir_is_named_by_its_time_model_and_dataset(tmp_path: Path) -> None:
    result = dltrain(tmp_path, *ONE_EPOCH)
    assert result.returncode == 0, result.stderr
    [run_dir] = run_dirs(tmp_path / "outputs")
    date, name = run_dir.relative_to(tmp_path / "outputs").parts
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", date) and re.fullmatch(r"\d\d-\d\d-\d\d_mlp_iris", name)


@pytest.mark.slow
def test_sweep_job_dirs_are_named_by_their_swept_overrides_only(tmp_path: Path) -> None:
    result = dltrain(tmp_path, "-m", "optimizer=sgd,adam", "trainer.seed=3", *ONE_EPOCH)
    assert result.returncode == 0, result.stderr
    dirs = run_dirs(tmp_path / "outputs" / "multirun")
    assert [d.name for d in dirs] == ["0_optimizer-sgd", "1_optimizer-adam"]
    assert len(dirs[0].relative_to(tmp_path / "outputs" / "multirun").parts) == 3  # date/time/job


@pytest.mark.slow
def test_unsafe_swept_values_give_safe_job_dir_names(tmp_path: Path) -> None:
    unsafe = "notes='runs/of a: \"b\"',plain"  # a slash, spaces, a colon and quotes
    result = dltrain(tmp_path, "-m", unsafe, "hydra.sweep.dir=sweep", *ONE_EPOCH)
    assert result.returncode == 0, result.stderr
    dirs = run_dirs(tmp_path / "sweep")
    assert [d.name for d in dirs] == ["0_notes-runs-of-a-b", "1_notes-plain"]


@pytest.mark.slow
def test_a_run_started_in_a_second_already_taken_gets_a_suffix(tmp_path: Path) -> None:
    start = datetime.now()
    for second in range(-2, 120):  # whichever second the run starts in is taken already
        at = start + timedelta(seconds=second)
        (tmp_path / "outputs" / f"{at:%Y-%m-%d}" / f"{at:%H-%M-%S}_mlp_iris").mkdir(parents=True)
    result = dltrain(tmp_path, *ONE_EPOCH)
    assert result.returncode == 0, result.stderr
    [run_dir] = run_dirs(tmp_path / "outputs")
    assert re.fullmatch(r"\d\d-\d\d-\d\d_mlp_iris_2", run_dir.name)


def test_names_are_one_safe_path_component_whatever_the_values() -> None:
    values = ["dataset.path-/data/my runs/x.csv", "a\\b:c*d?e|f<g>h", '"q"', "..", "é ü", "x" * 300]
    for value in values:
        name = safe_name(0, value)
        assert SAFE.fullmatch(name) and len(name) <= MAX_LEN and name.startswith("0_"), name
    assert safe_name("mlp", "iris") == "mlp_iris" and safe_name(0, "") == "0"
    assert safe_name(3, "model.hidden_sizes-[32,64]+optimizer-sgd") == (
        "3_model.hidden_sizes-32-64+optimizer-sgd"
    )


def test_long_names_are_cut_with_a_stable_hash_that_keeps_them_apart() -> None:
    first, second = "lr-0.1+" + "a" * 200 + "1", "lr-0.1+" + "a" * 200 + "2"
    assert safe_name(0, first) == safe_name(0, first)  # stable
    assert safe_name(0, first) != safe_name(0, second)  # the same first 100 characters
    assert len(safe_name(0, first)) == MAX_LEN
    cut = OmegaConf.create({"dir": "${dltrain_name:0,${long}}", "long": first})
    assert cut.dir == safe_name(0, first)  # the resolver the run dir settings use
