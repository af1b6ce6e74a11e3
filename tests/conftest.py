"""Tests compose the REAL conf/ tree with tiny overrides."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from omegaconf import DictConfig

from dltrain.composition import compose_config

# Small and fast, but the real code paths.
FAST = ["trainer.epochs=2", "trainer.seed=0", "trainer.device=cpu"]


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    return compose_config
