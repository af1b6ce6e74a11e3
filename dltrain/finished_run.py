"""A finished run rebuilt from its checkpoint, for dltrain-eval, -predict and -export.

A run dir stands for its checkpoints/best.pt, the weights the run tested. The model is rebuilt
from the checkpoint's own resolved config and data meta (both checked first), so a run works
wherever it is moved, and inputs go through the preprocessing saved with it (never refitted).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dltrain import checkpoints, plugin_trust
from dltrain.build.model import build_model
from dltrain.build.step_context import auto_precision
from dltrain.config import check_config, options
from dltrain.data.files import data_root
from dltrain.data.paths import path_keys
from dltrain.data.splits import DataMeta
from dltrain.data.transforms import BatchTransform
from dltrain.device import select_device
from dltrain.errors import ConfigError, did_you_mean
from dltrain.regularization import build_regularizers
from dltrain.step import StepContext
from dltrain.trainer_options import PRECISIONS, TrainerOptions

# Model options naming files (pretrained vectors, hub weights): the checkpoint's weights replace
# them, and the files need not exist where the run is used.
FILE_OPTIONS = ("vectors", "weights")
RUNTIME_TRAINER = ("device", "batch_size", "num_workers", "precision")  # overridable here


@dataclass
class FinishedRun:
    """A checkpoint's model (eval mode, on its device), config, data meta and origin."""

    model: nn.Module
    cfg: DictConfig
    meta: DataMeta
    context: StepContext
    path: Path  # the checkpoint file
    run_dir: Path  # where outputs go by default
    epoch: int | None
    notes: list[str] = field(default_factory=list)  # data paths of the checkpoint not followed


def load_run(
    source: Path | str,
    overrides: Sequence[str] = (),
    given_plugins: Sequence[str] = (),
    trust_plugins: bool = False,
) -> FinishedRun:
    """Load a checkpoint safely and rebuild its model; `overrides` are `group.key=value`.

    The saved config is checked as a new command's would be, with the data paths it names
    replaced by those the user gives (see `trusted_paths`); the plugins it names are imported
    only when the user vouches for them (`given_plugins`, project, installed, or trusted).
    """
    path = checkpoints.find(source, "best.pt").absolute()  # the weights the run tested
    saved = checkpoints.load_checkpoint(path)
    cfg = checkpoints.saved_config(saved["config"], path)
    plugin_trust.for_saved_run(cfg, given_plugins, trust_plugins)
    notes = trusted_paths(cfg, overrides)
    cfg = apply_overrides(cfg, overrides)
    if not any(o.lstrip("+").startswith("trainer.precision=") for o in overrides):
        float32_off_cuda(cfg)
    for key in ("trainer.devices", "trainer.num_nodes"):  # how it trained is not asked here
        OmegaConf.update(cfg, key, 1, force_add=True)
    check_config(cfg, check_files=False)
    meta = checkpoints.saved_meta(saved["data_meta"], path)
    context = step_context(cfg, meta)
    weights = checkpoints.evaluated_weights(saved)
    model = rebuild_model(cfg, meta, weights).to(context.device)
    if cfg.trainer.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    epoch = saved.get("epoch") if isinstance(saved.get("epoch"), int) else None
    return FinishedRun(model, cfg, meta, context, path, run_dir, epoch, notes)


def float32_off_cuda(cfg: DictConfig) -> None:
    """A run trained in 16-mixed (float16 autocast needs CUDA) runs in float32 off CUDA.

    So a GPU run evaluates, predicts and exports on a CPU with `trainer.device=cpu` alone.
    """
    if str(cfg.trainer.get("precision")) != "16-mixed":
        return
    try:
        device = select_device(str(cfg.trainer.get("device", "auto")))
    except ConfigError:
        return  # check_config names the device that is missing
    if device.type != "cuda":
        cfg.trainer.precision = 32


def trusted_paths(cfg: DictConfig, overrides: Sequence[str]) -> list[str]:
    """Drop the data paths a checkpoint names outside the data root unless given again.

    A run dir may come from anyone: its config must not make dltrain read a file the user did
    not name (`../../etc/passwd` as a CSV, a folder of crafted files). Paths under the data root
    ($DLTRAIN_DATA_DIR, else ~/.cache/dltrain) are the user's own; others are replaced by the
    default lookup there. Returns one note per path dropped.
    """
    given = {o.partition("=")[0].lstrip("+") for o in overrides}
    root = os.path.realpath(data_root(None))
    notes = []
    for key in path_keys(cfg.dataset):
        value = cfg.dataset.get(key)
        if value is None or f"dataset.{key}" in given:
            continue
        real = os.path.realpath(Path(str(value)).expanduser())
        if os.path.commonpath([real, root]) != root:
            cfg.dataset[key] = None
            notes.append(
                f"the run's dataset.{key} ({value}) is not read from its checkpoint; give "
                f"dataset.{key}={value} to read it (paths under the data root {root} are read)"
            )
    return notes


def rebuild_model(cfg: DictConfig, meta: DataMeta, state_dict: dict[str, Any]) -> nn.Module:
    """The model the config builds, with the saved weights, in eval mode."""
    cfg = copy.deepcopy(cfg)
    for key in FILE_OPTIONS:
        if cfg.model.get(key) is not None:
            cfg.model[key] = None
    regularizers = build_regularizers(options(cfg.get("regularization") or {}))
    model = build_model(cfg, meta, regularizers)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        reason = " ".join(line.strip() for line in str(e).strip().splitlines()[1:3])
        raise ConfigError(
            f"the saved weights do not fit the model its config builds: {reason[:300]}"
        ) from None
    return model.eval()


def step_context(cfg: DictConfig, meta: DataMeta) -> StepContext:
    """How batches run, as in training: device, saved input transform, precision."""
    known = {f.name for f in fields(TrainerOptions)}
    trainer = TrainerOptions(**{k: v for k, v in options(cfg.trainer).items() if k in known})
    device = select_device(trainer.device)
    if trainer.precision == "auto":  # given to eval/predict/export: what a run here would use
        trainer.precision = auto_precision(device)[0]
    return StepContext(
        device=device,
        transform=BatchTransform.for_data(meta.preprocessing, trainer.channels_last),
        amp_dtype=PRECISIONS[trainer.precision],
        reconstruct=meta.task == "reconstruction",
    )


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """`dataset.key=value` / `trainer.device=cpu` on the saved config; unknown keys refused."""
    problems = []
    for item in overrides:
        key = item.partition("=")[0].lstrip("+")
        group, _, leaf = key.partition(".")
        if group == "trainer" and leaf not in RUNTIME_TRAINER:
            allowed = ", ".join(f"trainer.{k}" for k in RUNTIME_TRAINER)
            problems.append(f"{key}: only {allowed} can be changed for a trained model")
        elif group not in ("dataset", "trainer") or not leaf:
            problems.append(f"{key}: only dataset.* and trainer.* keys can be overridden")
        elif not item.startswith("+") and leaf not in cfg[group]:
            choices = list(cfg[group].keys())
            problems.append(
                f"{key}: no such key in {group}.{did_you_mean(leaf, choices, f'{group}.')} "
                f"Keys there: {', '.join(map(str, choices))} (to add one: +{key}=...)"
            )
    if problems:
        raise ConfigError(problems)
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
