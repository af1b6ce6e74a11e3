"""Resume with fewer epochs (honoured or refused), no warnings for values never given, and one
seed for a whole sweep (issue 22, items 7 and 9)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dltrain import checkpoints
from dltrain.errors import ConfigError
from dltrain.sweep import sweep_seed
from dltrain.train import run as train

from .helpers import FAST, TINY, compose_config, dltrain, dltrain_main, invoke, run_dirs

# iris: 2 optimiser steps per epoch; a checkpoint after every step, all kept.
EVERY_STEP = ["trainer.checkpoint_every_n_steps=1", "trainer.keep_checkpoints=100"]


def contents(folder: Path) -> dict[str, str]:
    """Every file under `folder` and the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_fewer_epochs_end_a_run_not_yet_there_and_are_refused_past_them(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = dltrain(tmp_path, *TINY, "trainer.epochs=4", *EVERY_STEP, f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr
    before = contents(run)

    past = dltrain(tmp_path, f"resume={run}", "trainer.epochs=3")
    assert past.returncode == 2
    assert past.stderr.strip().splitlines() == [
        "dltrain: trainer.epochs=3: the run has trained 4 epochs, past epoch 3 (its weights "
        "cannot go back); give trainer.epochs >= 4, or start a new run"
    ]
    assert contents(run) == before  # nothing written, not even the log

    mid_epoch = run / "checkpoints" / "step-00000005.pt"  # 2 epochs and a batch of the third
    code, stderr = invoke(dltrain_main, [f"resume={mid_epoch}", "trainer.epochs=2"], tmp_path)
    assert code == 2 and "trained 2 epochs and part of epoch 3" in stderr
    assert "give trainer.epochs >= 3" in stderr and contents(run) == before

    end_of_2 = run / "checkpoints" / "step-00000004.pt"  # 2 of the run's 4 epochs done
    honoured = dltrain(tmp_path, f"resume={end_of_2}", "trainer.epochs=3")
    assert honoured.returncode == 0, honoured.stderr
    done = summary(run)
    assert done["status"] == "completed" and done["epochs_completed"] == 3 and done["steps"] == 6
    assert checkpoints.load(run / "checkpoints" / "last.pt")["config"]["trainer"]["epochs"] == 3


@pytest.mark.slow
def test_a_sweep_draws_one_seed_keeps_it_on_resume_and_warns_of_nothing(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    grid = ["-m", *TINY, "trainer.epochs=1", "optimizer.lr=0.1,0.01"]
    assert dltrain(tmp_path, *grid, f"hydra.sweep.dir={sweep}").returncode == 0
    recorded = int((sweep / "seed.txt").read_text())
    jobs = run_dirs(sweep)
    assert [summary(job)["seed"] for job in jobs] == [recorded, recorded]

    (jobs[1] / "metrics.json").unlink()  # as if killed after its last checkpoint
    resumed = dltrain(tmp_path, *grid, f"resume_sweep={sweep}")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    output = resumed.stdout + resumed.stderr + (jobs[1] / "dltrain.log").read_text()
    assert "WARNING" not in output and "trainer.seed=" not in output
    assert int((sweep / "seed.txt").read_text()) == recorded
    assert summary(jobs[1])["status"] == "completed" and summary(jobs[1])["seed"] == recorded

    swept = tmp_path / "swept"  # a seed swept (or given) is each job's own: no sweep seed
    grid = ["-m", *TINY, "trainer.epochs=1", "trainer.seed=1,2", f"hydra.sweep.dir={swept}"]
    assert dltrain(tmp_path, *grid).returncode == 0
    assert [summary(job)["seed"] for job in run_dirs(swept)] == [1, 2]
    assert not (swept / "seed.txt").exists()


def test_a_run_past_fewer_epochs_is_refused_by_train_run_too(tmp_path: Path) -> None:
    train(compose_config(*FAST, "dataset=iris"), tmp_path)  # 2 epochs
    before = contents(tmp_path)
    with pytest.raises(ConfigError, match=r"trained 2 epochs, past epoch 1 .* >= 2"):
        train(
            compose_config(*FAST, "dataset=iris", f"resume={tmp_path}", "trainer.epochs=1"),
            tmp_path,
        )
    assert contents(tmp_path) == before


def test_a_sweeps_seed_is_drawn_once_and_a_planted_one_refused(tmp_path: Path) -> None:
    seed = sweep_seed(tmp_path / "sweep")
    assert (tmp_path / "sweep" / "seed.txt").read_text() == f"{seed}\n"
    assert sweep_seed(tmp_path / "sweep") == seed
    assert [p.name for p in (tmp_path / "sweep").iterdir()] == ["seed.txt"]  # no temp file left
    for planted in ("-1", "1e3", "4294967296", "12 34"):
        (tmp_path / "sweep" / "seed.txt").write_text(planted)
        with pytest.raises(ConfigError, match="seed.txt: not a seed"):
            sweep_seed(tmp_path / "sweep")
    (tmp_path / "elsewhere").write_text("7")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "seed.txt").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="not a seed"):  # never read through a link
        sweep_seed(tmp_path / "linked")
