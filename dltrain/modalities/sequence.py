"""Sequences: (time steps, features) inputs, such as MNIST rows or windows of a signal.

Prediction from files is refused: no file format for sequences has been agreed on. Also the
modality of any other shape that no other modality claims (see lookup.decide_modality).
"""

from __future__ import annotations

from pathlib import Path

from dltrain.data.splits import DataMeta
from dltrain.errors import ConfigError
from dltrain.modalities.modality import Inputs, Modality
from dltrain.modalities.restandardize import saved_statistics


def refuse_files(path: Path, meta: DataMeta, text_column: str) -> Inputs:
    """No reader: a ConfigError naming the inputs prediction does read."""
    raise ConfigError(
        f"prediction from files is not supported for inputs shaped {tuple(meta.input_shape)} "
        "(sequence datasets); only images, tables, flat features and text"
    )


# Array datasets of sequences may be standardised (dltrain.data.splits.array_splits).
SEQUENCE = Modality(
    name="sequence", read=refuse_files, converters={"standardize": saved_statistics}
)
