"""A run's whole training state <-> one checkpoint dict (what resume needs to go on exactly)."""

from __future__ import annotations

import math
import os
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from dltrain import __version__
from dltrain.built_run import BuiltRun, EpochProgress, FitState
from dltrain.data.splits import other_split_rule
from dltrain.errors import ConfigError
from dltrain.files import save_torch


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in types that weights_only loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what rng_states() captured."""
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(built: BuiltRun, state: FitState, name: str, keep: int = 0) -> None:
    """Write everything training needs to go on (checkpoints/<name>), atomically.

    With `keep` > 0 the file is also kept as step-<step>.pt, the newest `keep` of those stay.
    Only rank 0 writes (every rank holds the same state).
    """
    if not built.world.main:
        return
    folder = built.run_dir / "checkpoints"
    built.tracker.flush()  # what was logged up to this step survives a kill, as the weights do
    save_torch(checkpoint(built, state), folder / name)
    if keep > 0:
        link(folder, name, f"step-{state.step:08d}.pt")
        for old in sorted(folder.glob("step-*.pt"))[:-keep]:
            old.unlink()


def checkpoint(built: BuiltRun, state: FitState) -> dict[str, Any]:
    """The checkpoint of the run as it stands."""
    schedule, scaler = built.context.schedule, built.context.scaler
    evaluated = built.evaluated
    return {
        "model": built.model.state_dict(),
        # what validation judged and eval / predict / export load: averaged weights, if any
        "evaluated": None if evaluated is built.model else evaluated.state_dict(),
        "optimizer": built.optimizer.state_dict(),
        "scheduler": schedule.scheduler.state_dict() if schedule else None,
        "scaler": scaler.state_dict() if scaler else None,
        "epoch": state.epoch,  # completed epochs
        "step": state.step,
        "progress": asdict(state.progress),  # of the epoch under way, if mid-epoch
        "batches": built.batches["train"].state_dict(),  # its order and position
        "best": {
            "monitor": built.trainer.monitor,
            "mode": built.trainer.monitor_mode,
            "value": state.best_value,
            "epoch": state.best_epoch,
            "metrics": state.best_metrics,
        },
        "last_metrics": state.last_metrics,
        "loss_reference": built.context.divergence.reference,
        "callbacks": built.callbacks.state_dict(),  # early stopping, top-k, EMA, ...
        "rng": rng_states(),
        "config": OmegaConf.to_container(built.cfg, resolve=True),
        "data_meta": built.data.meta.to_dict(),
        "world_size": built.world.size,  # informative: any number of ranks may resume
        "dltrain_version": __version__,
    }


def link(folder: Path, existing: str, name: str) -> None:
    """checkpoints/<name> as a second name of checkpoints/<existing>: no second write."""
    (folder / name).unlink(missing_ok=True)
    os.link(folder / existing, folder / name)


def restore(built: BuiltRun, state: FitState, saved: dict[str, Any], path: Path) -> None:
    """Put a run back where a checkpoint left it, RNGs and data order too; one line if it can't."""
    meta = saved.get("data_meta") if isinstance(saved.get("data_meta"), dict) else {}
    if problem := other_split_rule(meta.get("split_rule")):
        raise ConfigError(f"resume: {problem}; start a new run")
    try:
        _restore(built, state, saved)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ConfigError(
            f"resume: {path} does not fit the run its config builds ({type(e).__name__}: {reason})"
        ) from None


def _restore(built: BuiltRun, state: FitState, saved: dict[str, Any]) -> None:
    built.model.load_state_dict(saved["model"])
    built.optimizer.load_state_dict(saved["optimizer"])
    if built.context.schedule is not None and saved["scheduler"] is not None:
        built.context.schedule.scheduler.load_state_dict(saved["scheduler"])
    if built.context.scaler is not None and saved["scaler"] is not None:
        built.context.scaler.load_state_dict(saved["scaler"])
    states = dict(saved.get("callbacks") or {})
    if saved.get("early_stopping") and "early_stopping" not in states:  # dltrain 0.1's place
        states["early_stopping"] = saved["early_stopping"]
    built.callbacks.load_state_dict(states)
    best = saved["best"]
    state.epoch, state.step = saved["epoch"], saved["step"]
    if state.epoch < 0 or state.step < 0:
        raise ValueError(f"epoch {state.epoch} and step {state.step} must not be negative")
    state.best_value, state.best_epoch = best["value"], best["epoch"]
    state.best_metrics, state.last_metrics = best.get("metrics", {}), saved.get("last_metrics", {})
    state.progress = EpochProgress(**saved.get("progress", {}))
    reference = saved.get("loss_reference")
    built.context.divergence.reference = reference if isinstance(reference, float) else None
    if "batches" in saved:
        built.batches["train"].load_state_dict(saved["batches"])
    set_rng_states(saved["rng"])
    if not all(math.isfinite(v) for v in (state.progress.loss_sum, state.progress.window_sum)):
        raise ValueError("the saved loss sums are not finite")
