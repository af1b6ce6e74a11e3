"""The `trainer` group: how a run is executed (its defaults are conf/trainer/default.yaml's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from dltrain.cpu import usable_cpus  # noqa: F401  (config checks import it from here)
from dltrain.errors import ConfigError, did_you_mean

PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
# Where a run trains: a resumed run takes these from its new command, not from its checkpoint.
WHERE_TO_TRAIN = (
    "trainer.device",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.threads",
)
# Options whose `auto` is resolved when a run is built; the run's config records the choice.
RESOLVED_AUTO = ("trainer.precision", "trainer.channels_last")


@dataclass
class TrainerOptions:
    """The `trainer` group: how a run is executed."""

    epochs: int = 20
    batch_size: int = 64
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    seed: int | None = None
    deterministic: bool = False
    log_every_n_steps: int = 10
    num_workers: int = 0
    monitor: str = "val/loss"
    monitor_mode: Literal["min", "max"] = "min"
    precision: str | int = "auto"  # auto | 32 | bf16-mixed | 16-mixed (CUDA only); read as text
    channels_last: bool | str = "auto"  # auto: with bf16 autocast, for conv nets
    threads: int | None = None  # torch's CPU threads; null: this process's share of its CPUs
    compile: bool = False
    histogram_every_n_epochs: int = 0  # weight histograms in TensorBoard; 0: never
    checkpoint_every_n_steps: int = 0  # mid-epoch checkpoints (last.pt); 0: at epoch ends only
    keep_checkpoints: int = 0  # also keep the newest K as checkpoints/step-<step>.pt
    dry_run: bool = False  # one training and one evaluation batch, a report, nothing saved
    detect_anomaly: bool = False  # autograd anomaly detection: slow, names the op that made NaN
    devices: int = 1  # processes per node (one per GPU); more than one trains with DDP
    num_nodes: int = 1  # machines; each runs `devices` processes
    strategy: Literal["auto", "ddp"] = "auto"  # auto: DDP whenever more than one process trains
    oversubscribe: bool = False  # allow more CPU processes (devices) than this process's CPUs
    divergence_threshold: float = 1e4  # a loss this many times the first step's has diverged
    accumulate_grad_batches: int = 1  # batches whose gradients make one optimiser step
    keep_best_k: int = 0  # also keep the K best epochs by `monitor` as checkpoints/epoch<N>_...pt
    limit_train_batches: int | float = 1.0  # batches per epoch: a count, or a fraction (1.0: all)
    limit_val_batches: int | float = 1.0
    limit_test_batches: int | float = 1.0
    overfit_batches: int | float = 0  # train (and judge) on the same first batches: no shuffle
    max_steps: int | None = None  # stop after this many optimiser steps (null: epochs decide)
    val_every_n_epochs: int = 1  # validate every N epochs (and after the last)

    def __post_init__(self) -> None:
        minimums = {
            "epochs": 1,
            "batch_size": 1,
            "log_every_n_steps": 1,
            "num_workers": 0,
            "histogram_every_n_epochs": 0,
            "checkpoint_every_n_steps": 0,
            "keep_checkpoints": 0,
            "devices": 1,
            "num_nodes": 1,
            "accumulate_grad_batches": 1,
            "keep_best_k": 0,
            "val_every_n_epochs": 1,
        }
        problems = [
            f"trainer.{key}: must be at least {low}, got {getattr(self, key)}"
            for key, low in minimums.items()
            if getattr(self, key) < low
        ]
        if self.seed is not None and not 0 <= self.seed < 2**32:
            problems.append(f"trainer.seed: must be in [0, 2**32 - 1] or null, got {self.seed}")
        if self.divergence_threshold < 0:
            problems.append(
                "trainer.divergence_threshold: must be >= 0 (0: stop on non-finite losses only), "
                f"got {self.divergence_threshold}"
            )
        if self.threads is not None and self.threads < 1:
            problems.append(
                f"trainer.threads: must be at least 1 or null (the CPUs this process may use), "
                f"got {self.threads}"
            )
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"trainer.max_steps: must be at least 1 or null, got {self.max_steps}")
        problems += self._subset_problems()
        self.precision = str(self.precision)
        if self.precision not in (*PRECISIONS, "auto"):
            choices = (*PRECISIONS, "auto")
            problems.append(
                f"trainer.precision: must be one of {', '.join(choices)}, got "
                f"'{self.precision}'.{did_you_mean(self.precision, choices)}"
            )
        if self.channels_last not in (True, False, "auto"):
            problems.append(
                f"trainer.channels_last: must be true, false or auto, got {self.channels_last!r}"
            )
        if problems:
            raise ConfigError(problems)

    def _subset_problems(self) -> list[str]:
        """limit_*_batches and overfit_batches: a count >= 1 or a fraction in (0, 1]."""
        problems = []
        subsets = {k: getattr(self, k) for k in SUBSETS}
        for key, value in subsets.items():
            if key == "overfit_batches" and value == 0:
                continue  # off
            whole = isinstance(value, int) and value >= 1
            if not (whole or isinstance(value, float) and 0 < value <= 1):
                off = " (0: off)" if key == "overfit_batches" else ""
                problems.append(
                    f"trainer.{key}: a number of batches (1, 2, ...) or a fraction in (0, 1] "
                    f"of them{off}, got {value}"
                )
        if self.overfit_batches and self.limit_train_batches != 1.0:
            problems.append(
                "trainer.overfit_batches and trainer.limit_train_batches: choose one (overfit "
                "takes the same first batches every epoch, limit a fresh shuffled few)"
            )
        return problems


SUBSETS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches")


def subset_size(option: int | float, batches: int) -> int | None:
    """The batches a subset option leaves of `batches` (None: all of them)."""
    if isinstance(option, float):
        return None if option >= 1 else max(1, int(batches * option))
    return min(option, batches)
