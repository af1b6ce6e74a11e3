"""Checkpoints: best.pt when the monitored metric improves, the k best epochs, last.pt, and
last.pt every N steps. Every one holds the whole training state (resume from any)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from dltrain import training_state
from dltrain.built_run import BuiltRun, FitState
from dltrain.callback import Callback
from dltrain.trainer_options import TrainerOptions

log = logging.getLogger(__name__)
TOP_K_FILE = re.compile(r"epoch(\d{4,})_[A-Za-z0-9_]+_[-+.0-9e]+\.pt")


def improved(state: FitState, metrics: dict[str, float], trainer: TrainerOptions) -> bool:
    """Whether this epoch is the best so far (the latest is best when nothing is monitored)."""
    value = metrics.get(trainer.monitor)
    if value is None or state.best_value is None:
        return True
    return value < state.best_value if trainer.monitor_mode == "min" else value > state.best_value


def top_k_name(epoch: int, monitor: str, value: float) -> str:
    """checkpoints/epoch0007_val_loss_0.21342.pt: the epoch and its monitored value."""
    return f"epoch{epoch:04d}_{monitor.replace('/', '_')}_{value:.5g}.pt"


class EpochCheckpoints(Callback):
    """After each judged epoch: best.pt if it improved on trainer.monitor, and its own file if it
    is among the keep_best_k best; after every epoch: last.pt (and step-<step>.pt copies)."""

    def __init__(self, keep_best_k: int = 0, keep_last: int = 0):
        self.keep_best_k, self.keep_last = keep_best_k, keep_last
        self.best: list[dict[str, Any]] = []  # the k best epochs, best first: file, value, epoch
        self._improved, self._new, self._dropped = False, "", []  # this epoch's, till it ends

    def on_fit_start(self, run: BuiltRun, state: FitState) -> None:
        """A resumed run trains again the epochs after its checkpoint: their files go."""
        if not (self.keep_best_k and run.world.main):
            return
        kept = {entry["file"] for entry in self.best}
        for path in (run.run_dir / "checkpoints").glob("epoch*.pt"):
            match = TOP_K_FILE.fullmatch(path.name)
            if match and int(match[1]) > state.epoch and path.name not in kept:
                log.info(f"removing {path.name}: epoch {int(match[1])} is trained again")
                path.unlink(missing_ok=True)

    def on_validation_end(self, run: BuiltRun, state: FitState, metrics: dict[str, float]) -> None:
        trainer = run.trainer
        self._improved = improved(state, metrics, trainer)
        if self._improved:
            state.best_value, state.best_epoch = metrics.get(trainer.monitor), state.epoch
            state.best_metrics = metrics
        value = metrics.get(trainer.monitor)
        if self.keep_best_k and value is not None and math.isfinite(value):
            self._rank(state.epoch, trainer, float(value))

    def _rank(self, epoch: int, trainer: TrainerOptions, value: float) -> None:
        entry = {"file": top_k_name(epoch, trainer.monitor, value), "value": value, "epoch": epoch}
        sign = 1 if trainer.monitor_mode == "min" else -1
        ranked = sorted([*self.best, entry], key=lambda e: (sign * e["value"], e["epoch"]))
        self.best = ranked[: self.keep_best_k]
        self._new = entry["file"] if entry in self.best else ""
        self._dropped = [e["file"] for e in ranked[self.keep_best_k :] if e is not entry]

    def on_epoch_end(self, run: BuiltRun, state: FitState, metrics: dict[str, float]) -> None:
        """In an order that a kill at any point leaves consistent: best.pt, the top-k file, then
        last.pt (what a resume reads); files that left the top k go last."""
        folder = run.run_dir / "checkpoints"
        if self._improved:
            training_state.save(run, state, "best.pt")
        if self._new and run.world.main:
            if self._improved:
                training_state.link(folder, "best.pt", self._new)
            else:
                training_state.save(run, state, self._new)
        training_state.save(run, state, "last.pt", self.keep_last)
        if run.world.main:
            for name in self._dropped:
                (folder / name).unlink(missing_ok=True)
        self._improved, self._new, self._dropped = False, "", []

    def state_dict(self) -> dict[str, Any]:
        return {"best": [dict(entry) for entry in self.best]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """The saved top k; a file name that is not one this callback writes is refused (a
        checkpoint must not make a resume delete other files)."""
        best = []
        for entry in state.get("best", []):
            name, value, epoch = entry["file"], entry["value"], entry["epoch"]
            if not (isinstance(name, str) and TOP_K_FILE.fullmatch(name)):
                raise ValueError(f"the top-k checkpoint name {str(name)[:80]!r} is not one")
            if not (isinstance(value, float) and isinstance(epoch, int)):
                raise ValueError("the top-k checkpoints' values must be a float and an int")
            best.append({"file": name, "value": value, "epoch": epoch})
        self.best = best[: self.keep_best_k]


class StepCheckpoints(Callback):
    """last.pt every `every` optimiser steps inside an epoch (and its step-<step>.pt copy)."""

    def __init__(self, every: int, keep_last: int = 0):
        self.every, self.keep_last = every, keep_last

    def on_step_end(self, run: BuiltRun, state: FitState) -> None:
        if state.step % self.every == 0 and not run.batches["train"].exhausted:
            training_state.save(run, state, "last.pt", self.keep_last)
