"""A single command's whole config, composed once: the check reads it, the run-dir claim reads
where it goes, and Hydra runs it instead of composing it twice more.

Hydra composes a run's config once to read its hydra.mode and once to run it. The pre-run check
composed the same command line already (with Hydra's own part), so Hydra is handed that config,
changed as the run-dir claim changed the command line: the claimed dir, and the overrides Hydra
records. Anything else (another command line, a sweep) is composed by Hydra as before.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dltrain.command_names import search_path

# The command being run (one per process): (search path, overrides, multirun, config name) ->
_OUTPUT: dict[tuple, tuple[str, Path] | None] = {}  # where its run (or sweep) dir goes
_COMPOSED: dict[tuple[str, ...], DictConfig] = {}  # a single run's config, by its overrides


def output_dir(overrides: list[str], multirun: bool, config_name: str) -> tuple[str, Path] | None:
    """(the Hydra key, the folder) the run or sweep dir would be; None if Hydra must judge it."""
    command = (search_path(), tuple(overrides), multirun, config_name)
    if command not in _OUTPUT:
        try:
            whole(overrides, multirun, config_name)
        except (HydraException, OmegaConfBaseException):
            _OUTPUT[command] = None  # a setting Hydra resolves only when it runs: Hydra judges it
    return _OUTPUT[command]


def forget() -> None:
    """A new command line is checked: nothing composed before is its."""
    _OUTPUT.clear()
    _COMPOSED.clear()


def whole(overrides: list[str], multirun: bool, config_name: str) -> DictConfig:
    """The command's config with Hydra's own, composed as Hydra will; kept (see module doc)."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    folder = Path(str(OmegaConf.select(cfg, key))).absolute()
    _OUTPUT[(search_path(), tuple(overrides), multirun, config_name)] = key, folder
    if not multirun:
        _COMPOSED[tuple(overrides)] = copy.deepcopy(cfg)
    return cfg


@contextmanager
def handed_to_hydra(overrides: list[str], removed: set[str], added: str) -> Iterator[None]:
    """Hydra runs the config composed for `overrides`, whose run dir the claim pinned: it took
    `removed` off the command line and put `added` (`hydra.run.dir=<claimed>`) at its end."""
    composed = _COMPOSED.get(tuple(overrides))
    if composed is None:
        yield
        return
    from hydra._internal.hydra import Hydra
    from hydra.core.utils import configure_log

    final = [*(o for o in overrides if o not in removed), added, "hydra.mode=RUN"]
    get_mode, compose_config = Hydra.get_mode, Hydra.compose_config

    def composed_once(self: Any, config_name: Any, overrides: list[str], run_mode: Any, **how: Any):
        if run_mode != RunMode.RUN or list(overrides) != final:
            return compose_config(self, config_name, overrides, run_mode, **how)
        cfg = pinned(composed, removed, added)
        if how.get("with_log_configuration"):
            configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
        return cfg

    Hydra.get_mode = lambda self, config_name, overrides: composed.hydra.mode  # type: ignore[method-assign]
    Hydra.compose_config = composed_once  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.get_mode, Hydra.compose_config = get_mode, compose_config  # type: ignore[method-assign]


def pinned(composed: DictConfig, removed: set[str], added: str) -> DictConfig:
    """`composed` as Hydra composes it with `removed` left out and `added` + hydra.mode=RUN."""
    cfg = copy.deepcopy(composed)
    override = OverridesParser.create().parse_override(added)  # read as Hydra reads it
    with open_dict(cfg):
        kept = [o for o in cfg.hydra.overrides.hydra if o not in removed]
        cfg.hydra.overrides.hydra = [*kept, added, "hydra.mode=RUN"]
        OmegaConf.update(cfg, override.key_or_group, override.value())
        cfg.hydra.mode = RunMode.RUN
    return cfg
