"""The loop's options against independent references: gradient accumulation, the debug subsets,
max_steps and val_every_n_epochs; and the callback API's hooks, state and errors."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from dltrain import checkpoints
from dltrain.build.run import build_run
from dltrain.built_run import FitState
from dltrain.callback import Callback
from dltrain.errors import ConfigError
from dltrain.loop import train_one_epoch
from dltrain.regularization import GradClip
from dltrain.step import StepContext
from dltrain.train import run

from .helpers import FAST, compose_config, dltrain_main, events, invoke

DIGITS_MLP = [*FAST, "model.hidden_sizes=[32]", "trainer.log_every_n_steps=1"]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoints.load(run_dir / "checkpoints" / "last.pt")["model"]


@pytest.mark.parametrize("clip", [[], ["regularization=grad_clip"]])
def test_accumulating_4_batches_of_16_equals_batches_of_64(clip: list[str], tmp_path: Path) -> None:
    # 1,257 training digits: 19 windows of 64 and a last one of 41 samples (16 + 16 + 9).
    big = run(compose_config(*DIGITS_MLP, *clip, "trainer.batch_size=64"), tmp_path / "64")
    small = run(
        compose_config(
            *DIGITS_MLP, *clip, "trainer.batch_size=16", "trainer.accumulate_grad_batches=4"
        ),
        tmp_path / "4x16",
    )
    assert big["steps"] == small["steps"] == 2 * 20  # optimiser steps, not batches
    reference, accumulated = final_weights(tmp_path / "64"), final_weights(tmp_path / "4x16")
    for name, weight in reference.items():
        torch.testing.assert_close(accumulated[name], weight, rtol=1e-4, atol=1e-5)
    unscaled = run(compose_config(*DIGITS_MLP, *clip, "trainer.batch_size=16"), tmp_path / "16")
    assert not torch.allclose(final_weights(tmp_path / "16")["1.weight"], reference["1.weight"])
    logged = [e.step for e in events(tmp_path / "4x16").Scalars("train/loss")]
    assert logged == list(range(1, 41)) and unscaled["steps"] == 2 * 79


def test_accumulation_with_a_grad_scaler_unscales_once_before_clipping() -> None:
    # 16-mixed's GradScaler on CPU (no autocast): every batch's loss is scaled by 2**12, the
    # window's sum is unscaled once, then clipped (max_norm=0.05 clips every step).
    torch.manual_seed(0)
    x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
    start = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

    def trained(batch: int, accumulate: int, scaler: torch.amp.GradScaler | None) -> list:
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        context = StepContext(
            torch.device("cpu"), scaler=scaler, grad_clip=GradClip(max_norm=0.05),
            accumulate=accumulate, window_samples=batch * accumulate,
        )  # fmt: skip
        batches = list(zip(x.split(batch), y.split(batch), strict=True))
        state = FitState()
        loss = torch.nn.CrossEntropyLoss()
        train_one_epoch(model, batches, loss, optimizer, state, context, lambda *a: None)
        assert state.step == 256 // (batch * accumulate)
        return list(model.parameters())

    reference = trained(64, 1, None)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for mine, theirs in zip(trained(16, 4, scaler), reference, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert scaler.get_scale() == 2.0**12  # no step was skipped as inf / NaN


def test_limit_batches_count_and_fraction_exactly(tmp_path: Path) -> None:
    # digits: 1,257 training samples = 20 batches of 64; val and test 270 = 5 batches each.
    cfg = compose_config(*FAST, "trainer.limit_train_batches=3", "trainer.limit_val_batches=2")
    built = build_run(cfg, tmp_path / "a")
    assert [len(built.batches[s]) for s in ("train", "val", "test")] == [3, 2, 5]
    assert sum(1 for _ in built.batches["val"]) == 2 and sum(1 for _ in built.batches["train"]) == 3
    built.tracker.close()
    assert run(cfg, tmp_path / "b")["steps"] == 2 * 3
    fraction = compose_config(*FAST, "trainer.limit_train_batches=0.25", "trainer.epochs=1")
    assert run(fraction, tmp_path / "c")["steps"] == 5  # int(20 * 0.25)


def test_overfit_batches_trains_on_the_same_batch_until_its_loss_is_near_zero(
    tmp_path: Path,
) -> None:
    cfg = compose_config(
        *FAST, "trainer.overfit_batches=1", "trainer.epochs=60", "optimizer.lr=0.01"
    )
    built = build_run(cfg, tmp_path / "built")
    first, again = next(iter(built.batches["train"])), next(iter(built.batches["train"]))
    assert torch.equal(first[0], again[0]) and not built.context.augment
    assert [len(built.batches[s]) for s in ("train", "val", "test")] == [1, 1, 1]
    built.tracker.close()
    summary = run(cfg, tmp_path / "run")
    assert summary["steps"] == 60 and summary["last_metrics"]["train/loss"] < 0.02


def test_max_steps_stops_mid_epoch_and_validates_that_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="dltrain.loop"):
        summary = run(compose_config(*FAST, "trainer.max_steps=25"), tmp_path)
    assert summary["steps"] == 25 and summary["epochs_completed"] == 2  # 20 + 5 steps
    assert "trainer.max_steps=25 reached" in caplog.text
    assert [e.step for e in events(tmp_path).Scalars("val/loss")] == [20, 25]
    saved = checkpoints.load(tmp_path / "checkpoints" / "last.pt")
    assert saved["batches"]["position"] == 0  # the cut pass counts as done


def test_val_every_n_epochs_validates_those_and_the_last(tmp_path: Path) -> None:
    summary = run(
        compose_config(*FAST, "trainer.epochs=5", "trainer.val_every_n_epochs=2"), tmp_path
    )
    validated = [e.step // 20 for e in events(tmp_path).Scalars("val/loss")]
    assert validated == [2, 4, 5] and summary["best_epoch"] in validated


def test_option_mistakes_are_reported_together() -> None:
    cfg = compose_config(
        "trainer.accumulate_grad_batches=0",
        "trainer.limit_train_batches=1.5",
        "trainer.overfit_batches=-1",
        "trainer.max_steps=0",
        "trainer.val_every_n_epochs=0",
        "callbacks=[ema,swa]",
        "callbacks.ema.decay=1.5",
    )
    with pytest.raises(ConfigError) as error:
        build_run(cfg, Path("/nonexistent"))
    text = str(error.value)
    for expected in (
        "trainer.accumulate_grad_batches: must be at least 1",
        "trainer.limit_train_batches: a number of batches (1, 2, ...) or a fraction in (0, 1]",
        "trainer.overfit_batches",
        "trainer.max_steps: must be at least 1 or null",
        "trainer.val_every_n_epochs: must be at least 1",
        "callbacks.ema.decay: must be in [0, 1)",
        "ema and swa both average the weights; choose one",
    ):
        assert expected in text


class Recorder(Callback):
    """A user's callback: counts the hooks and keeps a number in the checkpoints."""

    calls: list[str] = []

    def __init__(self, note: str = "x"):
        self.note, self.steps_seen = note, 0

    def on_fit_start(self, run: Any, state: Any) -> None:
        Recorder.calls.append(f"fit_start@{state.epoch}")

    def on_step_end(self, run: Any, state: Any) -> None:
        self.steps_seen += 1

    def on_validation_end(self, run: Any, state: Any, metrics: dict) -> None:
        Recorder.calls.append(f"validation@{state.epoch}:{'val/loss' in metrics}")

    def on_epoch_end(self, run: Any, state: Any, metrics: dict) -> None:
        Recorder.calls.append(f"epoch@{state.epoch}")

    def on_test_end(self, run: Any, state: Any, metrics: dict) -> None:
        Recorder.calls.append(f"test:{sorted(k for k in metrics if k.startswith('test/'))[:1]}")

    def teardown(self, run: Any, state: Any) -> None:
        Recorder.calls.append("teardown")

    def state_dict(self) -> dict[str, Any]:
        return {"steps_seen": self.steps_seen, "note": self.note}

    def load_state_dict(self, state: Any) -> None:
        self.steps_seen = int(state["steps_seen"])


def test_a_users_callback_gets_every_hook_and_resumes_with_its_state(tmp_path: Path) -> None:
    target = ["callbacks=[target]", f"callbacks.target.target={__name__}:Recorder"]
    Recorder.calls.clear()
    run(compose_config(*FAST, *target, "+callbacks.target.note=mine"), tmp_path)
    assert Recorder.calls == [
        "fit_start@0",
        "validation@1:True",
        "epoch@1",
        "validation@2:True",
        "epoch@2",
        "test:['test/acc']",
        "teardown",
    ]
    saved = checkpoints.load(tmp_path / "checkpoints" / "last.pt")["callbacks"]["target"]
    assert saved == {"steps_seen": 40, "note": "mine"}
    Recorder.calls.clear()
    run(compose_config(*FAST, f"resume={tmp_path}", "trainer.epochs=3"), tmp_path / "ignored")
    assert Recorder.calls[0] == "fit_start@2"
    resumed = checkpoints.load(tmp_path / "checkpoints" / "last.pt")["callbacks"]["target"]
    assert resumed["steps_seen"] == 60  # went on counting from the checkpoint's 40


def test_a_callback_target_that_is_no_callback_is_refused() -> None:
    cfg = compose_config(*FAST, "callbacks=[target]", "callbacks.target.target=argparse:Namespace")
    with pytest.raises(ConfigError, match=r"callbacks.target: builds a Namespace, not a dltrain"):
        build_run(cfg, Path("/nonexistent"))
    cfg = compose_config(*FAST, "model=target", "model.target=collections:OrderedDict")
    with pytest.raises(ConfigError, match=r"has no signature to check options against"):
        build_run(cfg, Path("/nonexistent"))


def test_other_tools_names_get_dltrain_s_way_in_the_error(tmp_path: Path) -> None:
    argv = ["trainer.fast_dev_run=true", "regularization=[l2,ema]", "trainer.max_epochs=3"]
    code, err = invoke(dltrain_main, argv, cwd=tmp_path)
    assert code == 2 and "3 problems" in err
    way = "dltrain's way:"
    assert f"trainer.fast_dev_run: no such key in trainer. {way} trainer.dry_run=true" in err
    assert f"regularization=ema: no such regularization option. {way} callbacks=[ema]" in err
    assert "trainer.max_epochs: no such key in trainer. dltrain's way: trainer.epochs." in err
    assert not (tmp_path / "outputs").exists()
