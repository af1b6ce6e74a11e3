"""Checks of the groups selected as lists (regularization=[...], callbacks=[...], logger=[...]):
each entry binds its options (and builds, where that has no effects); then the combinations."""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from dltrain.callback import Callback
from dltrain.errors import ConfigError
from dltrain.registry import CALLBACKS, LOGGERS, MODELS, REGULARIZERS, TARGET, import_target

BACKEND_METHODS = ("scalars", "text", "hparams", "figure", "flush", "close")  # tracking.backend
BUILT_IN_CALLBACKS = ("schedule", "checkpoints", "step_checkpoints", "visuals", "early_stopping")


def regularization_problems(
    selected: dict[str, Any], model: str, model_options: dict[str, Any]
) -> list[str]:
    problems = []
    for name, kwargs in selected.items():
        path, kwargs = f"regularization.{name}", kwargs or {}
        if found := REGULARIZERS.check(name, kwargs, path=path):
            problems += found
            continue
        try:
            REGULARIZERS.build(name, kwargs)
        except ConfigError as e:
            problems += e.problems
    if (
        "dropout" in selected
        and model in MODELS
        and not MODELS.accepts(model, "dropout", model_options)
    ):
        with_dropout = [  # the message names them all: only now is every model imported
            n for n in MODELS.names() if n != TARGET and MODELS.accepts(n, "dropout")
        ]
        problems.append(
            f"regularization=dropout: model '{model}' has no dropout option; "
            f"models with one: {', '.join(with_dropout)}"
        )
    return problems


def callback_problems(selected: dict[str, Any], epochs: Any) -> list[str]:
    """Each selected callback binds its options and builds (on a stand-in model)."""
    problems: list[str] = []
    epochs = epochs if isinstance(epochs, int) and epochs >= 1 else 1  # the trainer check's
    for name, kwargs in selected.items():
        path, kwargs = f"callbacks.{name}", kwargs or {}
        if name in BUILT_IN_CALLBACKS:
            problems.append(f"{path}: the name is dltrain's own; register yours under another")
            continue
        if found := CALLBACKS.check(name, kwargs, path=path):
            problems += found
            continue
        try:
            built = CALLBACKS.build(name, kwargs, model=torch.nn.Linear(1, 1), epochs=epochs)
        except ConfigError as e:
            problems += e.problems
            continue
        if not isinstance(built, Callback):
            problems.append(f"{path}: builds a {type(built).__name__}, not a dltrain Callback")
    if {"ema", "swa"} <= set(selected):
        problems.append("callbacks: ema and swa both average the weights; choose one")
    return problems


def logger_problems(selected: dict[str, Any]) -> list[str]:
    """Each selected logger binds its options, and the package it needs is installed."""
    problems: list[str] = []
    for name, kwargs in selected.items():
        if found := LOGGERS.check(name, kwargs or {}, path=f"logger.{name}"):
            problems += found
            continue
        if name == TARGET:
            target = import_target((kwargs or {}).get("target"), "logger.target.target")
            if not all(callable(getattr(target, m, None)) for m in BACKEND_METHODS):
                problems.append(
                    f"logger.target: {target!r} is no logger backend (subclass "
                    "dltrain.tracking.backend.Backend)"
                )
            continue
        info = LOGGERS.info(name)
        if info.requires and importlib.util.find_spec(info.requires) is None:
            install = f"pip install 'dltrain[{info.extra}]'" if info.extra else "install it"
            problems.append(
                f"logger={name}: needs the {info.requires} package, which is not installed "
                f"here: {install}"
            )
    return problems


def label_problems(tags: Any, notes: Any) -> list[str]:
    """tags: a list of short strings; notes: one string (or null)."""
    problems = []
    if not isinstance(tags, list) or not all(isinstance(t, str | int) for t in tags):
        problems.append(f"tags: a list of words, e.g. tags=[baseline,small]; got {tags!r}")
    if notes is not None and not isinstance(notes, str):
        problems.append(f"notes: one string, e.g. notes='why this run'; got {notes!r}")
    return problems
