"""The parts of the GPU path a CPU can check: copies to the device, DDP of one rank, GPU runs
evaluated, predicted and exported on a CPU. tests/test_cuda.py checks the rest on a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import TensorDataset

from dltrain.checkpoints import load
from dltrain.data.batches import TensorBatches
from dltrain.evaluation import main as eval_main
from dltrain.export import main as export_main
from dltrain.files import save_torch
from dltrain.predict import main as predict_main
from dltrain.train import run

from .helpers import FAST, compose_config, python_dltrain


class CopiesTo(TorchDispatchMode):
    """Counts the tensors copied from the CPU to another device while it is active."""

    def __init__(self, device: str):
        super().__init__()
        self.device, self.count = torch.device(device).type, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            source = args[1] if func is torch.ops.aten.copy_.default else args[0]
            if source.device.type == "cpu" and out.device.type == self.device:
                self.count += 1
        return out


def test_in_memory_batches_cross_to_the_device_once_per_pass() -> None:
    # "meta" stands in for the GPU: a copy per batch would show as one per step.
    data = TensorDataset(torch.zeros(100, 1, 4, 4, dtype=torch.uint8), torch.zeros(100).long())
    for shuffle, copies in ((True, 1), (False, 0)):  # the shuffled order; slices copy nothing
        batches = TensorBatches(data, 10, shuffle, seed=0, device="meta")
        with CopiesTo("meta") as counted:
            assert sum(1 for _ in batches) == 10
            assert sum(1 for _ in batches) == 10
        assert counted.count == 2 * copies
        assert all(t.device.type == "meta" for t in batches.tensors)  # moved once, when built


@pytest.mark.slow
def test_strategy_ddp_on_one_device_trains_one_rank_under_ddp(tmp_path: Path) -> None:
    # The one-GPU path of NCCL: a process group of one and the DDP wrapper (gloo here).
    args = ["dataset=iris", "trainer.epochs=1", "trainer.device=cpu", "hydra.run.dir=run"]
    result = python_dltrain(tmp_path, *args, "trainer.devices=1", "trainer.strategy=ddp")
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "run" / "dltrain.log").read_text()
    assert "starting 1 DDP processes" in log and "x 1 rank (DDP) over" in log and "gloo" in log
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"


def as_if_trained_on_a_gpu(run_dir: Path) -> None:
    """Make a CPU run's checkpoints say what a 16-mixed CUDA run's say (device, precision)."""
    for path in (run_dir / "checkpoints").glob("*.pt"):
        saved = load(path)
        saved["config"]["trainer"].update(device="cuda", precision="16-mixed")
        save_torch(saved, path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_gpu_run_evaluates_predicts_and_exports_on_a_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    assert run(compose_config(*FAST, "trainer.epochs=1"), run_dir)["status"] == "completed"
    as_if_trained_on_a_gpu(run_dir)
    with pytest.raises(SystemExit) as exit_info:
        eval_main([str(run_dir)])
    assert exit_info.value.code == 2
    assert "trainer.device: 'cuda' is not available" in capsys.readouterr().err
    # trainer.device=cpu alone is enough: float16 autocast needs CUDA, so float32 is used.
    eval_main([str(run_dir), "trainer.device=cpu", f"out={tmp_path / 'eval.json'}"])
    metrics = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    saved = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert metrics["test/acc"] == pytest.approx(saved["test/acc"], abs=1e-6)
    rows = tmp_path / "rows.csv"
    header = ",".join(f"pixel_{i // 8}_{i % 8}" for i in range(64))
    rows.write_text(f"{header}\n{','.join(['0'] * 64)}\n")
    predict_main([str(run_dir), f"input={rows}", "trainer.device=cpu"])
    assert (run_dir / "predictions.csv").read_text().count("\n") == 2  # header and one row
    export_main([str(run_dir), "format=torchscript"])  # export runs on the CPU in float32
    assert "matches the PyTorch model" in capsys.readouterr().out
