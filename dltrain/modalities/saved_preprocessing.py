"""A rebuilt dataset's inputs made what a run's saved preprocessing gives them, or refused.

Evaluating a run rebuilds its dataset, maybe from other files or with other options, and the
statistics fitted on the rebuilt train split can differ from the ones the model learnt with. The
saved preprocessing wins: its modality converts what it can (restandardised features and table
columns; text gets the saved tokenizer through `rebuild_options`), image normalisation and
augmentation are applied per batch from it anyway. Anything else that differs (one-hot
categories, fill values, classes, input shape) cannot be undone: a ConfigError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dltrain.data.splits import DataMeta, DataSplits
from dltrain.errors import ConfigError
from dltrain.modalities.lookup import modality_of
from dltrain.modalities.modality import cannot_convert

PER_BATCH = ("normalize", "augment")  # applied from the saved preprocessing while batching


def rebuild_options(dataset: str, saved: DataMeta, folder: Path) -> dict[str, Any]:
    """Dataset options that make the rebuilt dataset encode as the run did (files in `folder`)."""
    return modality_of(saved).rebuild_options(dataset, saved, folder)


def match_saved(data: DataSplits, saved: DataMeta) -> None:
    """Re-encode the splits' inputs with the saved preprocessing; ConfigError where impossible."""
    _check_shape(data.meta, saved)
    converters = modality_of(saved).converters
    new, old = data.meta.preprocessing, saved.preprocessing
    problems = []
    for key in sorted((set(new) | set(old)) - set(PER_BATCH)):
        if new.get(key) == old.get(key):
            continue
        convert = converters.get(key)
        problem = convert(data, new.get(key), old.get(key)) if convert else cannot_convert(key)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(problems)
    data.meta.preprocessing = dict(old)
    data.meta.modality = saved.modality


def _check_shape(new: DataMeta, old: DataMeta) -> None:
    """The classes and the input shape must be the run's: the model was built for them."""
    problems = []
    if (new.class_names, new.num_classes) != (old.class_names, old.num_classes):
        problems.append(
            f"the rebuilt dataset has classes {new.class_names or new.num_classes}, the run "
            f"{old.class_names or old.num_classes}; the model predicts the run's classes only"
        )
    if tuple(new.input_shape) != tuple(old.input_shape):
        problems.append(
            f"the rebuilt dataset's inputs are shaped {tuple(new.input_shape)}, the model's "
            f"{tuple(old.input_shape)}; keep the dataset options that set the shape as they were"
        )
    if problems:
        raise ConfigError(problems)
