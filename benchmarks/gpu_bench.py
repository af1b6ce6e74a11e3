"""experiment=mnist_fast on a GPU: dltrain's training loop against a plain hand-written loop.

For each variant (float32, bf16-mixed, 16-mixed; eager, then compiled) both train the same CNN
with the recipe's optimizer, one-cycle schedule, batch size, epochs and channels_last, and are
tested after every epoch. Measured: images/s of the last epoch (compilation done), seconds of
training (compilation included, testing not) until test accuracy first reaches the target, the
final test accuracy, and peak GPU memory. dltrain keeps uint8 images on the device and
normalises each batch there (plain_loop.py: pre-normalised float32 images). The Markdown table
is rewritten after each variant, so a run cut short still leaves the rows it finished.

    python benchmarks/gpu_bench.py --data-dir ../shared/data/mnist --out gpu_check.md
    python benchmarks/gpu_bench.py --device cpu --train-samples 2000 --variants 32,bf16-mixed
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from mnist_files import about, mnist_root
from omegaconf import DictConfig
from plain_loop import plain_loop, sync
from rich.console import Console

from dltrain.build.data import build_data
from dltrain.build.run import build_run
from dltrain.built_run import EpochProgress, FitState
from dltrain.composition import compose_config
from dltrain.data.splits import DataSplits
from dltrain.loop import evaluate, train_one_epoch

# Eager first, then compiled from the likely fastest: a short budget drops the last ones.
ALL_VARIANTS = "32,bf16-mixed,16-mixed,bf16-mixed+compile,16-mixed+compile,32+compile"
COMPILED_SECONDS = 120  # a compiled variant is not started with less of the budget left
HEADER = (
    "| variant | dltrain images/s | plain loop images/s | dltrain / plain | time to {target:.0%} "
    "(dltrain / plain) | test acc (dltrain / plain) | peak GPU memory (dltrain / plain) |\n"
    "|---|---|---|---|---|---|---|"
)


@dataclass
class Result:
    """One loop's measurements for one variant."""

    images_per_s: float  # in the last epoch
    time_to_target: float | None  # None: not reached
    accuracy: float  # test accuracy after the last epoch
    peak_memory: int | None  # bytes; None off CUDA


def result(images: int, seconds: list[float], accuracy: list[float], target: float, device):
    """Result of a loop's epochs (training seconds and test accuracy of each)."""
    reached = next((i for i, acc in enumerate(accuracy) if acc >= target), None)
    to_target = None if reached is None else sum(seconds[: reached + 1])
    memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Result(images / seconds[-1], to_target, accuracy[-1], memory)


def fresh(device: torch.device, compiled: bool) -> None:
    """Free the last loop's memory, restart peak-memory counting and (to compile) dynamo."""
    gc.collect()
    if compiled:
        torch._dynamo.reset()  # else dynamo's cache limit per function stops compiling, silently
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def dltrain_loop(cfg: DictConfig, device: torch.device) -> tuple[int, list[float], list[float]]:
    """(training images, seconds and test accuracy of each epoch) of dltrain's own loop."""
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    built = build_run(cfg, Path(tempfile.mkdtemp(prefix="gpu-bench-")), quiet)
    seconds, accuracy, state = [], [], FitState()
    for _ in range(built.trainer.epochs):
        sync(device)
        start = time.perf_counter()
        state.progress = EpochProgress()
        train_one_epoch(
            built.trained,
            built.batches["train"],
            built.loss_fn,
            built.optimizer,
            state,
            built.context,
            built.tracker.scalars,  # TensorBoard logging, as fit() has it
        )
        sync(device)
        seconds.append(time.perf_counter() - start)
        test = built.batches["test"]
        metrics, _, _ = evaluate(built.model, test, built.loss_fn, built.context, "multiclass", "t")
        accuracy.append(metrics["t/acc"])
    built.tracker.close()
    return len(built.data.train), seconds, accuracy


def row(variant: str, ours: Result | None = None, plain: Result | None = None, note="") -> str:
    """One Markdown table row (a variant not measured: its note)."""
    if ours is None or plain is None:
        return f"| {variant} | {note} | | | | | |"

    def reached(r: Result) -> str:
        return "not reached" if r.time_to_target is None else f"{r.time_to_target:.1f} s"

    def memory(r: Result) -> str:
        return "–" if r.peak_memory is None else f"{r.peak_memory / 2**20:,.0f} MiB"

    return (
        f"| {variant} | {ours.images_per_s:,.0f} | {plain.images_per_s:,.0f} | "
        f"{ours.images_per_s / plain.images_per_s:.2f}x | {reached(ours)} / {reached(plain)} | "
        f"{ours.accuracy:.2%} / {plain.accuracy:.2%} | {memory(ours)} / {memory(plain)} |"
    )


def measure(variant: str, base: list[str], data: DataSplits, args: argparse.Namespace) -> str:
    """Both loops for one variant ('bf16-mixed', '32+compile', ...): its table row."""
    precision, _, compile_ = variant.partition("+")
    device, compiled = torch.device(args.device), compile_ == "compile"
    if precision == "16-mixed" and device.type != "cuda":
        return row(variant, note="not run: float16 autocast with a GradScaler needs CUDA")
    cfg = compose_config(*base, f"trainer.precision={precision}", f"trainer.compile={compiled}")
    try:
        fresh(device, compiled)
        ours = result(*dltrain_loop(cfg, device), args.target, device)
        fresh(device, compiled)
        seconds, accuracy = plain_loop(cfg, data, device, compiled)
        plain = result(len(data.train), seconds, accuracy, args.target, device)
    except Exception as e:  # one variant failing (a compiler error, say) leaves the others
        return row(variant, note=f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    return row(variant, ours, plain)


def environment(device: torch.device) -> str:
    """torch, CUDA and the device, in one line."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return f"torch {torch.__version__}, CPU ({torch.get_num_threads()} threads), no CUDA"
    name = torch.cuda.get_device_name(device)
    return f"torch {torch.__version__}, CUDA {torch.version.cuda}, {name}"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", type=Path, help="holds MNIST/raw/ (default: digits)")
    parser.add_argument("--train-samples", type=int, help="the first N training images only")
    parser.add_argument("--test-samples", type=int, help="the first N test images only")
    parser.add_argument("--epochs", type=int, help="default: the recipe's (2)")
    parser.add_argument("--variants", default=ALL_VARIANTS, help="comma-separated")
    parser.add_argument("--target", type=float, default=0.99, help="test accuracy to reach")
    parser.add_argument("--budget", type=float, default=300, help="seconds for all variants")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"))
    return parser.parse_args()


def main() -> None:
    args = arguments()
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="gpu-bench-data-"))
    root = mnist_root(args.data_dir, scratch, args.train_samples, args.test_samples)
    base = ["experiment=mnist_fast", f"dataset.data_dir={root}", f"trainer.device={args.device}"]
    base += [f"trainer.epochs={args.epochs}"] if args.epochs else []
    cfg = compose_config(*base)
    data = build_data(cfg)  # the plain loop's: the same training and test images as dltrain's
    title = (
        f"experiment=mnist_fast on {about(root)}: {len(data.train):,} training and "
        f"{len(data.test):,} test images, batch {cfg.trainer.batch_size}, epochs "
        f"{cfg.trainer.epochs}, channels_last. {environment(torch.device(args.device))}."
    )
    rows: list[str] = []
    for variant in args.variants.split(","):
        left = args.budget - (time.monotonic() - started)
        if left < (COMPILED_SECONDS if "compile" in variant else 10):
            rows.append(row(variant, note=f"not run: {left:.0f} s of the time budget left"))
        else:
            rows.append(measure(variant, base, data, args))
        print(rows[-1], flush=True)
        table = "\n".join([HEADER.format(target=args.target), *rows])
        args.out.write_text(f"{title}\n\n{table}\n")
    print(f"wrote {args.out} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
