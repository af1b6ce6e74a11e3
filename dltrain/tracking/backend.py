"""One place a run's records go (TensorBoard, CSV, MLflow, W&B, yours): the Backend interface,
and what every backend is told about the run it logs (RunInfo).

A backend is a class registered in dltrain.registry.LOGGERS and selected with
`logger=[tensorboard,mlflow]`; its options come from conf/logger/<name>.yaml. It overrides what
it can show; the rest does nothing. The Tracker calls it only on rank 0, catches what it raises
(the run goes on without it, and metrics.json says what was not logged), and calls close() once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from dltrain import run_files
from dltrain.files import save_json_atomic

STATE_FILE = "loggers.json"  # each backend's ids, so that a resumed run continues the same run
SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # what an id read back from a run dir may be


@dataclass(frozen=True)
class RunInfo:
    """What a backend knows of the run from the start."""

    run_dir: Path
    name: str  # the run's display name: its overrides in a sweep, else the run dir's name
    config: dict[str, Any]  # the resolved config, plain
    yaml: str  # the same as YAML text (what config.yaml holds)
    params: dict[str, Any]  # the config flattened (`optimizer.lr`), swept keys first
    swept: tuple[str, ...] = ()  # the keys a sweep varies (empty for a single run)
    tags: tuple[str, ...] = ()
    notes: str = ""
    resumed_step: int | None = None  # a resumed run: the step of its checkpoint
    sweep_dir: Path | None = None  # a sweep job: the sweep's folder (one per sweep)
    job: int | None = None  # a sweep job: its number
    extra: dict[str, Any] = field(default_factory=dict)  # room for what a backend records

    def saved_id(self, backend: str) -> str | None:
        """The id `backend` saved in this run dir (a resumed run), if a safe one is there."""
        if self.resumed_step is None:
            return None
        saved = run_files.read_json_object(self.run_dir / STATE_FILE)[0] or {}
        value = saved.get(backend)
        return value if isinstance(value, str) and SAFE_ID.fullmatch(value) else None

    def save_id(self, backend: str, value: str) -> None:
        """Keep `backend`'s run id in the run dir, for a resume to continue that run."""
        saved = run_files.read_json_object(self.run_dir / STATE_FILE)[0] or {}
        save_json_atomic({**saved, backend: value}, self.run_dir / STATE_FILE)


class Backend:
    """Override what the backend can show. Values are plain: floats, strings, a matplotlib
    figure (the Tracker closes it), a float image tensor (C, H, W) in [0, 1]."""

    def scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        """Slash-namespaced scalars (`train/loss`, `val/acc`, `lr`) at a global step, logged while
        training `epoch` (1-based; 0 before the first)."""

    def text(self, tag: str, markdown: str, step: int) -> None:
        """Markdown text (the config, the confusion matrix, the profiler's table)."""

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """At the end: the run's flattened config (swept keys first) and its final metrics."""

    def image(self, tag: str, grid: Any, step: int) -> None:
        """One image (a float tensor (C, H, W) in [0, 1]: a grid of samples)."""

    def figure(self, tag: str, fig: Any, step: int) -> None:
        """A matplotlib figure; do not close it."""

    def histograms(self, model: nn.Module, step: int) -> None:
        """A histogram of every parameter (TensorBoard)."""

    def embedding(
        self, tag: str, codes: Any, metadata: dict[str, list[str]], images: Any | None, step: int
    ) -> None:
        """Codes with metadata columns by name, the label first (and thumbnails), for an
        embedding projector (TensorBoard)."""

    def artifacts(self, paths: list[Path]) -> None:
        """At the end: the run's files worth keeping (config, metrics, weights, figures)."""

    def flush(self) -> None:
        """Make what was logged durable (called with every checkpoint)."""

    def close(self, status: str) -> None:
        """Once, at the end: `status` is metrics.json's (completed, failed, interrupted, ...)."""


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as `group.key` scalars (lists and nulls as text), as HPARAMS wants them."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value if isinstance(value, bool | int | float | str) else str(value)
    return flat
