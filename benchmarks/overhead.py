"""dltrain's per-epoch overhead against a minimal hand-written loop, and its start-up time.

Three variants train the registry's default `mlp` (64 -> 128 -> 64 -> 10, same seed, Adam 1e-3,
batch 64) on the same in-memory data (`dataset=blobs`, 50,000 x 64, 10 classes, no validation
split), one epoch at a time, in a shuffled order each repeat, in one process:

  plain                       the minimal hand-written loop, batches taken as x[index], y[index]
  plain on dltrain's batches  the same loop over dltrain's batch iterator (which gathers with
                              index_select: cheaper than x[index]), so the difference to dltrain
                              is the loop's own overhead
  dltrain                     what fit() runs for each epoch: `fit_epoch` with its per-step hook,
                              the callbacks of a default run but the checkpoint writes,
                              TensorBoard logging every 10 steps, the progress bar (drawn as on a
                              terminal, into /dev/null) and the TensorBoard flush of the epoch's
                              end; the bar is started before the clock, as fit() starts it once

Prints each repeat, then the median seconds per epoch and dltrain's ratio to each variant. Then
it times `dltrain` from process start to the first training step (the first train/loss event,
logged at step 1) and to the end of a 1-epoch run.

    .venv/bin/python benchmarks/overhead.py --repeats 21
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from dltrain.build.run import build_run
from dltrain.built_run import BuiltRun, FitState
from dltrain.callback import Callbacks
from dltrain.composition import compose_config
from dltrain.loop import after_step, fit_epoch
from dltrain.registry import MODELS, OPTIMIZERS
from dltrain.signals import GracefulStop

BATCH = 64


def make_model() -> nn.Module:
    """The benchmarked MLP, identically initialised for both variants."""
    torch.manual_seed(0)
    return MODELS.build("mlp", {}, in_features=64, out_features=10)


def textbook_batches(x: torch.Tensor, y: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
    """Batches as hand-written loops take them: a shuffled index, then x[index], y[index]."""
    order = torch.randperm(len(x))
    for start in range(0, len(x), BATCH):
        index = order[start : start + BATCH]
        yield x[index], y[index]


def plain_epoch(batches: Iterable[tuple[torch.Tensor, ...]]) -> float:
    """Seconds of one epoch of the minimal loop: forward, loss, backward, step (a fresh model)."""
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    begin = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return time.perf_counter() - begin


def dltrain_run(samples: int) -> BuiltRun:
    """Everything dltrain builds for the benchmark's run, its console a terminal into /dev/null."""
    cfg = compose_config(
        "dataset=blobs",
        f"dataset.n_samples={samples}",
        "dataset.n_features=64",
        "dataset.centers=10",
        "dataset.val_fraction=0",
        "dataset.test_fraction=0",
        "trainer.monitor=train/loss",
        "trainer.device=cpu",
        "trainer.precision=32",  # as the plain loops (auto picks bf16 on CPUs with bf16)
        "trainer.seed=0",
        f"trainer.batch_size={BATCH}",
    )
    terminal = Console(file=open(os.devnull, "w"), force_terminal=True, width=120)  # noqa: SIM115
    return build_run(cfg, Path(tempfile.mkdtemp(prefix="overhead-")), terminal)


def dltrain_epoch(built: BuiltRun) -> float:
    """Seconds of one epoch as fit() runs it (a fresh model), the bar started off the clock."""
    built.model = make_model()
    built.optimizer = OPTIMIZERS.build("adam", {"lr": 1e-3}, params=built.model.parameters())
    state = FitState()
    # The epoch's checkpoint writes are left out, as before the callbacks: disk, not the loop.
    named = built.callbacks.named
    built.callbacks = Callbacks({k: c for k, c in named.items() if k != "checkpoints"})
    with built.tracker.progress(1) as bar, GracefulStop() as stop:
        begin = time.perf_counter()
        batches = bar.track(built.batches["train"], 1)
        fit_epoch(built, state, batches, partial(after_step, built, state, stop))
        built.tracker.flush()  # fit's checkpoint at each epoch end flushes TensorBoard
        return time.perf_counter() - begin


def startup(repeats: int) -> tuple[float, float]:
    """Median seconds from `dltrain` process start to its first step, and to the end of a run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    script = Path(sys.executable).with_name("dltrain")
    firsts, totals = [], []
    for _ in range(repeats):
        run_dir = Path(tempfile.mkdtemp(prefix="overhead-"))
        start = time.time()
        subprocess.run(
            [
                str(script),
                "trainer.epochs=1",
                "trainer.log_every_n_steps=1",
                "trainer.device=cpu",
                f"hydra.run.dir={run_dir}",
            ],
            check=True,
            capture_output=True,
        )
        totals.append(time.time() - start)
        events = EventAccumulator(str(run_dir / "tensorboard"))
        events.Reload()
        firsts.append(events.Scalars("train/loss")[0].wall_time - start)
    return statistics.median(firsts), statistics.median(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up timing")
    args = parser.parse_args()
    built = dltrain_run(args.samples)
    x, y = built.data.train.tensors

    variants = {
        "plain": lambda: plain_epoch(textbook_batches(x, y)),
        "plain on dltrain's batches": lambda: plain_epoch(built.batches["train"]),
        "dltrain": lambda: dltrain_epoch(built),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = random.Random(0)
    for repeat in range(args.repeats):
        for name in order.sample(list(variants), len(variants)):  # no variant always goes first
            times[name].append(variants[name]())
            print(f"repeat {repeat + 1}: {name:<26} {times[name][-1]:6.3f} s", flush=True)
    steps = -(-args.samples // BATCH)
    print(f"\n{args.samples} samples, {steps} steps per epoch, {torch.get_num_threads()} threads")
    print("| variant | median s/epoch | µs/step | dltrain / it | median of per-repeat ratios |")
    print("|---|---|---|---|---|")
    ours = times["dltrain"]
    for name, seconds in times.items():
        median = statistics.median(seconds)
        pairs = statistics.median(d / p for d, p in zip(ours, seconds, strict=True))
        ratio = statistics.median(ours) / median
        per_step = 1e6 * median / steps
        print(f"| {name} | {median:.3f} | {per_step:.0f} | {ratio:.3f}x | {pairs:.3f}x |")
    if args.no_startup:
        return
    first, total = startup(max(3, args.repeats // 2))
    print(f"dltrain start-up: first step after {first:.2f} s; a 1-epoch default job {total:.2f} s")


if __name__ == "__main__":
    main()
