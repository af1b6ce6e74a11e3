"""Where the config tree is (conf/ in the wheel, or beside the package in a checkout), the search
path a command composes from (the user's own folders too), and composing a command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from dltrain import run_names  # noqa: F401 - registers dltrain_name, which conf/ names dirs with
from dltrain.errors import ConfigError


def config_dir() -> Path:
    """conf/ inside an installed wheel, else the top-level conf/ of a source checkout."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "conf"


CONF_DIR = config_dir()


@contextmanager
def hydra_context(
    user_dir: str | None = None, primary_dir: str | None = None, job_name: str = "dltrain"
) -> Iterator[None]:
    """Hydra set up with the search path the `dltrain` command itself gets: dltrain's conf/ (or
    `primary_dir`, from --config-path), the user's --config-dir first, installed plugins' conf/.
    """
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.utils import setup_globals

    primary = Path(primary_dir).absolute() if primary_dir else CONF_DIR
    search_path = create_config_search_path(str(primary))
    if user_dir:
        folder = Path(user_dir).absolute()
        if not folder.is_dir():
            raise ConfigError(f"--config-dir: {folder} is not a folder")
        search_path.prepend(provider="command-line", path=f"file://{folder}")
    version.setbase("1.3")
    setup_globals()  # the ${now:...} resolver, as Hydra registers it for a run
    previous = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    Hydra.create_main_hydra2(task_name=job_name, config_search_path=search_path)
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        if previous is not None:
            GlobalHydra.instance().initialize(previous)


def compose_config(*overrides: str, user_dir: str | None = None) -> DictConfig:
    """The config `dltrain <overrides>` would run with (for tests, benchmarks, notebooks)."""
    with hydra_context(user_dir):
        return compose("config", overrides=list(overrides))
