"""Synthetic datasets from the classic curriculum, generated from a seed."""

from __future__ import annotations

import numpy as np

from dltrain.data.arrays import Arrays, array_dataset
from dltrain.errors import ConfigError


def _positive(**values: float) -> None:
    bad = [f"dataset option '{k}' must be positive, got {v}" for k, v in values.items() if v <= 0]
    if bad:
        raise ConfigError(bad)


@array_dataset("line", task="regression", val_fraction=0.2, test_fraction=0.2, stratify=False)
def line(
    weight: float = 0.3,
    bias: float = 0.5,
    start: float = 0.0,
    end: float = 1.0,
    step: float = 0.02,
    noise: float = 0.0,
    seed: int = 0,
) -> Arrays:
    """Points on y = weight * x + bias for x in [start, end) (optionally with Gaussian noise)."""
    _positive(step=step)
    x = np.arange(start, end, step, dtype=np.float64)[:, None]
    y = weight * x + bias + np.random.default_rng(seed).normal(0.0, noise, x.shape)
    return Arrays(x, y, "regression", feature_names=["x"])


@array_dataset("quadratic", task="regression", stratify=False)
def quadratic(
    n_samples: int = 100, low: float = -3.0, high: float = 3.0, noise: float = 0.1, seed: int = 0
) -> Arrays:
    """y = 2 + x + 2x^2 + N(0, noise^2), x uniform in [low, high]."""
    _positive(n_samples=n_samples)
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=(n_samples, 1))
    y = 2 + x + 2 * x**2 + rng.normal(0.0, noise, size=x.shape)
    return Arrays(x, y, "regression", feature_names=["x"])


def _blobs_task(centers: int = 2, **_: object) -> str:
    return "binary" if centers == 2 else "multiclass"


@array_dataset("blobs", task=_blobs_task)
def blobs(
    n_samples: int = 1000,
    n_features: int = 2,
    centers: int = 2,
    cluster_std: float = 1.0,
    seed: int = 101,
) -> Arrays:
    """Gaussian blobs (sklearn make_blobs); binary for 2 centers, multiclass otherwise."""
    from sklearn.datasets import make_blobs  # slow to import: only when the data is made

    _positive(n_samples=n_samples, n_features=n_features, centers=centers, cluster_std=cluster_std)
    if centers < 2:
        raise ConfigError(f"dataset 'blobs' option 'centers' must be at least 2, got {centers}")
    x, y = make_blobs(
        n_samples=n_samples,
        n_features=n_features,
        centers=centers,
        cluster_std=cluster_std,
        random_state=seed,
    )
    return Arrays(x, y, _blobs_task(centers), class_names=[str(c) for c in range(centers)])


@array_dataset("noisy_binary", task="binary")
def noisy_binary(
    n_samples: int = 1000, separation: float = 2.0, std: float = 1.0, seed: int = 0
) -> Arrays:
    """1-D two-class problem: class 0 ~ N(-separation/2, std^2), class 1 ~ N(+separation/2, ...)."""
    _positive(n_samples=n_samples, std=std)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n_samples)
    x = rng.normal((y - 0.5) * separation, std)[:, None]
    return Arrays(x, y, "binary", class_names=["0", "1"], feature_names=["x"])
