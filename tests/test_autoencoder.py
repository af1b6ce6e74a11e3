"""The autoencoder: shapes, the reconstruction task, and what its runs leave in TensorBoard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dltrain.config import check_config
from dltrain.errors import ConfigError
from dltrain.registry import MODELS
from dltrain.train import run

from .helpers import FAST, compose_config, make_mnist


def test_encoder_and_decoder_mirror_each_other() -> None:
    model = MODELS.build("autoencoder", {}, input_shape=(1, 28, 28))
    widths = [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 64, 12, 3]
    widths = [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert widths == [12, 64, 128, 784]
    x = torch.rand(5, 1, 28, 28)
    rebuilt = model(x)
    assert rebuilt.shape == x.shape and rebuilt.min() >= 0 and rebuilt.max() <= 1  # sigmoid
    assert model.encode(x).shape == (5, 3)
    torch.nn.functional.mse_loss(rebuilt, x).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_options_and_text_data_are_refused() -> None:
    with pytest.raises(ConfigError, match="must be positive integers"):
        MODELS.build("autoencoder", {"latent_dim": 0}, input_shape=(4,))
    with pytest.raises(ConfigError, match="not token ids"):
        MODELS.build("autoencoder", {}, input_shape=(7,), vocab=["[PAD]", "[UNK]", "a"])


def test_the_run_task_is_reconstruction_and_needs_a_regression_loss() -> None:
    check_config(compose_config("model=autoencoder", "dataset=digits", "loss=mse"))
    with pytest.raises(ConfigError, match="does not fit dataset 'digits' \\(reconstruction task"):
        check_config(compose_config("model=autoencoder", "dataset=digits", "loss=cross_entropy"))


def test_image_autoencoder_logs_reconstructions_and_the_latent_space(tmp_path: Path) -> None:
    root = make_mnist(tmp_path / "data", n=120)
    cfg = compose_config(
        *FAST,
        "experiment=mnist_autoencoder",
        f"dataset.data_dir={root}",
        "trainer.epochs=2",
        "trainer.device=cpu",
    )
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    assert {"test/mse", "test/r2", "val/mse"} <= set(summary["metrics"])
    assert summary["confusion_matrix"] == {}
    board = tmp_path / "run" / "tensorboard"
    events = EventAccumulator(str(board), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("reconstruction/test")) == 2  # one grid per epoch
    assert "latent_space" in events.Tags()["images"]
    assert (board / "projector_config.pbtxt").is_file()
    latent = next(board.glob("*/latent"))
    codes = (latent / "tensors.tsv").read_text().splitlines()
    labels = (latent / "metadata.tsv").read_text().splitlines()
    assert labels[0] == "label\tsample"  # a header row, the label first
    assert len(codes) == len(labels) - 1 == 40 and len(codes[0].split("\t")) == 3  # the test split
    assert (latent / "sprite.png").is_file()
    assert (tmp_path / "run" / "latent_space.png").stat().st_size > 10_000


def test_tabular_autoencoder_reconstructs_standardised_features(tmp_path: Path) -> None:
    cfg = compose_config(
        *FAST,
        "model=autoencoder",
        "dataset=breast_cancer",  # digits' near-constant pixels make its test r2 a split's luck
        "dataset.standardize=true",
        "loss=mse",
        "model.hidden_sizes=[32]",
        "model.latent_dim=4",
        "model.output_activation=none",
        "trainer.epochs=8",
        "trainer.batch_size=32",
        "optimizer.lr=0.01",
    )
    summary = run(cfg, tmp_path)
    assert summary["metrics"]["test/r2"] > 0.5  # 30 features through 4 numbers (0.69-0.75 seen)
    assert not (tmp_path / "latent_space.png").exists()  # 4-D: the projector only
