"""dltrain-export: every format reloads and gives the PyTorch model's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from dltrain.data.splits import DataMeta
from dltrain.export import (
    FORMATS,
    example_batch,
    export,
    load_torchscript,
    main,
    onnx_outputs,
)
from dltrain.finished_run import FinishedRun, load_run
from dltrain.safetensors_files import save_safetensors

from .helpers import run_command
from .trained_runs import trained


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", ["digits", "mnist", "text"])  # mlp, cnn, bidirectional text_rnn
def test_every_format_gives_the_models_outputs(
    name: str, fmt: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = load_run(trained(name, tmp_path_factory), ["trainer.device=cpu"])
    path = tmp_path / FORMATS[fmt]
    diff, same = export(run, fmt, path)
    assert same and diff < 1e-4 and path.is_file()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("name", ["digits", "text"])
def test_onnx_takes_other_batch_sizes_and_lengths(
    name: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = load_run(trained(name, tmp_path_factory), ["trainer.device=cpu"])
    export(run, "onnx", tmp_path / "model.onnx")  # traced on a batch of 4 (12 tokens)
    for size, length in ((1, 5), (9, 30)):
        x = example_batch(run.meta, size, length, seed=size)
        with torch.no_grad():
            expected = run.model(x)
        assert torch.allclose(onnx_outputs(tmp_path / "model.onnx", x), expected, atol=1e-5)


def test_safetensors_carry_the_config_and_rebuild_the_model(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = load_run(trained("digits", tmp_path_factory), ["trainer.device=cpu"])
    export(run, "safetensors", tmp_path / "w.safetensors")
    with safe_open(tmp_path / "w.safetensors", "pt") as f:
        metadata = f.metadata()
    assert json.loads(metadata["config"])["model"]["name"] == "mlp"
    assert json.loads(metadata["data_meta"])["class_names"] == [str(i) for i in range(10)]


def test_save_safetensors_is_atomic_and_accepts_shared_tensors(tmp_path: Path) -> None:
    tied = torch.arange(6.0)
    state = {"a": tied, "b": tied, "view": tied[2:4], "empty": torch.zeros(0)}
    save_safetensors(state, tmp_path / "m.safetensors", {"k": "v"})
    loaded = load_file(tmp_path / "m.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


class FrozenBatch(nn.Module):
    """A forward that tracing gets wrong: len() becomes a constant of the example batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * len(x)


def test_an_export_that_differs_is_caught(tmp_path: Path) -> None:
    meta = DataMeta(task="regression", input_shape=(3,))
    run = FinishedRun(FrozenBatch(), OmegaConf.create({}), meta, None, tmp_path, tmp_path, None)
    diff, same = export(run, "torchscript", tmp_path / "m.pt")
    assert not same and diff > 0.1


@pytest.mark.slow
def test_export_command_writes_a_checked_torchscript_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    run_dir = trained("mnist", tmp_path_factory)
    result = run_command("dltrain-export", run_dir, "format=torchscript", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "matches the PyTorch model" in result.stdout and "max abs difference" in result.stdout
    module = load_torchscript(run_dir / "model.torchscript.pt")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(module(x), load_run(run_dir).model(x), atol=1e-5)


def test_export_mistakes_are_one_line_errors(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture
) -> None:
    run_dir = str(trained("digits", tmp_path_factory))
    for argv, message in (
        ([run_dir, "format=onx"], "Did you mean 'onnx'?"),
        ([run_dir], "format=: choose one of torchscript, onnx, safetensors"),
        ([run_dir, "format=onnx", "dataset.path=x"], "takes no overrides"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


def test_an_export_that_fails_or_differs_exits_1_with_one_line(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_dir = str(trained("digits", tmp_path_factory))

    def unsupported(*args: object) -> None:
        raise RuntimeError("Exporting the operator 'aten::foo' is not supported\nmore detail")

    for fake, message in (
        (unsupported, "format=onnx failed for model mlp: RuntimeError: Exporting the operator"),
        (lambda *args: (0.5, False), "DIFFERS FROM the PyTorch model"),
    ):
        monkeypatch.setattr("dltrain.export.export", fake)
        with pytest.raises(SystemExit) as exit_info:
            main([run_dir, "format=onnx"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 1 and message in err and err.count("\n") == 1
