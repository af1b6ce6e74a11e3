"""Checkpoints: a run's whole training state as one dict per file, and the checks on reading one.

A checkpoint is written atomically and sealed (dltrain.files); reading one verifies the seal,
loads with weights_only=True, then checks the dict's shape and types before anything uses it.
Its config is data: `saved_config` admits plain values only and escapes interpolations, so
nothing in it is ever resolved (no ${oc.env:...}) or instantiated.
"""

from __future__ import annotations

import math
import os
import random
import re
import stat
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dltrain import __version__
from dltrain.data.splits import DataMeta
from dltrain.files import UnreadableFile, kind_of, load_torch, save_torch, verified_zip
from dltrain.parts import EpochProgress, FitState, Parts
from dltrain.registry import ConfigError

FOR_INFERENCE = {"model": dict, "config": dict, "data_meta": dict}
FOR_TRAINING = {**FOR_INFERENCE, "optimizer": dict, "epoch": int, "step": int, "rng": dict}
MAX_DEPTH = 32  # of a saved config: far beyond any real one
MAX_INPUT_SIZE = 2**31  # values per sample a saved input shape may ask for
TASKS = ("binary", "multiclass", "regression", "reconstruction")
INSTANTIATION_KEYS = {"_target_", "_args_", "_partial_", "_recursive_", "_convert_"}


def load(path: Path) -> Any:
    """A verified PyTorch file's contents; a bad file is a one-line ConfigError."""
    try:
        return load_torch(Path(path))
    except UnreadableFile as e:
        raise ConfigError(str(e)) from None


def load_checkpoint(path: Path, training: bool = False) -> dict[str, Any]:
    """A dltrain checkpoint, checked: the keys inference (or training) needs, with sane types."""
    saved = load(path)
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} holds a {type(saved).__name__}, not a dltrain checkpoint")
    needed = FOR_TRAINING if training else FOR_INFERENCE
    problems = [f"'{k}' missing" for k in needed if k not in saved]
    problems += [
        f"'{k}' should be a {kind.__name__}, not a {type(saved[k]).__name__}"
        for k, kind in needed.items()
        if k in saved and (not isinstance(saved[k], kind) or isinstance(saved[k], bool))
    ]
    if problems:
        what = "training " if training else ""
        raise ConfigError(f"{path} is not a dltrain {what}checkpoint: {'; '.join(problems)}")
    check_weights(saved["model"], path)
    return saved


def check_weights(state: dict[Any, Any], path: Path) -> None:
    """A state_dict must map names to tensors, and floating-point weights must be finite."""
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ConfigError(f"{path}: its model weights are not a state_dict of named tensors")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ConfigError(
                f"{path}: the model weight '{name}' holds NaN or infinite values; use a checkpoint "
                "from before the run diverged"
            )


def saved_config(values: dict[str, Any], path: Path) -> DictConfig:
    """A checkpoint's resolved config as a DictConfig that resolves and instantiates nothing."""
    try:
        return OmegaConf.create(_plain(values, "", path, 0))
    except ConfigError:
        raise
    except Exception as e:  # anything OmegaConf still refuses: the config is not dltrain's
        raise ConfigError(f"{path}: its config cannot be read ({type(e).__name__}: {e})") from None


def _plain(value: Any, key: str, path: Path, depth: int) -> Any:
    """`value` if it is plain config data (strings escaped so OmegaConf reads them literally)."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{path}: its config is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{path}: its config has a key that is not a string at {key or '/'}")
        if depth == 0 and "hydra" in value:
            raise ConfigError(f"{path}: its config key hydra is Hydra's own; a run config has none")
        if found := INSTANTIATION_KEYS & set(value):
            raise ConfigError(
                f"{path}: its config has {min(found)} at {key or 'the top'}; a saved config holds "
                "no instantiation keys (nothing in a run dir is instantiated)"
            )
        return {k: _plain(v, f"{key}.{k}".lstrip("."), path, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{key}[{i}]", path, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, str):
        if value == "???":  # OmegaConf's "missing": an edited config, never a resolved one
            raise ConfigError(f"{path}: its config value {key} is '???' (missing)")
        return _literal(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    raise ConfigError(f"{path}: its config value {key} is a {type(value).__name__}, not plain data")


def _literal(text: str) -> str:
    """`text` escaped so that OmegaConf reads every `${` in it as text, not an interpolation.

    OmegaConf reads 2n+1 backslashes before `${` as n backslashes and a literal `${`.
    """
    return re.sub(r"(\\*)\$\{", lambda m: "\\" * (2 * len(m.group(1)) + 1) + "${", text)


def saved_meta(values: dict[str, Any], path: Path) -> DataMeta:
    """A checkpoint's data meta, its fields checked (they size the model that is rebuilt)."""
    problems = []
    known = {f.name for f in fields(DataMeta)}
    if unknown := sorted(set(values) - known):
        problems.append(f"unknown fields {', '.join(map(str, unknown))}")
    shape = values.get("input_shape")
    if not _ints(shape, 1) or not 1 <= len(shape) <= 4 or math.prod(shape) > MAX_INPUT_SIZE:
        problems.append(f"input_shape {shape!r} is not 1 to 4 positive sizes")
    if values.get("task") not in TASKS:
        problems.append(f"task {values.get('task')!r} is not one of {', '.join(TASKS)}")
    for key in ("num_classes", "num_targets"):
        if values.get(key) is not None and not _ints([values[key]], 1):
            problems.append(f"{key} {values[key]!r} is not a positive whole number")
    for key in ("class_names", "feature_names", "vocab"):
        names = values.get(key)
        if names is not None and not (
            isinstance(names, list) and all(isinstance(n, str) for n in names)
        ):
            problems.append(f"{key} is not a list of strings")
    if not isinstance(values.get("preprocessing", {}), dict):
        problems.append("preprocessing is not a dict")
    if problems:
        raise ConfigError(f"{path}: its data meta is not dltrain's: {'; '.join(problems)}")
    return DataMeta.from_dict(values)


def _ints(values: Any, low: int) -> bool:
    """Whether `values` is a list of whole numbers (not bools) of at least `low`."""
    return isinstance(values, list | tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values
    )


def find(target: str | Path, name: str) -> Path:
    """A checkpoint file given itself or by its run dir (whose checkpoints/<name> it means)."""
    path = Path(target).expanduser()
    try:
        if not path.is_dir():
            if not path.exists():
                raise ConfigError(f"{path}: no such run dir or checkpoint file")
            return path  # a file the user named: theirs to choose
        file = path / "checkpoints" / name
        mode = os.lstat(file).st_mode
    except FileNotFoundError:
        raise ConfigError(f"{path} is not a dltrain run dir: no checkpoints/{name}") from None
    except OSError as e:  # a name too long, a folder that may not be entered
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    if stat.S_ISLNK(mode):  # dltrain never links there: the run dir was edited
        raise ConfigError(f"{file} is a symbolic link; a run dir's checkpoints are files")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{file} is {kind_of(mode)}, not a checkpoint file")
    return file


def resume_path(target: str | Path) -> Path:
    """The checkpoint to resume from: the file itself, or a run dir's checkpoints/last.pt.

    The run goes on in the folder above its checkpoints/ (not wherever a link points).
    """
    try:
        path = find(target, "last.pt").absolute()
    except ConfigError as e:
        raise ConfigError(f"resume: {e}") from None
    if path.parent.name != "checkpoints":
        raise ConfigError(f"resume: {path} is not in the checkpoints/ folder of a run dir")
    return path


def load_for_resume(path: Path) -> dict[str, Any]:
    """The training checkpoint at `path`; if it is damaged, the error names the newest intact."""
    try:
        return load_checkpoint(path, training=True)
    except ConfigError as e:
        intact = newest_intact(path.parent, but=path)
        hint = (
            f"; the newest intact checkpoint is {intact}: dltrain resume={intact}" if intact else ""
        )
        raise ConfigError(f"resume: {e}{hint}") from None


def newest_intact(folder: Path, but: Path) -> Path | None:
    """The most recently written checkpoint in `folder` (other than `but`) whose seal holds."""
    candidates = sorted(
        (p for p in folder.glob("*.pt") if p.name != but.name and not p.is_symlink()),
        key=lambda p: p.stat().st_mtime_ns,
        reverse=True,
    )
    for candidate in candidates:
        try:
            verified_zip(candidate, candidate.read_bytes())
            return candidate
        except (UnreadableFile, OSError):
            continue
    return None


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


def save_training_state(parts: Parts, state: FitState, name: str, keep: int = 0) -> None:
    """Write everything training needs to go on (checkpoints/<name>), atomically.

    With `keep` > 0 the file is also kept as step-<step>.pt, the newest `keep` of those stay.
    Only rank 0 writes (every rank holds the same state).
    """
    if not parts.world.main:
        return
    early_stopping = parts.regs.get("early_stopping")
    schedule, scaler = parts.opts.schedule, parts.opts.scaler
    folder = parts.run_dir / "checkpoints"
    parts.tracker.flush()  # what was logged up to this step survives a kill, as the weights do
    save_torch(
        {
            "model": parts.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": schedule.scheduler.state_dict() if schedule else None,
            "scaler": scaler.state_dict() if scaler else None,
            "epoch": state.epoch,  # completed epochs
            "step": state.step,
            "progress": asdict(state.progress),  # of the epoch under way, if mid-epoch
            "batches": parts.batches["train"].state_dict(),  # its order and position
            "best": {
                "monitor": parts.trainer.monitor,
                "mode": parts.trainer.monitor_mode,
                "value": state.best_value,
                "epoch": state.best_epoch,
                "metrics": state.best_metrics,
            },
            "last_metrics": state.last_metrics,
            "loss_reference": parts.opts.divergence.reference,
            "early_stopping": early_stopping.state_dict() if early_stopping else None,
            "rng": rng_states(),
            "config": OmegaConf.to_container(parts.cfg, resolve=True),
            "data_meta": parts.data.meta.to_dict(),
            "world_size": parts.world.size,  # informative: any number of ranks may resume
            "dltrain_version": __version__,
        },
        folder / name,
    )
    if keep > 0:
        kept = folder / f"step-{state.step:08d}.pt"
        kept.unlink(missing_ok=True)
        os.link(folder / name, kept)  # the same file under a second name: no second write
        for old in sorted(folder.glob("step-*.pt"))[:-keep]:
            old.unlink()


def restore_training_state(
    parts: Parts, state: FitState, saved: dict[str, Any], path: Path
) -> None:
    """Put a run back where a checkpoint left it, RNGs and data order too; one line if it can't."""
    try:
        _restore(parts, state, saved)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ConfigError(
            f"resume: {path} does not fit the run its config builds ({type(e).__name__}: {reason})"
        ) from None


def _restore(parts: Parts, state: FitState, saved: dict[str, Any]) -> None:
    parts.model.load_state_dict(saved["model"])
    parts.optimizer.load_state_dict(saved["optimizer"])
    if parts.opts.schedule is not None and saved["scheduler"] is not None:
        parts.opts.schedule.scheduler.load_state_dict(saved["scheduler"])
    if parts.opts.scaler is not None and saved["scaler"] is not None:
        parts.opts.scaler.load_state_dict(saved["scaler"])
    if (early_stopping := parts.regs.get("early_stopping")) and saved["early_stopping"]:
        early_stopping.load_state_dict(saved["early_stopping"])
    best = saved["best"]
    state.epoch, state.step = saved["epoch"], saved["step"]
    if state.epoch < 0 or state.step < 0:
        raise ValueError(f"epoch {state.epoch} and step {state.step} must not be negative")
    state.best_value, state.best_epoch = best["value"], best["epoch"]
    state.best_metrics, state.last_metrics = best.get("metrics", {}), saved.get("last_metrics", {})
    state.progress = EpochProgress(**saved.get("progress", {}))
    reference = saved.get("loss_reference")
    parts.opts.divergence.reference = reference if isinstance(reference, float) else None
    if "batches" in saved:
        parts.batches["train"].load_state_dict(saved["batches"])
    set_rng_states(saved["rng"])
    if not all(math.isfinite(v) for v in (state.progress.loss_sum, state.progress.window_sum)):
        raise ValueError("the saved loss sums are not finite")
