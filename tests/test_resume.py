"""Exact resume: a run killed mid-epoch and resumed ends bit-identical to one never stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dltrain import checkpoints
from dltrain.train import run

from .helpers import FAST, compose_config, dltrain, start_command

# 158 steps per epoch (1,257 training digits in batches of 8); a checkpoint every 10 steps.
RECIPE = [
    "trainer.epochs=2",
    "trainer.seed=0",
    "trainer.device=cpu",
    "trainer.deterministic=true",
    "trainer.batch_size=8",
    "trainer.log_every_n_steps=1",
    "trainer.checkpoint_every_n_steps=10",
    "trainer.keep_checkpoints=100",
    "model.hidden_sizes=[32]",
]
STEPS = 2 * 158
# EMA with warm-up and windows of 3 batches: 53 optimiser steps per epoch (the last of 2 batches).
AVERAGED = [
    *RECIPE,
    "callbacks=[ema]",
    "callbacks.ema.warmup=true",
    "trainer.accumulate_grad_batches=3",
]


def run_through(run_dir: Path, recipe: list[str]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    result = dltrain(run_dir, *recipe, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_through(tmp_path_factory.mktemp("uninterrupted"), RECIPE)


def stop_mid_run(
    run_dir: Path, sig: signal.Signals, after_step: int, recipe: list[str] = RECIPE
) -> subprocess.CompletedProcess:
    """Start the recipe, send `sig` once a checkpoint past `after_step` exists, wait for the end."""
    process = start_command("dltrain", *recipe, f"hydra.run.dir={run_dir}", cwd=run_dir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        steps = [int(p.stem[5:]) for p in (run_dir / "checkpoints").glob("step-*.pt")]
        if steps and max(steps) >= after_step:
            break
        time.sleep(0.002)
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def same_weights(a: Path, b: Path) -> bool:
    first, second = checkpoints.load(a)["model"], checkpoints.load(b)["model"]
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(
    uninterrupted: Path, tmp_path: Path
) -> None:
    killed = stop_mid_run(tmp_path, signal.SIGKILL, after_step=40)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "metrics.json").exists()  # it really died mid-run
    saved = checkpoints.load(tmp_path / "checkpoints" / "last.pt")
    assert saved["epoch"] == 0 and saved["progress"]["samples"] > 0  # a mid-epoch checkpoint

    resumed = dltrain(tmp_path, f"resume={tmp_path}")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"
    for name in ("checkpoints/last.pt", "checkpoints/best.pt"):
        assert same_weights(uninterrupted / name, tmp_path / name)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == list(range(1, STEPS + 1))  # one value per step, none rewound or repeated
    reference = EventAccumulator(str(uninterrupted / "tensorboard"), size_guidance={"scalars": 0})
    reference.Reload()
    assert [e.value for e in events.Scalars("val/loss")] == [
        e.value for e in reference.Scalars("val/loss")
    ]


@pytest.mark.slow
def test_sigkill_inside_an_accumulation_window_with_ema_then_resume_is_bit_identical(
    tmp_path: Path,
) -> None:
    reference = run_through(tmp_path / "uninterrupted", AVERAGED)
    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    killed = stop_mid_run(run_dir, signal.SIGKILL, after_step=20, recipe=AVERAGED)
    assert killed.returncode == -signal.SIGKILL
    saved = checkpoints.load(run_dir / "checkpoints" / "last.pt")
    assert saved["epoch"] == 0 and saved["step"] % 10 == 0  # a window's end: it resumes there
    assert dltrain(run_dir, f"resume={run_dir}").returncode == 0
    for name in ("checkpoints/last.pt", "checkpoints/best.pt"):
        assert same_weights(reference / name, run_dir / name)
        ema, resumed = (
            checkpoints.load(d / name)["callbacks"]["ema"] for d in (reference, run_dir)
        )
        assert ema["updates"] == resumed["updates"]
        assert all(torch.equal(v, resumed["averaged"][k]) for k, v in ema["averaged"].items())
    model, resumed_model = (checkpoints.load(d / "model.pt") for d in (reference, run_dir))
    assert all(torch.equal(v, resumed_model[k]) for k, v in model.items())
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 2 * 53 + 1))


@pytest.mark.slow
def test_sigint_finishes_the_step_saves_and_says_how_to_continue(
    uninterrupted: Path, tmp_path: Path
) -> None:
    stopped = stop_mid_run(tmp_path, signal.SIGINT, after_step=20)
    assert stopped.returncode == 130
    assert f"Continue with: dltrain resume={tmp_path}" in stopped.stderr
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["status"] == "interrupted"
    assert checkpoints.load(tmp_path / "checkpoints" / "last.pt")["step"] == summary["step"]
    assert dltrain(tmp_path, f"resume={tmp_path}").returncode == 0
    assert same_weights(uninterrupted / "checkpoints/last.pt", tmp_path / "checkpoints/last.pt")


def test_resume_extends_epochs_and_keeps_the_checkpoints_settings(tmp_path: Path) -> None:
    first = run(compose_config(*FAST, "trainer.epochs=1", "trainer.keep_checkpoints=2"), tmp_path)
    assert first["epochs_completed"] == 1
    cfg = compose_config(*FAST, f"resume={tmp_path}", "trainer.epochs=3", "optimizer.lr=0.5")
    summary = run(cfg, tmp_path / "ignored")  # a resumed run goes on in its own dir
    assert summary["epochs_completed"] == 3 and not (tmp_path / "ignored").exists()
    saved = checkpoints.load(tmp_path / "checkpoints" / "last.pt")
    assert saved["config"]["optimizer"]["lr"] == 0.001  # the checkpoint wins
    assert len(list((tmp_path / "checkpoints").glob("step-*.pt"))) == 2  # the newest K


@pytest.mark.slow
def test_resume_errors_are_one_line(tmp_path: Path) -> None:
    result = dltrain(tmp_path, f"resume={tmp_path / 'nowhere'}")
    assert result.returncode == 2 and "resume:" in result.stderr
    assert "Traceback" not in result.stderr
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    result = dltrain(tmp_path, f"resume={tmp_path}", "trainer.device=cpu")
    assert result.returncode == 2 and "is truncated, corrupted or not a PyTorch" in result.stderr
