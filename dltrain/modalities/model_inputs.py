"""Whether a model reads the inputs a dataset gives, known before any data is loaded.

A model declares what it reads (ModelInfo.input), a dataset the modality of its inputs
(DatasetInfo.modality); flat models take any. `model=cnn dataset=digits` fails up front.
"""

from __future__ import annotations

from typing import Any

from dltrain.registry import DATASETS, MODELS, TARGET

# A model's input -> the modality its data must have (flat models take any).
NEEDS = {"image": "image", "sequence": "sequence", "tokens": "text"}
SAID = {"image": "images", "sequence": "sequences", "text": "text", "features": "flat features"}


def expected_modality(dataset: str, options: dict[str, Any]) -> str | None:
    """The modality of a dataset's inputs if known from its options alone."""
    modality = DATASETS.info(dataset).modality
    if callable(modality):
        try:
            return modality(**options)
        except (TypeError, ValueError):
            return None
    return modality


def input_problems(
    model: str, dataset: str, options: dict[str, Any], task: str | None
) -> list[str]:
    """The problem, if any, of `model` reading what `dataset` gives (for a `task` dataset)."""
    needs = NEEDS.get(MODELS.info(model).input)
    gives = expected_modality(dataset, options)
    if model == TARGET or needs is None or gives is None or needs == gives:
        return []
    choices = [
        f"model={n}"
        for n in MODELS.names()
        if n != TARGET
        and NEEDS.get(MODELS.info(n).input, gives) == gives
        and (task is None or task in MODELS.info(n).tasks)
    ]
    return [
        f"model={model}: needs {SAID[needs]}, but dataset '{dataset}' gives "
        f"{SAID.get(gives, f'{gives} rows')}. Choose one of: {', '.join(choices)}"
    ]
