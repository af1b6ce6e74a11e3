from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import TensorDataset

from dltrain import checkpoints, training_state
from dltrain.build.model import build_model
from dltrain.built_run import FitState
from dltrain.data.batches import TensorBatches
from dltrain.data.splits import DataMeta
from dltrain.errors import ConfigError
from dltrain.files import save_torch
from dltrain.loop import DivergedError, train_one_epoch
from dltrain.registry import LOSSES
from dltrain.regularization import Dropout
from dltrain.step import StepContext
from dltrain.train import run

from .helpers import FAST, compose_config, events


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The default job (`dltrain` with no arguments) with a fixed seed."""
    run_dir = tmp_path_factory.mktemp("default_run")
    return run_dir, run(compose_config("trainer.seed=0", "trainer.device=cpu"), run_dir)


@pytest.mark.slow
def test_default_run_learns_digits(default_run: tuple[Path, dict]) -> None:
    _, summary = default_run
    assert summary["status"] == "completed"
    assert summary["metrics"]["test/acc"] > 0.9  # chance is 0.1
    assert summary["epochs_completed"] == 20 and summary["seed"] == 0


@pytest.mark.slow
def test_run_dir_has_checkpoints_model_metrics_and_config(default_run: tuple[Path, dict]) -> None:
    run_dir, summary = default_run
    for name in (
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "model.pt",
        "metrics.json",
        "config.yaml",
    ):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "metrics.json").read_text()) == summary
    assert len(summary["confusion_matrix"]["test"]) == 10
    assert not list(run_dir.rglob("*.tmp"))  # atomic writes leave no temp files

    last = checkpoints.load(run_dir / "checkpoints" / "last.pt")
    assert {
        "model",
        "optimizer",
        "scheduler",
        "epoch",
        "step",
        "best",
        "rng",
        "config",
        "data_meta",
    } <= set(last)
    assert last["epoch"] == 20 and last["best"]["monitor"] == "val/loss"
    best = checkpoints.load(run_dir / "checkpoints" / "best.pt")
    assert best["epoch"] == summary["best_epoch"]
    model_pt = torch.load(run_dir / "model.pt", weights_only=True)
    for key, value in best["model"].items():
        assert torch.equal(model_pt[key], value)  # model.pt holds the best weights


@pytest.mark.slow
def test_checkpoint_config_rebuilds_the_model(default_run: tuple[Path, dict]) -> None:
    run_dir, summary = default_run
    saved = checkpoints.load(run_dir / "checkpoints" / "best.pt")
    meta = DataMeta.from_dict(saved["data_meta"])
    model = build_model(OmegaConf.create(saved["config"]), meta, {})
    model.load_state_dict(saved["model"])
    assert saved["config"]["trainer"]["seed"] == 0


@pytest.mark.slow
def test_tensorboard_holds_the_expected_tags(default_run: tuple[Path, dict]) -> None:
    run_dir, _ = default_run
    acc = events(run_dir)
    scalars = set(acc.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/epoch_loss",
        "lr",
        "epoch",
        "val/loss",
        "val/acc",
        "val/f1",
        "val/precision",
        "val/recall",
        "val/auc",
        "test/loss",
        "test/acc",
        "test/auc",
        "best/val/loss",
        "best/val/acc",
    }
    assert expected <= scalars, expected - scalars
    assert len(acc.Scalars("val/acc")) == 20
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == sorted(set(steps)) and steps[0] == 10  # logged every 10 steps
    tensors = set(acc.Tags()["tensors"])
    assert {"config/text_summary", "test/confusion_matrix/text_summary"} <= tensors
    plugin = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(plugin)
    assert b"optimizer.lr" in plugin["_hparams_/session_start_info"]


def test_run_records_the_drawn_seed(tmp_path: Path) -> None:
    cfg = compose_config("trainer.epochs=1", "trainer.device=cpu", "dataset=iris")
    summary = run(cfg, tmp_path)
    assert isinstance(summary["seed"], int)
    assert f"seed: {summary['seed']}" in (tmp_path / "config.yaml").read_text()


def test_same_seed_same_weights(tmp_path: Path) -> None:
    overrides = [*FAST, "dataset=wine", "trainer.deterministic=true", "model.dropout=0.2"]
    run(compose_config(*overrides), tmp_path / "a")
    run(compose_config(*overrides), tmp_path / "b")
    run(compose_config(*overrides, "trainer.seed=1"), tmp_path / "c")
    a, b, c = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_linear_regression_recovers_the_line(tmp_path: Path) -> None:
    summary = run(compose_config("experiment=linear_regression", "trainer.device=cpu"), tmp_path)
    weights = torch.load(tmp_path / "model.pt", weights_only=True)
    assert weights["1.weight"].item() == pytest.approx(0.3, abs=0.02)
    assert weights["1.bias"].item() == pytest.approx(0.5, abs=0.02)
    assert summary["metrics"]["test/mae"] < 0.02


def test_early_stopping_stops_and_keeps_the_best_weights(tmp_path: Path) -> None:
    cfg = compose_config(
        *FAST,
        "dataset=iris",
        "trainer.epochs=200",
        "optimizer.lr=0.05",
        "regularization=early_stopping",
        "regularization.early_stopping.patience=3",
    )
    summary = run(cfg, tmp_path)
    assert summary["stopped_early"] and summary["epochs_completed"] < 200
    assert summary["epochs_completed"] == summary["best_epoch"] + 3
    val_loss = [e.value for e in events(tmp_path).Scalars("val/loss")]
    assert summary["metrics"]["val/loss"] == pytest.approx(min(val_loss))


def test_l1_l2_dropout_and_grad_clip_reach_the_training(tmp_path: Path) -> None:
    cfg = compose_config(
        *FAST,
        "dataset=breast_cancer",
        "loss=bce",
        "regularization=[l1,l2,dropout,grad_clip]",
        "trainer.log_every_n_steps=1",
        "regularization.dropout.p=0.3",
        "regularization.grad_clip.max_norm=0.5",
    )
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    assert "train/grad_norm" in events(tmp_path).Tags()["scalars"]
    last = checkpoints.load(tmp_path / "checkpoints" / "last.pt")
    assert last["optimizer"]["param_groups"][0]["weight_decay"] == 1e-3
    meta = DataMeta.from_dict(last["data_meta"])
    model = build_model(OmegaConf.create(last["config"]), meta, {"dropout": Dropout(0.3)})
    assert [m.p for m in model if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3]


def test_l1_penalty_shrinks_weights(tmp_path: Path) -> None:
    def weight_norm(run_dir: Path, *extra: str) -> float:
        run(compose_config(*FAST, "dataset=wine", "trainer.epochs=15", *extra), run_dir)
        weights = torch.load(run_dir / "model.pt", weights_only=True)
        return sum(w.abs().sum().item() for k, w in weights.items() if w.dim() == 2)

    plain = weight_norm(tmp_path / "plain")
    penalised = weight_norm(tmp_path / "l1", "regularization=l1", "regularization.l1.lam=0.01")
    assert penalised < 0.7 * plain


@pytest.mark.parametrize("scheduler", ["step", "cosine", "plateau", "onecycle"])
def test_schedules_change_the_learning_rate(tmp_path: Path, scheduler: str) -> None:
    overrides = {
        "step": ["scheduler.step_size=1"],
        "plateau": ["scheduler.patience=0", "scheduler.monitor=train/loss", "scheduler.mode=max"],
    }.get(scheduler, [])
    cfg = compose_config(
        *FAST,
        "trainer.epochs=3",
        "dataset=iris",
        "trainer.log_every_n_steps=1",
        f"scheduler={scheduler}",
        *overrides,
    )
    run(cfg, tmp_path)
    lrs = [e.value for e in events(tmp_path).Scalars("lr")]
    assert len(set(lrs)) > 1, lrs


def test_a_diverging_run_stops_with_the_step_and_keeps_its_checkpoint(tmp_path: Path) -> None:
    good = compose_config(*FAST, "dataset=quadratic", "loss=mse", "trainer.epochs=1")
    run(good, tmp_path)
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    bad = compose_config(
        *FAST, "dataset=quadratic", "loss=mse", "optimizer=sgd", "optimizer.lr=1e6"
    )
    with pytest.raises(DivergedError, match=r"at step \d+\. Usual causes: a learning rate"):
        run(bad, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before


def test_a_loss_that_does_not_fit_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loss=cross_entropy: does not fit dataset 'diabetes'"):
        run(compose_config(*FAST, "dataset=diabetes"), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_rng_states_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    import random

    import numpy as np

    save_torch({"rng": training_state.rng_states()}, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    training_state.set_rng_states(checkpoints.load(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_a_corrupt_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="is truncated, corrupted or not a PyTorch weights file"):
        checkpoints.load(path)


def test_dry_run_reports_shapes_and_saves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    summary = run(compose_config(*FAST, "trainer.dry_run=true"), tmp_path)
    assert summary["status"] == "dry_run" and summary["parameters"] > 0
    assert {"train/loss", "val/loss", "val/acc"} <= set(summary)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()
    shown = capsys.readouterr().out
    assert "output shape" in shown and "(64, 10)" in shown and "trainable" in shown


def test_a_loss_that_explodes_is_divergence_even_while_finite(tmp_path: Path) -> None:
    cfg = compose_config(*FAST, "optimizer.lr=1e6")  # used to end "completed" at chance accuracy
    with pytest.raises(DivergedError, match=r"the training loss exploded to .* over 10000x the"):
        run(cfg, tmp_path)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["status"] == "diverged" and "exploded" in summary["error"]
    run(compose_config(*FAST, "optimizer.lr=1e6", "trainer.divergence_threshold=0"), tmp_path / "b")


def test_non_finite_outputs_under_bce_are_divergence_not_a_torch_error() -> None:
    x = torch.randn(32, 3)
    x[5] = float("inf")  # a sample the model turns into NaN outputs; BCE rejects those
    batches = TensorBatches(TensorDataset(x, torch.randint(0, 2, (32,))), 8, False, 0)
    model, loss = torch.nn.Linear(3, 1), LOSSES.build("bce", {})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    context = StepContext(device=torch.device("cpu"))
    with pytest.raises(
        DivergedError, match=r"the model's outputs became NaN or infinite at step \d"
    ):
        train_one_epoch(model, batches, loss, optimizer, FitState(), context, lambda *a: None)
