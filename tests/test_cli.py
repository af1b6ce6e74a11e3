"""The installed console script, end to end, in a scratch working directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dltrain.composition import CONF_DIR

from .helpers import PYTHON, TINY, dltrain, run_command, run_dirs, start_command

pytestmark = pytest.mark.slow  # every test runs a command


def test_console_script_trains_into_a_dated_run_dir(tmp_path: Path) -> None:
    result = dltrain(tmp_path, *TINY)
    assert result.returncode == 0, result.stderr
    [run_dir] = run_dirs(tmp_path / "outputs")
    date, name = run_dir.relative_to(tmp_path / "outputs").parts
    assert len(date) == 10 and len(name) == 17  # outputs/YYYY-MM-DD/HH-MM-SS_mlp_iris
    assert name.endswith("_mlp_iris")
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "model.pt").is_file()
    assert "test/acc" in result.stdout  # the final table


def test_typos_exit_2_with_suggestions_and_no_traceback(tmp_path: Path) -> None:
    result = dltrain(tmp_path, "model=mpl", "trainer.epoch=3", "optimizer.lr=fast")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "model=mpl: no such model option. Did you mean 'mlp'?" in result.stderr
    assert "trainer.epoch: no such key in trainer. Did you mean 'trainer.epochs'?" in result.stderr
    assert "optimizer.lr: must be float, got 'fast'" in result.stderr  # values checked as well
    assert not (tmp_path / "outputs").exists()  # nothing was started


def test_a_bad_value_in_a_sweep_stops_the_whole_sweep_before_it_starts(tmp_path: Path) -> None:
    result = dltrain(tmp_path, "-m", "optimizer=sgd,adamm", *TINY)
    assert result.returncode == 2 and "Did you mean 'adam'?" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_multirun_makes_one_run_dir_per_job(tmp_path: Path) -> None:
    result = dltrain(tmp_path, "-m", "optimizer=sgd,adam", *TINY)
    assert result.returncode == 0, result.stderr
    dirs = run_dirs(tmp_path / "outputs" / "multirun")
    assert [d.name for d in dirs] == ["0_optimizer-sgd", "1_optimizer-adam"]
    names = [json.loads((d / "metrics.json").read_text())["status"] for d in dirs]
    assert names == ["completed", "completed"]
    assert "name: sgd" in (dirs[0] / "config.yaml").read_text()


def test_help_lists_groups_and_cfg_prints_the_config(tmp_path: Path) -> None:
    result = dltrain(tmp_path, "--help")
    assert result.returncode == 0
    for group in ("model", "dataset", "optimizer", "loss", "regularization", "scheduler"):
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        assert f"{group}: {', '.join(options)}" in result.stdout
    result = dltrain(tmp_path, "--cfg", "job", "optimizer=sgd")
    assert result.returncode == 0 and "name: sgd" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_dry_run_flag_builds_runs_one_batch_each_way_and_saves_no_checkpoint(
    tmp_path: Path,
) -> None:
    result = dltrain(tmp_path, "--dry-run", "trainer.device=cpu", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    assert "parameters" in result.stdout and "one training step: train/loss" in result.stdout
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and installed (not editable) into its own folder."""
    root = Path(__file__).resolve().parents[1]
    dist, target = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("site")
    pip = ["-m", "pip", "--disable-pip-version-check", "-q"]
    run_command(
        PYTHON, *pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, root, check=True
    )
    [wheel] = dist.glob("dltrain-*.whl")
    run_command(PYTHON, *pip, "install", "--no-deps", "--target", target, wheel, check=True)
    return target


def test_installed_wheel_ships_conf_and_runs(wheel_install: Path, tmp_path: Path) -> None:
    assert (wheel_install / "dltrain" / "conf" / "config.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(wheel_install)}
    show = "import dltrain.composition as c; print(c.CONF_DIR)"
    where = run_command(PYTHON, "-c", show, cwd=tmp_path, env=env, check=True).stdout.strip()
    assert Path(where) == wheel_install / "dltrain" / "conf"
    result = run_command(wheel_install / "bin" / "dltrain", *TINY, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert len(run_dirs(tmp_path / "outputs")) == 1


def test_the_optimizer_study_sweeps_its_presets_and_compares_them(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    small = ["dataset.n_samples=300", "trainer.epochs=1", "trainer.device=cpu"]
    result = dltrain(
        tmp_path, "-m", "experiment=blobs_optimizers", *small, f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode == 0, result.stderr
    configs = [(d / "config.yaml").read_text() for d in run_dirs(sweep)]
    assert [c.split("optimizer:\n  name: ")[1].split()[0] for c in configs] == [
        "rmsprop",
        "adam",
        "sgd",
    ]
    assert "alpha: 0.9" in configs[0] and "centered: true" in configs[0]
    assert "momentum: 0.9" in configs[2]
    assert "optimizer=blobs_study/sgd" in result.stdout  # the comparison table
    assert (sweep / "curves.png").is_file() and (sweep / "report.csv").is_file()


def test_presets_in_a_group_sub_folder_are_checked_like_options(tmp_path: Path) -> None:
    result = dltrain(tmp_path, "optimizer=blobs_study/sgdd", *TINY)
    assert result.returncode == 2
    assert "Did you mean 'blobs_study/sgd'?" in result.stderr


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    lrs = "optimizer.lr=0.001,1e12"  # the second diverges
    args = ["-m", "dataset=diabetes", "loss=mse", "optimizer=sgd", lrs, f"hydra.sweep.dir={sweep}"]
    result = dltrain(tmp_path, *args, "trainer.epochs=2", "trainer.device=cpu")
    assert result.returncode == 0, result.stderr
    statuses = [json.loads((d / "metrics.json").read_text())["status"] for d in run_dirs(sweep)]
    assert statuses == ["completed", "diverged"]
    failed = "1 of 2 jobs failed: 1_optimizer.lr-1000000000000.0 (diverged: DivergedError"
    assert failed in result.stderr  # the job by its dir: the sweeper wrote 1e12 so
    assert (sweep / "report.csv").is_file()

    every = dltrain(tmp_path, *args[:3], "optimizer.lr=1e12,1e13", f"hydra.sweep.dir={sweep}2")
    assert every.returncode == 1 and "2 of 2 jobs failed" in every.stderr


def test_help_does_not_import_torch(tmp_path: Path) -> None:
    """--help and shell completion stay fast: nothing on their path imports torch (~1-2 s)."""
    probe = (
        "import sys; sys.argv = ['dltrain', '--help']\n"
        "from dltrain.cli import main\n"
        "main()\n"
        "assert 'torch' not in sys.modules, 'dltrain --help imported torch'\n"
    )
    result = run_command(PYTHON, "-c", probe, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_reader_that_goes_away_leaves_the_run_complete(tmp_path: Path) -> None:
    # `dltrain ... | head -1`: the pipe closes after the first line; the run must not fail.
    process = start_command("dltrain", *TINY, "trainer.epochs=3", "hydra.run.dir=run", cwd=tmp_path)
    assert process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Logging error" not in err and "Broken pipe" not in err
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3
    assert (tmp_path / "run" / "model.pt").is_file()
