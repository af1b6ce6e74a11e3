"""dltrain-report on mixed runs: values printed as they are, tables that fit, failed runs."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from rich.console import Console

from dltrain.errors import ConfigError
from dltrain.jobs import SWEEP, ReportCallback
from dltrain.report import main, write_report
from dltrain.step import DivergedError
from dltrain.train import run

from .helpers import checkout_env, compose_config, run_command

IRIS = ["dataset=iris", "trainer.epochs=1", "trainer.device=cpu"]
LISTED = "regularization=[l2,early_stopping]"
MIXED = {  # run -> overrides of a copy of the trained run: many keys, each set in a few runs
    "adam": ["optimizer=adam", "optimizer.lr=0.01", "dataset.batch_size=8", "trainer.seed=3"],
    "sgd": ["optimizer=sgd", "optimizer.momentum=0.9", "scheduler=cosine", "model.dropout=0.1"],
    "wide": ["model.hidden_sizes=[256,256]", "optimizer.weight_decay=0.001", "trainer.seed=4"],
}
LEFT_OUT = "left out 1 run that failed before training (a config or data problem)"


def finished(run_dir: Path, overrides: list[str], fails: type[Exception] | None = None) -> Path:
    """Train `overrides` in run_dir as `dltrain` would (failing with `fails`, recorded in its
    metrics.json), with its .hydra/overrides.yaml."""
    with pytest.raises(fails) if fails else contextlib.nullcontext():
        run(compose_config(*overrides), run_dir, Console(quiet=True))
    (run_dir / ".hydra").mkdir(exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained run with a list-valued override, one config error, one diverged run."""
    root = tmp_path_factory.mktemp("runs")
    finished(root / "listed", [*IRIS, LISTED])
    finished(root / "config_error", [*IRIS, "model=cnn"], ConfigError)  # cnn needs images
    diverging = ["dataset=diabetes", "loss=mse", "optimizer=sgd", "optimizer.lr=1e12"]
    finished(root / "diverged", [*diverging, *IRIS[1:]], DivergedError)
    return root


@pytest.fixture(scope="module")
def mixed(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs, and copies of the trained one with many other overrides (mixed columns)."""
    root = shutil.copytree(runs, tmp_path_factory.mktemp("mixed") / "runs")
    for name, overrides in MIXED.items():
        run_dir = shutil.copytree(root / "listed", root / name)
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*IRIS, *overrides]))
    summary = json.loads((root / "wide" / "metrics.json").read_text()) | {"tags": ["baseline"]}
    (root / "wide" / "metrics.json").write_text(json.dumps(summary))
    return root


def test_list_values_are_printed_as_they_are(runs: Path, tmp_path: Path) -> None:
    console = Console(width=300, record=True)
    write_report([runs], tmp_path, console=console)
    printed = console.export_text()
    assert f"│ {LISTED.partition('=')[2]} " in printed  # the regularization column's cell
    console = Console(width=200, record=True)
    write_report([runs / "listed"], tmp_path, console=console)  # one run: the caption has it
    assert f"in every run: {' '.join(IRIS)} {LISTED}" in " ".join(console.export_text().split())


def test_at_80_columns_settings_fold_into_one_and_columns_go_whole(
    mixed: Path, tmp_path: Path
) -> None:
    env = checkout_env() | {"COLUMNS": "80"}
    result = run_command("dltrain-report", mixed, "--out", tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    header = next(line for line in lines if line.startswith("┃"))
    shown = [cell.strip() for cell in header.strip("┃").split("┃")]
    markdown = (tmp_path / "report.md").read_text().splitlines()
    every = [cell.strip() for cell in markdown[4].strip("|").split("|")]  # report.md: them all
    settings = every[1 : every.index("status")]  # the overrides that differ between runs
    assert {"optimizer.weight_decay", LISTED.partition("=")[0]} <= set(settings)
    assert {"tags", "error", "test/acc"} <= set(every)
    assert shown[:4] == ["run", "setting", "status", "val/loss"]  # what a row is, its sort metric
    assert set(shown[4:]) < set(every) and shown[4:] == [c for c in every if c in shown[4:]]
    folded = "".join(line.split("│")[2] for line in lines if line.startswith("│"))
    for run_name, overrides in MIXED.items():  # every setting of a run in its folded cell
        assert run_name in result.stdout and overrides[-1] in folded
    dropped = [column for column in every if column not in shown and column not in settings]
    note = f"left out to fit 80 columns: {', '.join(dropped)} (report.md has every column)"
    assert note in " ".join(line.strip() for line in lines)
    assert "diverged" in result.stdout and "completed" in result.stdout


def test_runs_that_failed_before_training_are_left_out_unless_asked(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert json.loads((runs / "config_error" / "metrics.json").read_text())["step"] == 0
    runs = shutil.copytree(runs, tmp_path / "runs")
    failed_later = {  # a worker killed mid-job (dltrain.sweep_launcher), a crash in epoch 2
        "killed": {"status": "failed", "error": "WorkerDied: worker process died"},
        "crashed": {"status": "failed", "error": "OSError: disk full", "step": 12},
    }
    for name, summary in failed_later.items():
        run_dir = shutil.copytree(runs / "listed", runs / name)
        (run_dir / "metrics.json").write_text(json.dumps(summary))
    assert main([str(runs)]) == 0  # the report goes into the first dir
    printed = capsys.readouterr().out
    assert "config_error" not in printed and "4 runs" in printed
    for name in ("diverged", "killed", "crashed", "listed"):  # information: they stay
        assert f"│ {name} " in printed
    assert f"{LEFT_OUT}; dltrain-report --failed shows them" in printed
    assert "config_error" not in (runs / "report.md").read_text()

    assert main([str(runs), "--failed"]) == 0
    printed = capsys.readouterr().out
    assert "│ config_error " in printed and "5 runs" in printed
    assert "that failed before" not in printed
    assert "config_error" in (runs / "report.md").read_text()


def test_only_failed_runs_is_one_line_that_says_so(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(runs / "config_error"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"dltrain-report: no runs to report under {runs / 'config_error'}: "
        "1 failed before training (dltrain-report --failed shows them)\n"
    )


def test_a_sweep_still_names_its_failed_jobs(
    runs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("dltrain.jobs.SWEEP", dict(SWEEP))  # what the callback counts
    sweep = shutil.copytree(runs, tmp_path / "sweep")
    ReportCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    captured = capsys.readouterr()
    assert "config_error" not in captured.out and LEFT_OUT in captured.out
    assert "dltrain: 2 of 3 jobs failed: config_error (failed: ConfigError: " in captured.err
    assert "diverged (diverged: DivergedError" in captured.err
