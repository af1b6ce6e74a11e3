"""Tests compose the REAL conf/ tree with tiny overrides."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dltrain.cli import CONF_DIR

# Small and fast, but the real code paths.
FAST = ["trainer.epochs=2", "trainer.seed=0", "trainer.device=cpu"]


def compose_config(*overrides: str) -> DictConfig:
    """The config `dltrain <overrides>` would run with."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    return compose_config
