"""Where the config tree is (conf/ in the wheel, or beside the package in a checkout), and
composing a command line into the config it would run with."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig


def config_dir() -> Path:
    """conf/ inside an installed wheel, else the top-level conf/ of a source checkout."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "conf"


CONF_DIR = config_dir()


def compose_config(*overrides: str) -> DictConfig:
    """The config `dltrain <overrides>` would run with (for tests, benchmarks, notebooks)."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))
