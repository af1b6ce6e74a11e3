"""The CUDA paths on a real GPU: each kind of data, 16-mixed with its GradScaler through a kill
and a resume, bf16-mixed with channels_last, data held on the GPU, eval / predict / export of a
GPU run, DDP over NCCL. Skipped without CUDA; benchmarks/gpu_check.sh runs them on a GPU."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile

from dltrain import checkpoints
from dltrain.build.run import build_run
from dltrain.built_run import FitState
from dltrain.evaluation import main as eval_main
from dltrain.export import main as export_main
from dltrain.loop import train_one_epoch
from dltrain.predict import main as predict_main
from dltrain.train import run

from .helpers import compose_config, python_dltrain
from .trained_runs import run_overrides as tiny_run  # the CPU tests' tiny runs, one per kind

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = "trainer.device=cuda"


def cuda_cfg(name: str, data: Path, *overrides: str):
    """The tiny run `name` of the CPU tests (its data made in `data`), on the GPU."""
    return compose_config(*tiny_run(name, data), CUDA, *overrides)


@pytest.fixture(autouse=True)
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval and predict follow a run's data paths under the data root only: make it tmp_path."""
    monkeypatch.setenv("DLTRAIN_DATA_DIR", str(tmp_path))


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("mnist", []),  # uint8 images held on the GPU
        ("folder", ["trainer.num_workers=2"]),  # decoded by workers, pinned, copied per batch
        ("text", []),  # padded token batches
        ("table", []),  # a CSV's encoded features held on the GPU
    ],
)
def test_each_kind_of_data_trains_on_the_gpu(
    name: str, extra: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="dltrain.build.run"):
        summary = run(cuda_cfg(name, tmp_path, *extra), tmp_path / "run")
    assert summary["status"] == "completed", summary
    assert "| device cuda:0 |" in caplog.text
    saved = checkpoints.load(tmp_path / "run" / "checkpoints" / "best.pt")  # loads to the CPU
    assert all(t.device.type == "cpu" for t in saved["model"].values())


def test_in_memory_data_lives_on_the_gpu_and_is_not_copied_per_batch(tmp_path: Path) -> None:
    built = build_run(cuda_cfg("mnist", tmp_path, "trainer.batch_size=4"), tmp_path / "run")
    batches = built.batches["train"]
    images, labels = batches.tensors
    assert images.is_cuda and images.dtype == torch.uint8 and labels.is_cuda  # stored as uint8

    def epoch() -> None:
        args = (built.trained, batches, built.loss_fn, built.optimizer, FitState(), built.context)
        train_one_epoch(*args, lambda values, step: None)
        torch.cuda.synchronize()

    epoch()  # lazy initialisation (cuDNN, cuBLAS, the optimizer's state) outside the count
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        epoch()
    built.tracker.close()
    copies = [e.name for e in prof.events() if "Memcpy HtoD" in e.name]
    assert len(batches) >= 20
    assert len(copies) <= 1, f"{len(copies)} host-to-device copies in {len(batches)} steps"


def test_bf16_mixed_with_channels_last_on_the_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[torch.dtype, bool]] = []
    original = torch.nn.Conv2d.forward

    def spy(self: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        out = original(self, x)
        seen.append((out.dtype, x.is_contiguous(memory_format=torch.channels_last)))
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    augment = ["dataset.random_crop_padding=2", "dataset.horizontal_flip=true"]  # on the GPU
    mixed = ["trainer.precision=bf16-mixed", "trainer.channels_last=true"]
    summary = run(cuda_cfg("mnist", tmp_path, *mixed, *augment), tmp_path / "run")
    assert summary["status"] == "completed"
    assert seen and all(dtype == torch.bfloat16 and nhwc for dtype, nhwc in seen)
    weights = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    floats = [w for w in weights.values() if w.is_floating_point()]  # not BN's step counts
    assert all(w.dtype == torch.float32 for w in floats)  # master weights stay fp32


# 158 steps an epoch (1,257 training digits in batches of 8); a checkpoint every 10 steps.
FLOAT16 = [
    "trainer.epochs=3",
    "trainer.seed=0",
    CUDA,
    "trainer.precision=16-mixed",
    "trainer.deterministic=true",
    "trainer.batch_size=8",
    "trainer.checkpoint_every_n_steps=10",
    "trainer.keep_checkpoints=100",
    "model.hidden_sizes=[32]",
]


def killed_after(run_dir: Path, step: int) -> subprocess.CompletedProcess:
    """Start the FLOAT16 run, SIGKILL it once a checkpoint past `step` exists, wait for it."""
    command = [sys.executable, "-m", "dltrain", *FLOAT16, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(
        command, cwd=run_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        steps = [int(p.stem[5:]) for p in (run_dir / "checkpoints").glob("step-*.pt")]
        if steps and max(steps) >= step:
            break
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_16_mixed_resumes_after_a_sigkill_with_its_grad_scaler(tmp_path: Path) -> None:
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    whole.mkdir()
    stopped.mkdir()
    result = python_dltrain(whole, *FLOAT16, f"hydra.run.dir={whole}")
    assert result.returncode == 0, result.stderr
    killed = killed_after(stopped, 40)
    assert killed.returncode == -signal.SIGKILL and not (stopped / "metrics.json").exists()
    saved = checkpoints.load(stopped / "checkpoints" / "last.pt")
    assert saved["scaler"]["scale"] > 0 and saved["scaler"]["_growth_tracker"] > 0

    resumed = python_dltrain(stopped, f"resume={stopped}")
    assert resumed.returncode == 0, resumed.stderr
    end, reference = (checkpoints.load(d / "checkpoints" / "last.pt") for d in (stopped, whole))
    # A scaler started afresh at the resume would count its growth steps from there.
    assert end["scaler"] == reference["scaler"]
    for name, tensor in reference["model"].items():
        assert torch.equal(end["model"][name], tensor), name


def image_folder(folder: Path, count: int) -> Path:
    """`count` 28x28 grey PNGs showing a label's band, as the tiny MNIST run learned them."""
    folder.mkdir()
    for label in range(count):
        pixels = torch.randint(0, 30, (28, 28), dtype=torch.uint8)
        pixels[2 * label : 2 * label + 4] = 250
        Image.fromarray(pixels.numpy()).save(folder / f"{label}.png")
    return folder


def test_a_16_mixed_gpu_run_evaluates_predicts_and_exports_on_gpu_and_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    summary = run(cuda_cfg("mnist", tmp_path, "trainer.precision=16-mixed"), run_dir)
    assert summary["status"] == "completed"
    images = image_folder(tmp_path / "new", 10)
    probabilities = {}
    for device in ("cuda", "cpu"):  # 16-mixed on the GPU, float32 on the CPU
        out = tmp_path / f"eval_{device}.json"
        eval_main([str(run_dir), f"trainer.device={device}", f"out={out}"])
        metrics = json.loads(out.read_text())["metrics"]
        assert metrics["test/acc"] == pytest.approx(summary["metrics"]["test/acc"], abs=0.05)
        predictions = tmp_path / f"predictions_{device}.csv"
        predict_main(
            [str(run_dir), f"input={images}", f"output={predictions}", f"trainer.device={device}"]
        )
        probabilities[device] = pd.read_csv(predictions).filter(like="prob_").to_numpy()
    assert probabilities["cuda"].shape == (10, 10)
    assert abs(probabilities["cuda"] - probabilities["cpu"]).max() < 0.02  # float16 vs float32
    for fmt in ("torchscript", "safetensors"):  # export runs on the CPU, on any machine
        export_main([str(run_dir), f"format={fmt}"])
        assert "matches the PyTorch model" in capsys.readouterr().out


def test_ddp_over_nccl_on_the_gpus_here(tmp_path: Path) -> None:
    # One GPU: a process group of one (trainer.strategy=ddp); more: one rank on each.
    gpus = torch.cuda.device_count()
    blobs = ["dataset=blobs", "dataset.n_samples=640", "loss=bce", CUDA, "trainer.seed=0"]
    ddp = [f"trainer.devices={gpus}", "trainer.strategy=ddp", f"trainer.batch_size={64 // gpus}"]
    result = python_dltrain(tmp_path, *blobs, *ddp, "trainer.epochs=2", "hydra.run.dir=ddp")
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "ddp" / "dltrain.log").read_text()
    assert f"starting {gpus} DDP processes" in log and "(DDP) over" in log and "nccl" in log
    ddp_metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["metrics"]
    if 64 % gpus:
        return  # batches of 64 do not split evenly: no single-process twin to compare with
    cfg = compose_config(*blobs, "trainer.batch_size=64", "trainer.epochs=2")
    single = run(cfg, tmp_path / "single")["metrics"]  # the same samples in each step
    for key, value in single.items():
        assert ddp_metrics[key] == pytest.approx(value, abs=1e-3), key
