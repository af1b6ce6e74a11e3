"""Sweeps: parallel jobs share the machine, interrupted sweeps resume, Optuna searches run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from dltrain.sweep import gpu_for_job, previous_outcome, threads_for_job

from .helpers import TINY, dltrain, job_dir, job_numbers, run_dirs


def test_parallel_jobs_split_the_cores_and_take_turns_on_the_gpus() -> None:
    assert [threads_for_job(n, 16) for n in (1, 2, 4, 16, 32, -1)] == [16, 8, 4, 1, 1, 1]
    assert [threads_for_job(4, 2), threads_for_job(3, 8)] == [1, 2]
    assert [gpu_for_job(job, 4) for job in range(6)] == [0, 1, 2, 3, 0, 1]
    assert gpu_for_job(5, 1) is None and gpu_for_job(5, 0) is None


@pytest.mark.slow
def test_joblib_jobs_run_side_by_side_with_their_share_of_threads(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer=sgd,adam"]
    result = dltrain(tmp_path, *args, *TINY, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    threads = threads_for_job(2, os.cpu_count() or 1)
    for run_dir in run_dirs(sweep):
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
        assert (
            f"parallel job {job_numbers([run_dir])[0]}: {{'threads': {threads}}}"
            in (run_dir / "dltrain.log").read_text()
        )


@pytest.mark.slow
def test_a_sweep_resumes_skipping_completed_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    grid = ["-m", "optimizer=sgd,adam", "model.hidden_sizes=[8],[16]", *TINY]
    assert dltrain(tmp_path, *grid, f"hydra.sweep.dir={sweep}").returncode == 0
    jobs = run_dirs(sweep)
    assert len(jobs) == 4
    (jobs[2] / "metrics.json").unlink()  # as if killed after its last checkpoint
    shutil.rmtree(jobs[3])  # as if never started
    kept = (jobs[0] / "model.pt").stat().st_mtime_ns

    result = dltrain(tmp_path, *grid, f"resume_sweep={sweep}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("completed before: skipped") == 2
    assert (jobs[0] / "model.pt").stat().st_mtime_ns == kept  # not trained again
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["status"] == "completed"
    assert "resumed" in (jobs[2] / "dltrain.log").read_text()
    assert (sweep / "report.csv").read_text().count("completed") == 4


@pytest.mark.slow
def test_resume_sweep_matches_jobs_by_their_settings_not_their_numbers(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    first = ["-m", "optimizer=sgd,adam", "model.hidden_sizes=[8],[16]", *TINY]
    assert dltrain(tmp_path, *first, f"hydra.sweep.dir={sweep}").returncode == 0
    old = {d.name: settings_of(d) for d in run_dirs(sweep)}
    one, three = job_dir(sweep, 1), job_dir(sweep, 3)
    assert old[one.name] == ("sgd", [16]) and old[three.name] == ("adam", [16])
    (one / "metrics.json").unlink()  # as if killed after its last checkpoint
    kept = {n: results(job_dir(sweep, n)) for n in (0, 2, 3)}

    # [8] left out, [32] added, both lists in another order: jobs 1 and 3 keep their settings
    second = ["-m", "optimizer=adam,sgd", "model.hidden_sizes=[32],[16]", *TINY]
    result = dltrain(tmp_path, *second, f"resume_sweep={sweep}")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "resume_sweep: job" in line]
    assert len(lines) == 4
    new = "model.hidden_sizes-32+optimizer"  # named by the swept overrides, as new jobs are
    assert lines[0].endswith(f": no earlier job, new dir {sweep / f'4_{new}-adam'}")
    assert lines[1].endswith(f"matches {three}: skipped")
    assert lines[2].endswith(f": no earlier job, new dir {sweep / f'5_{new}-sgd'}")
    assert lines[3].endswith(f"matches {one}: resumed")
    assert "job 3 (optimizer=sgd model.hidden_sizes=[16] " in lines[3]
    assert "resumed" in (one / "dltrain.log").read_text()
    for num, before in kept.items():  # skipped, or not in the new grid: not touched
        assert results(job_dir(sweep, num)) == before
    dirs = run_dirs(sweep)
    assert job_numbers(dirs) == ["0", "1", "2", "3", "4", "5"]
    for run_dir in dirs:  # every dir holds one setting: its overrides, config and metrics agree
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        setting = settings_of(run_dir)
        assert (config["optimizer"]["name"], config["model"]["hidden_sizes"]) == setting
        assert setting == old.get(run_dir.name, setting)  # an earlier job's dir kept its own
    assert sorted(settings_of(d) for d in dirs[4:]) == [("adam", [32]), ("sgd", [32])]
    assert "model.hidden_sizes=[8],[16]" in (sweep / "multirun.1.yaml").read_text()
    assert "model.hidden_sizes=[32],[16]" in (sweep / "multirun.yaml").read_text()
    assert not (sweep / ".resume_sweep").exists()  # the jobs' claims, gone with the sweep


def results(run_dir: Path) -> tuple[int, str, str]:
    """What a finished job left: its model's mtime, metrics.json and .hydra/overrides.yaml."""
    files = (run_dir / "metrics.json", run_dir / ".hydra" / "overrides.yaml")
    return (run_dir / "model.pt").stat().st_mtime_ns, *(f.read_text() for f in files)


def settings_of(run_dir: Path) -> tuple[str, list[int]]:
    """(optimizer, hidden sizes) of a job, as its .hydra/overrides.yaml says."""
    overrides = dict(
        o.split("=", 1) for o in yaml.safe_load((run_dir / ".hydra/overrides.yaml").read_text())
    )
    return overrides["optimizer"], yaml.safe_load(overrides["model.hidden_sizes"])


@pytest.mark.slow
def test_resume_sweep_reads_hostile_overrides_as_no_match(tmp_path: Path) -> None:
    sweep, marker = tmp_path / "sweep", tmp_path / "MARKER"
    grid = ["-m", "optimizer=sgd,adam", *TINY]
    assert dltrain(tmp_path, *grid, f"hydra.sweep.dir={sweep}").returncode == 0
    tagged = f'- !!python/object/apply:os.system ["touch {marker}"]\n'
    zero, one = job_dir(sweep, 0), job_dir(sweep, 1)
    (zero / ".hydra" / "overrides.yaml").write_text(tagged)
    (one / ".hydra" / "overrides.yaml").write_bytes(b"- optimizer=adam\n- \xff\xfe\n")

    result = dltrain(tmp_path, *grid, f"resume_sweep={sweep}")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()  # read as data: nothing ran
    notices = [line for line in result.stdout.splitlines() if "is left alone" in line]
    assert len(notices) == 2 and "Traceback" not in result.stderr + result.stdout
    assert f"{zero.name}/.hydra/overrides.yaml: not plain YAML (" in notices[0]
    assert f"{one.name}/.hydra/overrides.yaml: not UTF-8 text" in notices[1]
    assert result.stdout.count("no earlier job, new dir") == 2
    for run_dir in (job_dir(sweep, 2), job_dir(sweep, 3)):  # the sweep ran, in dirs of its own
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    assert (one / ".hydra" / "overrides.yaml").read_bytes().endswith(b"\xff\xfe\n")


def test_previous_outcome_reads_a_bad_metrics_json_as_unreadable(tmp_path: Path) -> None:
    for content in (b"{not json", b"[1, 2]", b"\xff\xfe{}", b'{"metrics": 3}'):
        (tmp_path / "metrics.json").write_bytes(content)
        outcome, summary = previous_outcome(tmp_path)
        assert outcome == "none" and summary["unreadable"]
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert previous_outcome(tmp_path) == ("checkpoint", {})


@pytest.mark.slow
def test_an_optuna_search_runs_its_trials(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "hparams_search=bank_optuna", "hydra.sweeper.n_trials=3", *TINY]
    result = dltrain(tmp_path, *args, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    assert len(run_dirs(sweep)) == 3
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert {"optimizer.lr", "optimizer.weight_decay", "model.dropout"} <= set(best["best_params"])
    values = [
        json.loads((d / "metrics.json").read_text())["metrics"]["val/auc"] for d in run_dirs(sweep)
    ]
    assert best["best_value"] == max(values)


@pytest.mark.slow
def test_the_submitit_path_runs_jobs_through_submitit_local(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"]
    result = dltrain(tmp_path, *args, "optimizer=sgd,adam", *TINY, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    statuses = [json.loads((d / "metrics.json").read_text())["status"] for d in run_dirs(sweep)]
    assert statuses == ["completed", "completed"]
    assert (sweep / ".submitit").is_dir() and (sweep / "report.csv").is_file()


@pytest.mark.slow
def test_an_optuna_study_continues_from_its_sqlite_storage(tmp_path: Path) -> None:
    storage = f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}"
    args = ["-m", "hparams_search=bank_optuna", "hydra.sweeper.n_trials=2", storage, *TINY]
    for attempt in ("first", "second"):
        result = dltrain(tmp_path, *args, f"hydra.sweep.dir={tmp_path / attempt}")
        assert result.returncode == 0, result.stderr
    import optuna

    study = optuna.load_study(study_name="bank_marketing", storage=storage.split("=", 1)[1])
    assert len(study.trials) == 4  # the second command added to the first one's study


@pytest.mark.slow
def test_a_diverging_optuna_trial_gets_the_worst_objective(tmp_path: Path) -> None:
    diverge = "optimizer.lr=1e12"  # fixed over the search's range: every trial's loss blows up
    args = ["-m", "hparams_search=bank_optuna", "hydra.sweeper.n_trials=2", diverge, *TINY]
    result = dltrain(
        tmp_path,
        *args,
        "optimizer=sgd",
        "dataset=diabetes",
        "loss=mse",
        "trainer.monitor=val/loss",
        "trainer.monitor_mode=min",
        "hydra.sweeper.direction=minimize",
        f"hydra.sweep.dir={tmp_path / 's'}",
    )
    assert result.returncode == 1  # every job failed
    assert "2 of 2 jobs failed" in result.stderr and "Traceback" not in result.stderr
