"""Precision, memory format and compilation options on the CPU."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from dltrain import cpu, finished_run
from dltrain.build.step_context import auto_channels_last, auto_precision
from dltrain.config import check_config
from dltrain.data.splits import DataMeta
from dltrain.errors import ConfigError
from dltrain.train import run

from .helpers import FAST, compose_config, dltrain_main, invoke, make_mnist

CPU = torch.device("cpu")


def fake_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: str) -> None:
    """Make /proc/cpuinfo a file whose processor has `flags`."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Fake\nflags\t\t: {flags}\n\n")
    monkeypatch.setattr(cpu, "CPUINFO", cpuinfo)


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
    with pytest.raises(ConfigError, match="trainer.precision: must be one of 32, bf16-mixed") as e:
        check_config(compose_config("trainer.precision=64"))
    assert "auto" in str(e.value) and len(e.value.problems) == 1
    with pytest.raises(ConfigError, match="trainer.channels_last: must be true, false or auto"):
        check_config(compose_config("trainer.channels_last=sometimes"))


def test_auto_precision_follows_the_cpus_bf16_flags(tmp_path: Path, monkeypatch) -> None:
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    fake_cpu(monkeypatch, tmp_path, "fpu sse avx2 avx512f avx512_bf16")
    assert auto_precision(CPU, conv) == ("bf16-mixed", "CPU has avx512_bf16")
    assert auto_precision(CPU, nn.Linear(4, 2)) == (
        "32", "CPU has avx512_bf16, but the model has no convolutions to speed up"
    )  # fmt: skip
    fake_cpu(monkeypatch, tmp_path, "fpu sse avx2 avx512f amx_tile amx_bf16")
    assert auto_precision(CPU, conv) == ("bf16-mixed", "CPU has amx_bf16")
    fake_cpu(monkeypatch, tmp_path, "fpu sse avx2 avx512f")
    assert auto_precision(CPU, conv) == ("32", "CPU lacks avx512_bf16/amx_bf16")
    monkeypatch.setattr(cpu, "CPUINFO", tmp_path / "absent")  # no /proc: no flags
    assert auto_precision(CPU)[0] == "32"


def test_auto_channels_last_is_for_conv_nets_under_bf16() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    assert auto_channels_last("bf16-mixed", CPU, conv)[0] is True
    assert auto_channels_last("32", CPU, conv)[0] is False
    assert auto_channels_last("32", torch.device("cuda"), conv)[0] is True
    assert auto_channels_last("bf16-mixed", CPU, nn.Linear(4, 2)) == (
        False,
        "the model has no 2-D convolutions",
    )


def conv_net(tmp_path: Path) -> list[str]:
    """A small CNN on fake MNIST files (100 images)."""
    return [*FAST, "model=cnn", "dataset=mnist", f"dataset.data_dir={make_mnist(tmp_path / 'd')}"]


@pytest.mark.parametrize(
    ("flags", "conv", "precision", "why"),
    [
        ("avx2 avx512_bf16", True, "bf16-mixed", "(CPU has avx512_bf16)"),
        ("avx2 avx512f", True, "32", "(CPU lacks avx512_bf16/amx_bf16)"),
        ("avx2 amx_bf16", False, "32", "(CPU has amx_bf16, but the model has no convolutions"),
    ],
)
def test_auto_is_chosen_logged_and_recorded(
    tmp_path: Path, monkeypatch, caplog, flags: str, conv: bool, precision: str, why: str
) -> None:
    fake_cpu(monkeypatch, tmp_path, flags)
    model = conv_net(tmp_path) if conv else [*FAST, "model.hidden_sizes=[8]"]
    cfg = compose_config(*model, "trainer.epochs=1")
    assert cfg.trainer.precision == "auto" and cfg.trainer.channels_last == "auto"  # defaults
    with caplog.at_level(logging.INFO, logger="dltrain"):
        summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    assert f"precision=auto: {precision} {why}" in caplog.text
    channels_last = precision == "bf16-mixed"
    assert f"channels_last=auto: {str(channels_last).lower()} (" in caplog.text
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["precision"], metrics["channels_last"]) == (precision, channels_last)
    saved = OmegaConf.load(tmp_path / "run" / "config.yaml")  # the run's config holds the choice
    assert (str(saved.trainer.precision), saved.trainer.channels_last) == (precision, channels_last)


def test_a_resumed_run_keeps_the_precision_auto_chose(tmp_path: Path, monkeypatch) -> None:
    fake_cpu(monkeypatch, tmp_path, "avx512_bf16")
    common = conv_net(tmp_path)
    assert run(compose_config(*common, "trainer.epochs=1"), tmp_path / "run")["precision"] == (
        "bf16-mixed"
    )
    fake_cpu(monkeypatch, tmp_path, "avx2")  # resumed where auto would choose 32
    cfg = compose_config(*common, f"resume={tmp_path / 'run'}", "trainer.epochs=2")
    summary = run(cfg, tmp_path / "ignored")
    assert summary["epochs_completed"] == 2 and summary["precision"] == "bf16-mixed"
    # `auto` on a resume command is what the run chose, not a change it refuses
    autos = ["trainer.precision=auto", "trainer.channels_last=auto", "trainer.epochs=3"]
    code, stderr = invoke(dltrain_main, [f"resume={tmp_path / 'run'}", *autos], cwd=tmp_path)
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3 and metrics["precision"] == "bf16-mixed"


@pytest.mark.slow
def test_compiled_model_saves_plain_state_dict_keys(tmp_path: Path) -> None:
    cfg = compose_config(
        *FAST, "trainer.epochs=1", "dataset=iris", "trainer.compile=true", "model.hidden_sizes=[8]"
    )
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    keys = torch.load(tmp_path / "model.pt", weights_only=True).keys()
    assert not any("_orig_mod" in k for k in keys)


def test_eval_predict_and_export_read_auto_as_a_run_here_would(tmp_path: Path, monkeypatch) -> None:
    fake_cpu(monkeypatch, tmp_path, "avx512_bf16")
    cfg = compose_config("trainer.device=cpu", "trainer.precision=auto")
    context = finished_run.step_context(cfg, DataMeta(task="multiclass", input_shape=(4,)))
    assert context.amp_dtype == torch.bfloat16
