"""A single run's command line is composed once: the check, the run-dir claim and Hydra's run
all read that one composition, and Hydra records what it would have composed itself."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import yaml
from hydra._internal.config_loader_impl import ConfigLoaderImpl

from dltrain import run_composition

from .helpers import dltrain_main, invoke

RUN = ["dataset=iris", "trainer.epochs=1", "trainer.device=cpu", "optimizer.lr=0.05"]


def run_counting(cwd: Path, *args: str) -> int:
    """Run `dltrain args` in this process; how many times a config was composed."""
    compose = ConfigLoaderImpl.load_configuration
    with mock.patch.object(
        ConfigLoaderImpl, "load_configuration", autospec=True, side_effect=compose
    ) as composed:
        code, stderr = invoke(dltrain_main, list(args), cwd)
    assert code == 0, stderr
    return composed.call_count


def hydra_files(run_dir: Path) -> dict[str, object]:
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["status"] == "completed"
    return {f.name: yaml.safe_load(f.read_text()) for f in (run_dir / ".hydra").glob("*.yaml")}


def test_a_run_is_composed_once(tmp_path: Path) -> None:
    assert run_counting(tmp_path, *RUN) == 1
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    hydra = hydra_files(run_dir)["hydra.yaml"]["hydra"]
    assert Path(hydra["run"]["dir"]) == run_dir and hydra["mode"] == "RUN"
    assert hydra["overrides"]["hydra"] == [f"hydra.run.dir='{run_dir}'", "hydra.mode=RUN"]
    assert hydra["overrides"]["task"] == RUN


def test_hydra_records_the_run_as_if_it_had_composed_it(tmp_path: Path) -> None:
    once, again = tmp_path / "once", tmp_path / "again"
    assert run_counting(tmp_path, *RUN, f"hydra.run.dir={once}") == 1
    with mock.patch.object(run_composition, "handed_to_hydra", lambda *a: nullcontext()):
        assert run_counting(tmp_path, *RUN, f"hydra.run.dir={again}") == 3
    assert hydra_files(once) == yaml.safe_load(
        yaml.safe_dump(hydra_files(again)).replace(str(again), str(once))
    )


def test_a_sweep_is_still_composed_by_hydra_for_each_job(tmp_path: Path) -> None:
    assert run_counting(tmp_path, "-m", *RUN[:-1], "optimizer.lr=0.05,0.1") > 2
