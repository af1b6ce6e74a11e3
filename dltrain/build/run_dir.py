"""A new (or resumed) run dir's first files, and the tracker that logs into it."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dltrain.build.tracker import build_tracker
from dltrain.data.batches import samples
from dltrain.data.splits import DataSplits
from dltrain.files import save_json_atomic, save_text_atomic
from dltrain.modalities.lookup import modality_of
from dltrain.tracking.tracker import Tracker


def start_run_dir(
    cfg: DictConfig,
    run_dir: Path,
    data: DataSplits,
    console: Console | None,
    resume_step: int | None = None,
) -> Tracker:
    """Write the resolved config (and tokenizer); start the loggers, show the training samples.

    A resumed run continues its loggers' runs, dropping what was logged after `resume_step`.
    """
    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    save_text_atomic(resolved, run_dir / "config.yaml")
    preprocessing = dict(data.meta.preprocessing)  # what new inputs must go through, as here
    if tokenizer := preprocessing.pop("tokenizer", None):
        save_text_atomic(tokenizer, run_dir / "tokenizer.json")
    if preprocessing:
        save_json_atomic(preprocessing, run_dir / "preprocessing.json")
    tracker = build_tracker(cfg, run_dir, console, resume_step)
    if resume_step is not None:
        return tracker
    modality = modality_of(data.meta)
    if modality.shows_images:  # show what the model is fed
        stored = samples(data.train, list(range(min(64, len(data.train)))))
        tracker.images("train/samples", modality.pictures(stored))
    return tracker
