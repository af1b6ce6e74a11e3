"""scikit-learn's bundled datasets: shipped inside the package, no download needed."""

from __future__ import annotations

from collections.abc import Callable

from sklearn import datasets as skd

from dltrain.data.arrays import Arrays, array_dataset

_LOADERS = {
    "digits": (skd.load_digits, "multiclass"),
    "iris": (skd.load_iris, "multiclass"),
    "wine": (skd.load_wine, "multiclass"),
    "breast_cancer": (skd.load_breast_cancer, "binary"),
    "diabetes": (skd.load_diabetes, "regression"),
}


def _bundled(name: str, loader: Callable, task: str) -> None:
    @array_dataset(name, task=task, standardize=True)
    def make() -> Arrays:
        bunch = loader()
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
