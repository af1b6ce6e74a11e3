"""What an image run shows in TensorBoard, and a real MNIST run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dltrain.train import run

from .helpers import FAST, SHARED, compose_config, make_mnist


def test_image_run_logs_samples_confusion_misclassified_and_histograms(tmp_path: Path) -> None:
    root = make_mnist(tmp_path / "data", n=200)
    cfg = compose_config(
        *FAST,
        "model=cnn",
        "dataset=mnist",
        f"dataset.data_dir={root}",
        "dataset.random_crop_padding=2",
        "trainer.epochs=2",
        "trainer.precision=bf16-mixed",
        "trainer.channels_last=true",
        "trainer.histogram_every_n_epochs=1",
        "model.channels=[4,8]",
    )
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    events = EventAccumulator(
        str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "histograms": 0}
    )
    events.Reload()
    tags = events.Tags()
    assert {"train/samples", "test/confusion_matrix_plot"} <= set(tags["images"])
    assert len(tags["histograms"]) == len(
        [k for k in tags["histograms"] if k.startswith("weights/")]
    )
    assert len(events.Histograms("weights/0.weight")) == 2  # one per epoch
    if summary["metrics"]["test/acc"] < 1.0:
        assert "test/misclassified" in tags["images"]


@pytest.mark.slow
def test_one_epoch_of_the_fast_recipe_on_real_mnist(tmp_path: Path) -> None:
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"{SHARED / 'mnist'} is absent (the real data lives outside the repo)")
    cfg = compose_config(
        "experiment=mnist_fast",
        f"dataset.data_dir={SHARED / 'mnist'}",
        "trainer.epochs=1",
        "trainer.device=cpu",
    )
    summary = run(cfg, tmp_path)
    assert summary["metrics"]["test/acc"] > 0.97


def test_binary_run_draws_roc_curves_and_keeps_last_epoch_metrics(tmp_path: Path) -> None:
    cfg = compose_config(
        *FAST, "dataset=breast_cancer", "dataset.standardize=true", "loss=bce", "trainer.epochs=3"
    )
    summary = run(cfg, tmp_path)
    assert (tmp_path / "roc_curve.png").stat().st_size > 10_000
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "roc_curve" in events.Tags()["images"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["last_metrics"] == summary["last_metrics"]
    assert {"train/loss", "val/loss", "val/auc"} <= set(saved["last_metrics"])
    stats = json.loads((tmp_path / "preprocessing.json").read_text())["standardize"]
    assert len(stats["mean"]) == len(stats["std"]) == 30  # fitted on train, reused to predict


def test_regression_run_saves_predicted_vs_actual(tmp_path: Path) -> None:
    summary = run(compose_config(*FAST, "dataset=diabetes", "loss=mse"), tmp_path)
    assert summary["status"] == "completed"
    assert (tmp_path / "predicted_vs_actual.png").stat().st_size > 10_000
    assert not (tmp_path / "roc_curve.png").exists()
    weights = torch.load(tmp_path / "model.pt", weights_only=True)
    exported = load_file(tmp_path / "model.safetensors")
    assert (
        all(torch.equal(weights[k], exported[k]) for k in weights)
        and weights.keys() == exported.keys()
    )
