"""Checkpoints read from disk: found, verified and checked before anything uses them.

A checkpoint is one dict per file (dltrain.training_state writes it), sealed with a SHA-256
(dltrain.files). Reading one verifies the seal, loads with weights_only=True, then checks the
dict's shape and types. Its config is data: `saved_config` admits plain values only and escapes
interpolations, so nothing in it is ever resolved (no ${oc.env:...}) or instantiated.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from dltrain.data.splits import DataMeta
from dltrain.errors import ConfigError
from dltrain.files import UnreadableFile, kind_of, load_torch, verified_zip
from dltrain.modalities.lookup import MODALITIES, settle_modality

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
    if saved.get("evaluated") is not None:
        if not isinstance(saved["evaluated"], dict):
            raise ConfigError(f"{path}: its evaluated weights are not a state_dict")
        check_weights(saved["evaluated"], path)
    return saved


def evaluated_weights(saved: dict[str, Any]) -> dict[str, Any]:
    """The weights a checkpoint's run validated and tested: averaged ones (EMA, SWA), if any."""
    return saved["evaluated"] if saved.get("evaluated") is not None else saved["model"]


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
        return literal(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    raise ConfigError(f"{path}: its config value {key} is a {type(value).__name__}, not plain data")


def literal(text: str) -> str:
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
    modality = values.get("modality")  # absent from checkpoints saved before it existed
    if modality is not None and not (isinstance(modality, str) and modality in MODALITIES):
        problems.append(f"modality {modality!r} is not one of {', '.join(MODALITIES)}")
    if not isinstance(values.get("split_rule", ""), str | None):
        problems.append("split_rule is not a string")
    if problems:
        raise ConfigError(f"{path}: its data meta is not dltrain's: {'; '.join(problems)}")
    meta = DataMeta.from_dict(values)
    settle_modality(meta, str(path))
    return meta


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


def epochs_problem(saved: dict[str, Any], epochs: Any) -> str | None:
    """Why trainer.epochs=`epochs` cannot end the run that left `saved` (it trained past that
    epoch), or None: a run may stop at fewer epochs than it was set to until it gets there."""
    progress = saved.get("progress")
    started = int(isinstance(progress, dict) and bool(progress.get("samples")))  # mid-epoch
    done = saved["epoch"]
    if not isinstance(epochs, int) or epochs >= done + started:  # not an int: check_config says
        return None
    trained = f"{done} epochs" + (f" and part of epoch {done + 1}" if started else "")
    return (
        f"trainer.epochs={epochs}: the run has trained {trained}, past epoch {epochs} (its "
        f"weights cannot go back); give trainer.epochs >= {done + started}, or start a new run"
    )


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
