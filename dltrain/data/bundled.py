"""scikit-learn's bundled datasets: shipped inside the package, no download needed."""

from __future__ import annotations

import importlib

from dltrain.data.arrays import Arrays, array_dataset

_LOADERS = {
    "digits": ("load_digits", "multiclass"),
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
