"""The learning-rate range test against an independent reference (plain gradient descent on the
same data), the run it leaves exactly as built, and the dltrain-lr-find command."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dltrain import checkpoints, lr_find, range_test
from dltrain.build.run import build_run
from dltrain.built_run import FitState
from dltrain.runs_table import find_runs
from dltrain.train import fit_and_test, run

from .helpers import BIN, FAST, compose_config, invoke, run_command

LINE = [*FAST, "dataset=line", "model=linear", "loss=mse", "optimizer=sgd", "trainer.batch_size=8"]


def falls_with_plain_gradient_descent(
    start: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, lr: float, steps: int = 50
) -> bool:
    """Does full-batch gradient descent at a constant `lr` at least halve the MSE?"""
    model = torch.nn.Linear(1, 1)
    model.load_state_dict({k.rpartition(".")[2]: v for k, v in start.items()})  # Flatten, Linear
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    first = torch.nn.functional.mse_loss(model(x), y).item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    last = torch.nn.functional.mse_loss(model(x), y).item()
    return math.isfinite(last) and last < first / 2


def test_the_suggestion_lies_where_plain_gradient_descent_makes_the_loss_fall(
    tmp_path: Path,
) -> None:
    built = build_run(compose_config(*LINE), tmp_path)
    with built.tracker:
        start = {k: v.clone() for k, v in built.model.state_dict().items()}
        result = range_test.range_test(built)
        x, y = (torch.cat(parts) for parts in zip(*built.batches["train"], strict=True))
    assert result.suggestion is not None and result.falling is not None
    assert result.falling[0] < result.suggestion < result.falling[1]
    assert "passed 4x its best" in result.stopped_early  # SGD on a line diverges well before 10
    grid = np.logspace(-5, 1, 61)
    falls = [lr for lr in grid if falls_with_plain_gradient_descent(start, x, y, float(lr))]
    assert falls, "the reference found no lr at which the loss falls"
    # The falling lrs are one interval, bounded above by 2/λmax of the MSE's Hessian (~0.8 here).
    assert falls == [lr for lr in grid if falls[0] <= lr <= falls[-1]] and falls[-1] < 1.0
    assert falls[0] <= result.suggestion <= falls[-1], (falls[0], result.suggestion, falls[-1])


def test_the_run_trains_as_if_no_sweep_had_happened(tmp_path: Path) -> None:
    cfg = compose_config(*FAST, "model.hidden_sizes=[16]", "trainer.limit_train_batches=5")
    built = build_run(cfg, tmp_path / "swept")
    before = {k: v.clone() for k, v in built.model.state_dict().items()}
    result = range_test.range_test(built, steps=30)
    assert len(result.lrs) > 10
    assert all(torch.equal(before[k], v) for k, v in built.model.state_dict().items())
    assert built.optimizer.state_dict()["state"] == {}  # Adam's moments as built: none yet
    assert {g["lr"] for g in built.optimizer.param_groups} == {cfg.optimizer.lr}
    fit_and_test(built, FitState(), time.perf_counter())
    run(cfg, tmp_path / "plain")
    swept, plain = (
        checkpoints.load(tmp_path / name / "checkpoints" / "last.pt")["model"]
        for name in ("swept", "plain")
    )
    assert all(torch.equal(swept[k], plain[k]) for k in plain)


def test_suggest_finds_the_steepest_fall_of_a_known_curve() -> None:
    lrs = list(np.logspace(-6, 0, 121))
    # A loss that falls from 2 to 0.5 around lr 1e-3 (a logistic in log10 lr), then diverges.
    curve = [0.5 + 1.5 / (1 + math.exp(4 * (math.log10(lr) + 3))) for lr in lrs]
    curve = [c + (50 * (lr - 0.1) if lr > 0.1 else 0) for c, lr in zip(curve, lrs, strict=True)]
    suggestion, falling, why = range_test.suggest(lrs, curve)
    assert why == "" and falling is not None
    assert math.isclose(math.log10(suggestion), -3, abs_tol=0.05)
    # It begins where 10% of the fall is done: 4 (log10 lr + 3) = -ln 9; it ends at the minimum.
    assert math.isclose(math.log10(falling[0]), -3 - math.log(9) / 4, abs_tol=0.06)
    assert 0.09 < falling[1] <= 0.11
    flat = range_test.suggest(lrs, [1.0] * len(lrs))
    assert flat[0] is None and "never fell by 10%" in flat[2]


def test_the_command_prints_the_override_and_writes_the_curve(tmp_path: Path) -> None:
    done = run_command(
        BIN / "dltrain-lr-find", "dataset=iris", "trainer.device=cpu", "--steps", "60",
        "--out", tmp_path / "find", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("suggested learning rate ")
    command = last.split(": ", 1)[1]
    assert command.startswith("dltrain dataset=iris trainer.device=cpu optimizer.lr=")
    folder = tmp_path / "find"
    summary = json.loads((folder / "lr_find.json").read_text())
    assert summary["status"] == "suggested"
    assert f"optimizer.lr={summary['suggestion']:.1e}" in command
    rows = (folder / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "step,lr,loss,smoothed_loss" and len(rows) == 1 + summary["steps_taken"]
    assert (folder / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((folder / "tensorboard").glob("events.out.tfevents.*"))
    assert find_runs([tmp_path]) == []  # not a run: dltrain-report leaves it out


def test_a_range_where_the_loss_never_falls_exits_1_with_the_curve(tmp_path: Path) -> None:
    argv = ["dataset=iris", "trainer.device=cpu", "--min-lr=1e-9", "--max-lr=1e-8", "--steps=20"]
    code, err = invoke(lr_find.main, [*argv, "--out", str(tmp_path / "flat")])
    assert code == 1 and "no suggestion: the smoothed loss never fell by 10%" in err
    summary = json.loads((tmp_path / "flat" / "lr_find.json").read_text())
    assert summary["status"] == "no_suggestion" and (tmp_path / "flat" / "lr_find.png").exists()


@pytest.mark.parametrize(
    ("argv", "messages"),
    [
        (
            ["--steps=3", "--min-lr=1", "--max-lr=0.1", "trainer.epoch=3"],
            ["--steps: at least 10", "need 0 < min < max", "trainer.epoch", "epochs"],
        ),
        (["optimizer.lr=0.1,0.01"], ["tests one configuration"]),
        (["resume=outputs/x/checkpoints/last.pt"], ["resume: the lr finder starts from"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
    ],
)
def test_wrong_command_lines_are_one_error_each_and_exit_2(
    argv: list[str], messages: list[str], tmp_path: Path
) -> None:
    code, err = invoke(lr_find.main, ["dataset=iris", *argv], cwd=tmp_path)
    assert code == 2 and all(m in err for m in messages), err
    assert not (tmp_path / "outputs").exists()


def test_out_refuses_a_folder_that_holds_a_run(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    code, err = invoke(lr_find.main, ["dataset=iris", "--out", str(tmp_path)])
    assert code == 2 and "holds" in err and "metrics.json" in err, err
    assert (tmp_path / "metrics.json").read_text() == "{}"
