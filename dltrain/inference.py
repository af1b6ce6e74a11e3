"""dltrain-eval and dltrain-predict: rebuild a trained model from its checkpoint and use it.

A run dir stands for its checkpoints/best.pt, the weights the run tested. The model is rebuilt
from the checkpoint's own resolved config and data meta, so a run works wherever it is moved, and
inputs go through the preprocessing saved with it (never refitted).
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dltrain import checkpoint
from dltrain.arguments import parse_args, print_metrics
from dltrain.config import PRECISIONS, TrainerOptions, check_config, options
from dltrain.data.align import align, saved_tokenizer_options
from dltrain.data.batches import make_batches
from dltrain.data.files import data_root
from dltrain.data.splits import DataMeta
from dltrain.data.transforms import BatchTransform
from dltrain.device import select_device
from dltrain.failures import command
from dltrain.files import save_json_atomic
from dltrain.loop import evaluate
from dltrain.metrics import confusion_matrix
from dltrain.parts import StepOptions
from dltrain.predict import predict_file
from dltrain.registry import DATASETS, LOSSES, ConfigError, did_you_mean
from dltrain.regularization import build_regularizers
from dltrain.train import build_model

SPLITS = ("train", "val", "test")
# Model options naming files (pretrained vectors, hub weights): the checkpoint's weights replace
# them, and the files need not exist where the run is used.
FILE_OPTIONS = ("vectors", "weights")
RUNTIME_TRAINER = ("device", "batch_size", "num_workers", "precision")  # overridable here
PATH_OPTIONS = ("path", "data_dir", "root", "tokenizer_file")  # dataset options naming files


@dataclass
class Loaded:
    """A checkpoint's model (eval mode, on its device), config, data meta and origin."""

    model: nn.Module
    cfg: DictConfig
    meta: DataMeta
    opts: StepOptions
    path: Path  # the checkpoint file
    run_dir: Path  # where outputs go by default
    epoch: int | None
    notes: list[str] = field(default_factory=list)  # data paths of the checkpoint not followed


def load_run(source: Path | str, overrides: Sequence[str] = ()) -> Loaded:
    """Load a checkpoint safely and rebuild its model; `overrides` are `group.key=value`.

    The saved config is checked as a new command's would be, with the data paths it names
    replaced by those the user gives (see `trusted_paths`).
    """
    path = checkpoint.find(source, "best.pt").absolute()  # the weights the run tested
    saved = checkpoint.load_checkpoint(path)
    cfg = checkpoint.saved_config(saved["config"], path)
    notes = trusted_paths(cfg, overrides)
    cfg = apply_overrides(cfg, overrides)
    for key in ("trainer.devices", "trainer.num_nodes"):  # how it trained is not asked here
        OmegaConf.update(cfg, key, 1, force_add=True)
    check_config(cfg, check_files=False)
    meta = checkpoint.saved_meta(saved["data_meta"], path)
    opts = step_options(cfg, meta)
    model = rebuild_model(cfg, meta, saved["model"]).to(opts.device)
    if cfg.trainer.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    epoch = saved.get("epoch") if isinstance(saved.get("epoch"), int) else None
    return Loaded(model, cfg, meta, opts, path, run_dir, epoch, notes)


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
    for key in PATH_OPTIONS:
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
    regs = build_regularizers(options(cfg.get("regularization") or {}))
    model = build_model(cfg, meta, regs)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        reason = " ".join(line.strip() for line in str(e).strip().splitlines()[1:3])
        raise ConfigError(
            f"the saved weights do not fit the model its config builds: {reason[:300]}"
        ) from None
    return model.eval()


def step_options(cfg: DictConfig, meta: DataMeta) -> StepOptions:
    """How batches run, as in training: device, saved input transform, precision."""
    known = {f.name for f in fields(TrainerOptions)}
    trainer = TrainerOptions(**{k: v for k, v in options(cfg.trainer).items() if k in known})
    return StepOptions(
        device=select_device(trainer.device),
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


def evaluate_split(run: Loaded, split: str) -> dict[str, Any]:
    """Metrics of `split` of the rebuilt dataset, fed through the saved preprocessing."""
    if split not in SPLITS:
        hint = did_you_mean(split, SPLITS)
        raise ConfigError(f"split={split}: choose one of {', '.join(SPLITS)}.{hint}")
    cfg, meta = run.cfg, run.meta
    with tempfile.TemporaryDirectory() as folder:
        kwargs = {**options(cfg.dataset), **saved_tokenizer_options(cfg.dataset.name, meta, folder)}
        try:
            data = DATASETS.build(cfg.dataset.name, kwargs)
        except ConfigError as e:  # say which path of the run was not followed, if one was
            if not run.notes:
                raise
            last = f"{e.problems[-1]} ({'; '.join(run.notes)})"
            raise ConfigError([*e.problems[:-1], last]) from None
    align(data, meta)
    sets = {"train": data.train, "val": data.val, "test": data.test}
    if sets[split] is None:
        available = ", ".join(k for k, v in sets.items() if v is not None)
        raise ConfigError(f"split={split}: this dataset has no {split} split; it has {available}")
    trainer = cfg.trainer
    batches = make_batches(
        sets[split], trainer.batch_size, False, 0, trainer.get("num_workers", 0), run.opts.device
    )
    loss_fn = LOSSES.build(cfg.loss.name, options(cfg.loss)).to(run.opts.device)
    metrics, outputs, targets = evaluate(run.model, batches, loss_fn, run.opts, meta.task, split)
    result: dict[str, Any] = {
        "checkpoint": str(run.path),
        "epoch": run.epoch,
        "split": split,
        "samples": len(targets),
        "dataset": options(cfg.dataset),
        "metrics": metrics,
    }
    if meta.task in ("binary", "multiclass"):
        result["confusion_matrix"] = confusion_matrix(outputs, targets, meta.task, meta.num_classes)
    return result


def eval_main(argv: Sequence[str] | None = None) -> None:
    """`dltrain-eval RUN_DIR|CHECKPOINT [split=test] [out=FILE] [dataset.key=value ...]`."""

    def body() -> None:
        usage = (
            "RUN_DIR|CHECKPOINT [split=test] [out=FILE] [dataset.key=value|trainer.key=value ...]"
        )
        source, named, overrides = parse_args(
            sys.argv[1:] if argv is None else argv,
            "dltrain-eval",
            usage,
            {"split": "test", "out": None},
        )
        run = load_run(source, overrides)
        result = evaluate_split(run, named["split"])
        result["overrides"] = overrides
        out = Path(named["out"] or run.run_dir / f"eval_{named['split']}.json")
        title = f"{run.cfg.model.name} on {run.cfg.dataset.name}, {named['split']} split"
        print_metrics(title, result["metrics"])
        save_json_atomic(result, out)
        print(f"wrote {out}")

    command("dltrain-eval", body)


def predict_main(argv: Sequence[str] | None = None) -> None:
    """`dltrain-predict RUN_DIR|CHECKPOINT input=PATH [output=CSV] [text_column=NAME]`."""

    def body() -> None:
        usage = "RUN_DIR|CHECKPOINT input=PATH [output=CSV] [text_column=NAME] [trainer.device=cpu]"
        defaults = {"input": None, "output": None, "text_column": None}
        source, named, overrides = parse_args(
            sys.argv[1:] if argv is None else argv, "dltrain-predict", usage, defaults
        )
        if named["input"] is None:
            raise ConfigError("input=PATH is required: the images, table or text to predict for")
        if bad := [o for o in overrides if not o.lstrip("+").startswith("trainer.")]:
            raise ConfigError(f"{bad[0]}: prediction takes trainer.* overrides only")
        run = load_run(source, overrides)
        output = Path(named["output"] or run.run_dir / "predictions.csv")
        rows = predict_file(run, Path(named["input"]).expanduser(), output, named["text_column"])
        print(f"wrote {rows} predictions to {output}")

    command("dltrain-predict", body)
