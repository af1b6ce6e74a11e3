"""Precision, memory format and compilation options on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dltrain.config import check_config
from dltrain.errors import ConfigError
from dltrain.train import run

from .helpers import FAST, compose_config


def test_bf16_mixed_trains_in_bfloat16_autocast(tmp_path: Path, monkeypatch) -> None:
    seen = []
    original = torch.nn.Linear.forward

    def spy(self, x):
        out = original(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", spy)
    summary = run(compose_config(*FAST, "trainer.precision=bf16-mixed"), tmp_path)
    assert summary["status"] == "completed" and summary["metrics"]["test/acc"] > 0.5
    assert torch.bfloat16 in seen
    weights = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(w.dtype == torch.float32 for w in weights.values())  # master weights stay fp32


def test_float16_needs_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="16-mixed needs a CUDA device"):
        check_config(compose_config("trainer.precision=16-mixed"))


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="trainer.precision: must be one of 32, bf16-mixed"):
        check_config(compose_config("trainer.precision=64"))


@pytest.mark.slow
def test_compiled_model_saves_plain_state_dict_keys(tmp_path: Path) -> None:
    cfg = compose_config(
        *FAST, "trainer.epochs=1", "dataset=iris", "trainer.compile=true", "model.hidden_sizes=[8]"
    )
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    keys = torch.load(tmp_path / "model.pt", weights_only=True).keys()
    assert not any("_orig_mod" in k for k in keys)
