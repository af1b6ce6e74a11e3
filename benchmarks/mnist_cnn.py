"""One training epoch of the MNIST CNN three ways, in one process, alternating.

  dataloader  the usual example style: torchvision MNIST + ToTensor + Normalize + DataLoader
  tensors     a plain hand-written loop over pre-normalised in-memory tensors
  dltrain     dltrain's own train_one_epoch (per-batch transform, logging, progress bar)

Same model (the registry's `cnn`, same seed), optimizer (Adam 1e-3), batch size and data for all
three. Prints each repeat, then the median seconds per epoch and dltrain's speed-up over each.

    .venv/bin/python benchmarks/mnist_cnn.py --data-dir ../shared/data/mnist --repeats 3 \
        --dltrain trainer.precision=32 trainer.channels_last=false
    .venv/bin/python benchmarks/mnist_cnn.py --dltrain trainer.precision=bf16-mixed \
        trainer.channels_last=true

(dltrain's defaults, precision and channels_last `auto`, are the second on a CPU with bf16.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from rich.console import Console
from torch import nn
from torchvision import datasets, transforms

from dltrain.build.run import build_run
from dltrain.built_run import BuiltRun, FitState
from dltrain.composition import compose_config
from dltrain.loop import train_one_epoch
from dltrain.registry import MODELS

MEAN, STD = 0.1307, 0.3081


def make_model(seed: int = 0) -> nn.Module:
    """The benchmarked network, identically initialised for every variant."""
    torch.manual_seed(seed)
    return MODELS.build("cnn", {}, input_shape=(1, 28, 28), out_features=10, num_classes=10)


def plain_epoch(batches: Iterable) -> None:
    """The textbook loop."""
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()


def dataloader_epoch(raw_dir: Path, batch_size: int, workers: int) -> Callable[[], None]:
    """Variant a: torchvision's MNIST dataset with per-sample transforms and a DataLoader."""
    root = Path(tempfile.mkdtemp(prefix="mnist-torchvision-"))
    (root / "MNIST" / "raw").mkdir(parents=True)
    for gz in raw_dir.glob("*.gz"):
        shutil.copy(gz, root / "MNIST" / "raw")
    # With the official .gz files present torchvision checks their md5 and extracts: no network.
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    train = datasets.MNIST(root, train=True, download=True, transform=tf)
    loader = torch.utils.data.DataLoader(
        train, batch_size=batch_size, shuffle=True, num_workers=workers
    )
    return lambda: plain_epoch(loader)


def tensors_epoch(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> Callable:
    """Variant b: pre-normalised float tensors, sliced by a shuffled index."""
    x = (images.float() / 255 - MEAN) / STD

    def batches() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            index = order[i : i + batch_size]
            yield x[index], labels[index]

    return lambda: plain_epoch(batches())


def dltrain_run(data_dir: str, overrides: list[str]) -> BuiltRun:
    """Everything dltrain builds for `experiment=mnist_cnn` (without a validation split)."""
    cfg = compose_config(
        "experiment=mnist_cnn",
        f"dataset.data_dir={data_dir}",
        "dataset.val_fraction=0",
        "trainer.monitor=train/loss",
        "trainer.device=cpu",
        *overrides,
    )
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    return build_run(cfg, Path(tempfile.mkdtemp(prefix="mnist-dltrain-")), quiet)


def dltrain_epoch(built: BuiltRun) -> Callable[[], None]:
    """Variant c: dltrain's train_one_epoch, wrapped in its progress bar as fit() does."""

    def epoch() -> None:
        model = make_model()
        if built.trainer.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        batches = built.batches["train"]
        with built.tracker.progress(1) as bar:
            train_one_epoch(
                model,
                bar.track(batches, 1),
                built.loss_fn,
                optimizer,
                FitState(),
                built.context,
                built.tracker.scalars,
            )

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (variant a)")
    parser.add_argument("--dltrain", nargs="*", default=[], help="extra dltrain overrides")
    args = parser.parse_args()

    built = dltrain_run(args.data_dir, [f"trainer.batch_size={args.batch_size}", *args.dltrain])
    images, labels = built.data.train.tensors
    variants = {
        "dataloader": dataloader_epoch(
            Path(args.data_dir) / "MNIST" / "raw", args.batch_size, args.workers
        ),
        "tensors": tensors_epoch(images, labels, args.batch_size),
        "dltrain": dltrain_epoch(built),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, epoch in variants.items():
            start = time.perf_counter()
            epoch()
            times[name].append(time.perf_counter() - start)
            print(f"repeat {repeat + 1}: {name:<10} {times[name][-1]:6.2f} s", flush=True)

    medians = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"\n{len(images)} images per epoch, batch {args.batch_size}, "
        f"{torch.get_num_threads()} torch threads, DataLoader workers {args.workers}, "
        f"dltrain overrides: {' '.join(args.dltrain) or 'none'}"
    )
    print("| variant | median s/epoch | images/s | dltrain speed-up over it |")
    print("|---|---|---|---|")
    for name, median in medians.items():
        speedup = median / medians["dltrain"]
        print(f"| {name} | {median:.2f} | {len(images) / median:,.0f} | {speedup:.2f}x |")


if __name__ == "__main__":
    main()
