"""dltrain's per-epoch overhead against a minimal hand-written loop, and its start-up time.

Both train the same tiny MLP (64 -> 128 -> 64 -> 10, same seed, Adam 1e-3, batch 64) on the same
in-memory data (make_classification, 50,000 x 64), one epoch at a time, alternating, in one
process. dltrain runs its own train_one_epoch with TensorBoard logging every 10 steps and its
progress bar (the defaults); the plain loop has neither. Prints each repeat, then the median
seconds per epoch and their ratio. Then it times `dltrain` from process start to the first
training step (the first train/loss event, logged at step 1) and to the end of a 1-epoch run.

    .venv/bin/python benchmarks/overhead.py --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from sklearn.datasets import make_classification
from torch import nn
from torch.utils.data import TensorDataset

from dltrain.data.batches import TensorBatches
from dltrain.loop import train_one_epoch
from dltrain.losses import cross_entropy
from dltrain.parts import StepOptions
from dltrain.tracking import Tracker

BATCH = 64


def make_model() -> nn.Module:
    """The benchmarked MLP, identically initialised for both variants."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
    )


def plain_epoch(x: torch.Tensor, y: torch.Tensor) -> None:
    """The minimal loop: shuffled index slices, forward, loss, backward, step."""
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x))
    for start in range(0, len(x), BATCH):
        index = order[start : start + BATCH]
        optimizer.zero_grad()
        loss_fn(model(x[index]), y[index]).backward()
        optimizer.step()


def dltrain_epoch(data: TensorDataset, tracker: Tracker) -> None:
    """dltrain's train_one_epoch with its logging and progress bar, as fit() runs it."""
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = TensorBatches(data, BATCH, shuffle=True, seed=0)
    opts = StepOptions(device=torch.device("cpu"))
    with tracker.progress() as progress:
        bar = progress.add_task("epoch", total=len(batches), status="")
        track = progress.track(batches, task_id=bar)
        train_one_epoch(model, track, cross_entropy(), optimizer, 0, opts, tracker.scalars)


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
    args = parser.parse_args()
    features, labels = make_classification(
        args.samples, 64, n_informative=32, n_classes=10, random_state=0
    )
    x, y = torch.tensor(features, dtype=torch.float32), torch.tensor(labels)
    tracker = Tracker(
        Path(tempfile.mkdtemp(prefix="overhead-tb-")),
        Console(file=open(os.devnull, "w")),  # noqa: SIM115
    )
    variants = {
        "plain": lambda: plain_epoch(x, y),
        "dltrain": lambda: dltrain_epoch(TensorDataset(x, y), tracker),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, epoch in variants.items():
            begin = time.perf_counter()
            epoch()
            times[name].append(time.perf_counter() - begin)
            print(f"repeat {repeat + 1}: {name:<8} {times[name][-1]:6.3f} s", flush=True)
    plain, ours = (statistics.median(times[n]) for n in ("plain", "dltrain"))
    steps = -(-args.samples // BATCH)
    print(f"\n{args.samples} samples, {steps} steps per epoch, {torch.get_num_threads()} threads")
    print("| variant | median s/epoch | µs/step |")
    print("|---|---|---|")
    for name, median in (("plain loop", plain), ("dltrain", ours)):
        print(f"| {name} | {median:.3f} | {1e6 * median / steps:.0f} |")
    pairs = [d / p for d, p in zip(times["dltrain"], times["plain"], strict=True)]
    print(
        f"dltrain / plain: {ours / plain:.3f}x (median of per-repeat ratios: "
        f"{statistics.median(pairs):.3f}x; the machine's drift cancels within a repeat)"
    )
    first, total = startup(max(3, args.repeats // 2))
    print(f"dltrain start-up: first step after {first:.2f} s; a 1-epoch default job {total:.2f} s")


if __name__ == "__main__":
    main()
