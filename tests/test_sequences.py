"""Sequence datasets and recurrent models, end to end on small data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dltrain.errors import ConfigError
from dltrain.registry import DATASETS, MODELS
from dltrain.train import run

from .helpers import FAST, compose_config, make_mnist
from .helpers import dataset_options as options


def test_sine_windows_predict_the_cosine_in_time_order() -> None:
    data = DATASETS.build("sine_cosine", options("sine_cosine"))
    x, y = data.train.tensors
    assert x.shape[1:] == (10, 1) and data.meta.input_shape == (10, 1)
    t_last = (np.arange(len(x)) + 9) * 0.1
    assert torch.allclose(y[:, 0], torch.tensor(np.cos(t_last), dtype=torch.float32), atol=1e-6)
    assert torch.allclose(x[:, -1, 0], torch.tensor(np.sin(t_last), dtype=torch.float32), atol=1e-6)
    # train, val and test follow each other in time: no overlapping windows leak across
    first_val, first_test = data.val.tensors[0][0, 0, 0], data.test.tensors[0][0, 0, 0]
    assert first_val == pytest.approx(np.sin(len(x) * 0.1), abs=1e-6)
    assert first_test == pytest.approx(np.sin((len(x) + len(data.val)) * 0.1), abs=1e-6)
    with pytest.raises(ConfigError, match="1 <= window < length"):
        DATASETS.build("sine_cosine", options("sine_cosine", window=2000))


def test_mnist_rows_become_time_steps(tmp_path: Path) -> None:
    root = make_mnist(tmp_path)
    data = DATASETS.build("mnist_seq", options("mnist_seq", data_dir=str(root)))
    assert data.train.tensors[0].shape == (90, 28, 28) and data.meta.input_shape == (28, 28)
    assert "augment" not in data.meta.preprocessing


@pytest.mark.parametrize("bidirectional", [False, True])
def test_head_sees_the_last_layer_of_both_directions(bidirectional: bool) -> None:
    model = MODELS.build(
        "gru",
        {"hidden_size": 8, "num_layers": 2, "bidirectional": bidirectional, "dropout": 0.1},
        input_shape=(5, 3),
        out_features=4,
    )
    assert model.head.in_features == (16 if bidirectional else 8)
    assert model(torch.randn(2, 5, 3)).shape == (2, 4)


def test_recurrent_models_refuse_images() -> None:
    with pytest.raises(ConfigError, match="needs sequences shaped"):
        MODELS.build("lstm", {}, input_shape=(1, 28, 28), out_features=10)


@pytest.mark.slow
def test_sine_rnn_recipe_tracks_the_cosine(tmp_path: Path) -> None:
    summary = run(compose_config("experiment=sine_rnn", "trainer.device=cpu"), tmp_path)
    assert summary["metrics"]["test/mse"] < 0.02 and summary["metrics"]["test/r2"] > 0.95
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert "test/predicted_vs_actual" in events.Tags()["images"]


def test_lstm_with_grad_clip_logs_the_gradient_norm(tmp_path: Path) -> None:
    cfg = compose_config(
        *FAST,
        "model=lstm",
        "dataset=sine_cosine",
        "loss=mse",
        "regularization=grad_clip",
        "trainer.log_every_n_steps=1",
    )
    run(cfg, tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert len(events.Scalars("train/grad_norm")) == len(events.Scalars("train/loss")) > 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mnist_lstm_on_real_mnist(tmp_path: Path) -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    if not shared.is_dir():
        pytest.skip(f"{shared} is absent (the real data lives outside the repo)")
    cfg = compose_config(
        "experiment=mnist_lstm", f"dataset.data_dir={shared}", "trainer.device=cpu"
    )
    assert run(cfg, tmp_path)["metrics"]["test/acc"] > 0.93
