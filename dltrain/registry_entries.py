"""What registry entries declare (typed facts the rest of dltrain reads before building), and
how the `target` entry of a registry finds the importable callable its option names."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from dltrain.errors import ConfigError

Task = Literal["binary", "multiclass", "regression", "reconstruction"]


@dataclass(frozen=True)
class NoInfo:
    """Entries of this registry declare nothing beyond their builder."""


@dataclass(frozen=True)
class ModelInfo:
    """What a model declares: the tasks it fits, the task it imposes, and the input it reads."""

    tasks: tuple[Task, ...] = ()
    task: Task | None = None  # its own task whatever the data's (an autoencoder reconstructs)
    input: Literal["flat", "image", "sequence", "tokens"] = "flat"


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset declares before any data is read (so a config is checked up front)."""

    task: Task | Callable[..., Task | None] | None = None  # a function of its options, if it varies
    reads_files: bool = False  # False: made in memory (bundled or generated), never fails to load
    # A cheap look at its files, before a run dir exists; it may return the task they show.
    check: Callable[..., Task | None] | None = None
    # What its inputs are (a dltrain.modalities name, or a function of its options), if known
    # before loading: models reading images, sequences or tokens are checked against it.
    modality: str | Callable[..., str | None] | None = None


@dataclass(frozen=True)
class LossInfo:
    """What a loss declares: the tasks it fits and how many scores the model must give."""

    tasks: tuple[Task, ...] = ()
    outputs: Literal["one", "classes"] = "one"  # classes: one score per class


@dataclass(frozen=True)
class LoggerInfo:
    """What a logger backend needs installed: checked before any run dir is made."""

    requires: str | None = None  # a module that must import (mlflow, wandb)
    extra: str | None = None  # dltrain's optional extra that installs it: pip install 'dltrain[x]'


TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression", "reconstruction")


def import_target(spec: Any, path: str) -> Callable[..., Any]:
    """The callable `module:attr` (or `module.attr`) names; a one-line ConfigError otherwise."""
    example = "e.g. my_pkg.nets:MyNet; its module must be importable (the working directory is)"
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{path}: set it to an importable callable, {example}")
    module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{path}: '{spec}' names no attribute of a module; {example}")
    if os.getcwd() not in sys.path:  # as `python -m` and plugins do
        sys.path.insert(0, os.getcwd())
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise ConfigError(f"{path}: cannot import '{module_name}' ({e})") from None
    except AttributeError:
        raise ConfigError(f"{path}: module '{module_name}' has no '{attr}'") from None
    except Exception as e:  # the module's own code failed on import
        raise ConfigError(
            f"{path}: importing '{module_name}' failed: {type(e).__name__}: {e}"
        ) from None
    if not callable(target):
        raise ConfigError(f"{path}: '{spec}' is a {type(target).__name__}, not a callable")
    try:
        inspect.signature(target)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{path}: '{spec}' has no signature to check options against (a builtin); wrap it "
            "in a Python function or class"
        ) from None
    return target
