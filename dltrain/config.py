"""Validate a composed config all at once, before any data is loaded."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from dltrain.data.paths import said_relative
from dltrain.data.splits import check_fractions
from dltrain.device import select_device
from dltrain.errors import ConfigError, did_you_mean
from dltrain.list_groups import (
    callback_problems,
    label_problems,
    logger_problems,
    regularization_problems,
)
from dltrain.metrics import metric_names
from dltrain.modalities.model_inputs import input_problems
from dltrain.registry import (
    DATASETS,
    INITIALIZERS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    SCHEDULERS,
    TARGET,
    TASKS,
    Registry,
)
from dltrain.signatures import check_kwargs
from dltrain.trainer_options import TrainerOptions, usable_cpus

REGISTRIES = {
    "model": MODELS,
    "dataset": DATASETS,
    "optimizer": OPTIMIZERS,
    "loss": LOSSES,
    "scheduler": SCHEDULERS,
}
NOT_BUILDER_OPTIONS = ("name", "init")


def options(node: DictConfig | dict) -> dict[str, Any]:
    """A group's builder kwargs: the node as plain Python, without `name` and `init`."""
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return {k: v for k, v in (plain or {}).items() if k not in NOT_BUILDER_OPTIONS}


def check_config(cfg: DictConfig, check_files: bool = True) -> None:
    """Raise one ConfigError listing every problem in the composed config.

    `check_files`: also look at the data files the dataset names (not for a saved run's config,
    whose paths eval/predict/export do not follow).
    """
    problems: list[str] = []
    valid = []  # groups whose name and options bind to their builder
    for group, registry in REGISTRIES.items():
        node = cfg.get(group)
        if node is None or "name" not in node:
            problems.append(f"{group}: missing; choose one of {', '.join(registry.names())}")
            continue
        found = registry.check(node.name, options(node), path=group)
        problems += found
        valid += [] if found else [group]
    init = cfg.model.get("init") or {"name": "default"}
    problems += INITIALIZERS.check(init.get("name"), options(init), path="model.init")
    problems += _trainer_problems(cfg)
    problems += regularization_problems(
        options(cfg.get("regularization") or {}), cfg.model.name, options(cfg.model)
    )
    problems += callback_problems(options(cfg.get("callbacks") or {}), cfg.trainer.get("epochs"))
    problems += logger_problems(options(cfg.get("logger") or {}))
    problems += label_problems(_plain(cfg.get("tags", [])), _plain(cfg.get("notes")))
    found, file_task = _trial_build_problems(cfg, valid, check_files)
    problems += found
    named = {g for g, r in REGISTRIES.items() if g in cfg and cfg[g].get("name") in r}
    data_task = (expected_task(cfg.dataset) or file_task) if "dataset" in named else None
    if {"model", "dataset"} <= named:
        dataset = cfg.dataset.name
        problems += input_problems(cfg.model.name, dataset, options(cfg.dataset), data_task)
    if {"model", "dataset", "loss"} <= named and (task := run_task(cfg, data_task)):
        problems += task_problems(cfg, task)
    if problems:
        dataset = cfg.get("dataset")
        raise ConfigError(said_relative(problems, options(dataset)) if dataset else problems)


def _trial_build_problems(
    cfg: DictConfig, valid: list[str], check_files: bool
) -> tuple[list[str], str | None]:
    """Build the parts that need no data (with a stand-in parameter) to catch bad values early;
    also the task the dataset's files show, if its check looked at them."""
    problems, file_task = [], None
    if "loss" in valid:
        problems += _build_problems(partial(LOSSES.build, cfg.loss.name, options(cfg.loss)))
    check = DATASETS.info(cfg.dataset.name).check if "dataset" in valid else None
    if check and check_files:
        try:  # its files, cheaply
            shown = check(**options(cfg.dataset))
            file_task = shown if shown in TASKS else None
        except ConfigError as e:
            problems += e.problems
    elif "dataset" in valid and {"val_fraction", "test_fraction"} <= set(cfg.dataset):
        fractions = (cfg.dataset.val_fraction, cfg.dataset.test_fraction)
        problems += _build_problems(partial(check_fractions, *fractions))
    return problems + _optimisation_problems(cfg, valid), file_task


def _optimisation_problems(cfg: DictConfig, valid: list[str]) -> list[str]:
    """The optimizer and scheduler built for a stand-in parameter."""
    if "optimizer" not in valid:
        return []
    params = [torch.nn.Parameter(torch.zeros(1))]
    try:
        optimizer = OPTIMIZERS.build(cfg.optimizer.name, options(cfg.optimizer), params=params)
    except ConfigError as e:
        return e.problems
    problems = []
    if "scheduler" in valid:
        epochs = cfg.trainer.get("epochs")  # a wrong value is the trainer check's to report
        epochs = epochs if isinstance(epochs, int) and epochs >= 1 else 1
        problems += _build_problems(
            partial(
                SCHEDULERS.build,
                cfg.scheduler.name,
                options(cfg.scheduler),
                optimizer=optimizer,
                epochs=epochs,
                steps_per_epoch=1,
            )
        )
    return problems


def _build_problems(build: Callable[[], Any]) -> list[str]:
    """Problems that only building finds (value ranges, combinations)."""
    try:
        build()
    except ConfigError as e:
        return e.problems
    return []


def _trainer_problems(cfg: DictConfig) -> list[str]:
    kwargs = options(cfg.trainer)
    problems = check_kwargs("trainer", "trainer", TrainerOptions, kwargs)
    return problems or _build_problems(lambda: _check_trainer(TrainerOptions(**kwargs)))


def _check_trainer(trainer: TrainerOptions) -> None:
    device = select_device(trainer.device)
    if trainer.precision == "16-mixed" and device.type != "cuda":
        raise ConfigError(
            f"trainer.precision: 16-mixed needs a CUDA device (this run would use {device.type}); "
            "use trainer.precision=bf16-mixed or 32"
        )
    if device.type == "cuda" and trainer.devices > torch.cuda.device_count():
        raise ConfigError(
            f"trainer.devices: {trainer.devices} processes need as many GPUs on each node; this "
            f"one has {torch.cuda.device_count()}"
        )
    cpus = usable_cpus()
    if device.type == "cpu" and trainer.devices > cpus and not trainer.oversubscribe:
        raise ConfigError(
            f"trainer.devices: {trainer.devices} processes on this machine, but this process may "
            f"use {cpus} CPU(s); use at most trainer.devices={cpus}, or set "
            "trainer.oversubscribe=true to start them anyway"
        )
    if device.type == "mps" and trainer.devices * trainer.num_nodes > 1:
        raise ConfigError("trainer.devices: several processes train on cuda or cpu, not mps")


def expected_task(dataset: DictConfig) -> str | None:
    """The dataset's task if it is known from its config alone (None: known after loading)."""
    task = DATASETS.info(dataset.name).task
    if callable(task):
        try:
            return task(**options(dataset))
        except (TypeError, ValueError):
            return None
    return task


def run_task(cfg: DictConfig, data_task: str | None) -> str | None:
    """The run's task: the model's own when it has one (an autoencoder reconstructs its input)."""
    return MODELS.info(cfg.model.name).task or data_task


def fitting(registry: Registry, task: str) -> list[str]:
    """Names in a registry whose `tasks` info includes `task`."""
    return [n for n in registry.names() if n != TARGET and task in registry.info(n).tasks]


def task_problems(cfg: DictConfig, task: str) -> list[str]:
    """Whether the model, loss and monitored metrics fit the dataset's task."""
    problems = []
    for group, registry in (("model", MODELS), ("loss", LOSSES)):
        name = cfg[group].name
        # a target: the user knows; only the selected entry is looked at (importing one module)
        if name != TARGET and task not in registry.info(name).tasks:
            choices = ", ".join(f"{group}={n}" for n in fitting(registry, task))
            problems.append(
                f"{group}={name}: does not fit dataset '{cfg.dataset.name}' ({task} task). "
                f"Choose one of: {choices}"
            )
    early_stopping = (cfg.get("regularization") or {}).get("early_stopping")
    monitors = {"trainer.monitor": cfg.trainer.monitor}
    for path, node in (
        ("regularization.early_stopping", early_stopping),
        ("scheduler", cfg.scheduler),
    ):
        if node is not None and "monitor" in node:
            monitors[f"{path}.monitor"] = node.monitor
    choices = [f"val/{m}" for m in metric_names(task)] + ["train/loss"]
    for path, monitor in monitors.items():
        if monitor not in choices:
            problems.append(
                f"{path}: cannot monitor '{monitor}' for a {task} task."
                f"{did_you_mean(monitor, choices)} Choose one of: {', '.join(choices)}"
            )
        elif monitor.startswith("val/") and cfg.dataset.get("val_fraction", None) == 0:
            problems.append(f"{path}: monitors '{monitor}' but dataset.val_fraction is 0")
    return problems


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
