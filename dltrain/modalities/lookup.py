"""Every modality by name, and the one place that tells which one a dataset's meta describes.

A run's build step stores the name in `DataMeta.modality` (a dataset may set it itself), and
checkpoints carry it; checkpoints from before the field existed get it decided when read.
Adding a modality: its module in this package, and one line in MODALITIES.
"""

from __future__ import annotations

from dltrain.data.splits import DataMeta
from dltrain.errors import ConfigError, did_you_mean
from dltrain.modalities.features import FEATURES
from dltrain.modalities.image import IMAGE
from dltrain.modalities.modality import Modality
from dltrain.modalities.sequence import SEQUENCE
from dltrain.modalities.table import TABLE
from dltrain.modalities.text import TEXT

MODALITIES: dict[str, Modality] = {m.name: m for m in (IMAGE, SEQUENCE, TEXT, TABLE, FEATURES)}


def decide_modality(meta: DataMeta) -> str:
    """The modality a meta describes, from its vocabulary, input shape and preprocessing."""
    if meta.vocab:
        return "text"
    if len(meta.input_shape) == 3:
        return "image"
    if "tabular" in meta.preprocessing:
        return "table"
    if len(meta.input_shape) == 1:
        return "features"
    return "sequence"  # (steps, features), and any other shape: nothing is read from files


def settle_modality(meta: DataMeta, source: str) -> None:
    """Fill `meta.modality` when the dataset left it unset; ConfigError for an unknown name."""
    meta.modality = known(meta.modality or decide_modality(meta), source).name


def modality_of(meta: DataMeta) -> Modality:
    """The modality that owns a dataset's inputs (decided here for a meta that names none)."""
    return known(meta.modality or decide_modality(meta), "data meta")


def known(name: object, source: str) -> Modality:
    """The modality called `name`; ConfigError naming the known ones otherwise."""
    if not isinstance(name, str) or name not in MODALITIES:
        raise ConfigError(
            f"{source}: modality {name!r} is not one of {', '.join(MODALITIES)}."
            f"{did_you_mean(str(name), MODALITIES)}"
        )
    return MODALITIES[name]
