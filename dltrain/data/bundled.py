"""scikit-learn's bundled datasets: shipped inside the package, no download needed."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
from pathlib import Path

import numpy as np

from dltrain.data.arrays import Arrays, array_dataset
from dltrain.errors import ConfigError

_LOADERS = {
    "iris": ("load_iris", "multiclass"),
    "wine": ("load_wine", "multiclass"),
    "breast_cancer": ("load_breast_cancer", "binary"),
    "diabetes": ("load_diabetes", "regression"),
}


def _bundled(name: str, loader: str, task: str) -> None:
    @array_dataset(name, task=task, standardize=True)
    def make() -> Arrays:
        # scikit-learn is slow to import: only when the data is made, not to check a config
        bunch = getattr(importlib.import_module("sklearn.datasets"), loader)()
        names = getattr(bunch, "target_names", None)
        return Arrays(
            bunch.data,
            bunch.target,
            task,
            class_names=None if names is None else [str(n) for n in names],
            feature_names=[str(n) for n in bunch.feature_names],
        )

    make.__doc__ = f"scikit-learn's bundled {name} dataset ({task})."


for _name, (_loader, _task) in _LOADERS.items():
    _bundled(_name, _loader, _task)


@array_dataset("digits", task="multiclass", standardize=True)
def digits() -> Arrays:
    """scikit-learn's bundled 8x8 digits (multiclass), read from its file: the default job's data,
    without the second that importing scikit-learn takes."""
    with gzip.open(_sklearn_data_file("digits.csv.gz"), "rt") as lines:
        data = np.loadtxt(lines, delimiter=",")
    return Arrays(
        data[:, :-1],
        data[:, -1].astype(int),
        "multiclass",
        class_names=[str(n) for n in range(10)],
        feature_names=[f"pixel_{row}_{col}" for row in range(8) for col in range(8)],
    )


def _sklearn_data_file(name: str) -> Path:
    """A data file shipped in scikit-learn, found without importing it."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the bundled datasets come with scikit-learn: pip install scikit-learn")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
