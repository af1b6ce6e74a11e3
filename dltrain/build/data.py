"""The run's data: the dataset's splits, its task checked against the model and loss, batches."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from dltrain.config import options, run_task, task_problems
from dltrain.data.batches import make_batches
from dltrain.data.paths import said_relative
from dltrain.data.splits import DataSplits
from dltrain.data.user import as_data_splits
from dltrain.errors import ConfigError
from dltrain.modalities.lookup import settle_modality
from dltrain.registry import DATASETS
from dltrain.trainer_options import TrainerOptions, subset_size
from dltrain.world import World


def build_data(cfg: DictConfig) -> DataSplits:
    """The dataset's splits and modality; its task (or the model's) must fit the model and loss."""
    try:
        built = DATASETS.build(cfg.dataset.name, options(cfg.dataset))
    except ConfigError as e:  # a relative path (it names nothing here) said relative to what
        raise ConfigError(said_relative(e.problems, options(cfg.dataset))) from None
    data = as_data_splits(built, cfg.dataset.name)
    settle_modality(data.meta, f"dataset {cfg.dataset.name}")
    data.meta.task = run_task(cfg, data.meta.task)
    if problems := task_problems(cfg, data.meta.task):
        raise ConfigError(problems)
    return data


def build_batches(
    data: DataSplits, trainer: TrainerOptions, device: torch.device, world: World
) -> dict[str, Any]:
    """A batch iterator per split ("train", and "val"/"test" when present), sharded by rank.

    The debug subsets apply here: limit_*_batches, and overfit_batches (the same first training
    batches every epoch, unshuffled; val and test as many).
    """
    splits = {"train": data.train, "val": data.val, "test": data.test}
    overfit = trainer.overfit_batches
    batches = {
        name: make_batches(
            dataset,
            trainer.batch_size,
            name == "train" and not overfit,
            trainer.seed,
            trainer.num_workers,
            device,
            world.rank,
            world.size,
        )
        for name, dataset in splits.items()
        if dataset is not None
    }
    for name, split in batches.items():
        option = overfit or getattr(trainer, f"limit_{name}_batches")
        split.limit(subset_size(option, len(split)), pad=name == "train" or None)
    return batches
