"""Checks of a command line before Hydra runs it: every job of a sweep, all problems at once.

Group options and keys get did-you-mean suggestions, values are checked by config.check_config,
and the folder the run dir goes in must be writable, all before any run dir is made.
"""

from __future__ import annotations

import copy
import errno
import functools
import tempfile

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dltrain import run_composition
from dltrain.command_names import (
    group_options,
    message,
    search_path,
    unknown_key,
    unknown_options,
    use_searchpath,
)
from dltrain.errors import ConfigError
from dltrain.launcher_env import node_rank
from dltrain.run_dirs import RUN_MARKERS, SWEEP_MARKERS, holds_run

_DRY_RUN: list[bool] = []  # whether each job of the command checked last is a dry run


def problems(overrides: list[str], multirun: bool, config_name: str) -> list[str]:
    """All problems of every job the command line would run, before any run dir is made.

    Runs inside the caller's Hydra context (dltrain.composition.hydra_context).
    """
    parser = OverridesParser.create()
    run_composition.forget()  # the check and the claim of the dir read one composition
    _DRY_RUN.clear()
    use_searchpath(overrides)
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as e:
        return [message(e)]
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        return [
            f"{s}: sweeping over several values needs --multirun (-m); a list is written key=[a,b]"
            for s in sweeps
        ]
    jobs = BasicSweeper.split_arguments(parsed, None)[0] if multirun else [overrides]
    found: list[str] = []
    for job in jobs:
        found += _job_problems(parser, list(job), config_name, whole=not multirun)
    if not found:
        found += _output_problems(list(jobs[0]), multirun, config_name)
    return found


def dry_run() -> bool:
    """Whether every job of the command checked last (`problems`) is a dry run."""
    return bool(_DRY_RUN) and all(_DRY_RUN)


def named_output(overrides: list[str], key: str) -> bool:
    """Whether the command line names the run (or sweep) dir itself."""
    return any(o.partition("=")[0].lstrip("+") in (key, "resume_sweep") for o in overrides)


def _output_problems(overrides: list[str], multirun: bool, config_name: str) -> list[str]:
    """Whether the run (or sweep) dir can be made: its nearest existing folder takes a new one.

    A folder named on purpose must not hold a run already (its files would mix with the new).
    """
    found = run_composition.output_dir(overrides, multirun, config_name)
    if found is None:
        return []
    key, target = found
    existing = target
    try:
        existing = next(p for p in (target, *target.parents) if p.exists())
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder")
        tempfile.TemporaryDirectory(dir=existing).cleanup()  # what the run will do there
    except OSError as e:
        return [
            f"{key}: cannot create {target}: {existing} {e.strerror}. Give a writable folder: "
            f"{key}=<folder>"
        ]
    markers = SWEEP_MARKERS if multirun else RUN_MARKERS
    again = any(o.startswith("resume_sweep=") for o in overrides) or node_rank() > 0
    if named_output(overrides, key) and not again and (held := holds_run(target, markers)):
        how = "resume_sweep" if multirun else "resume"
        return [
            f"{key}: {target} already holds a run ({held}); give another folder, or "
            f"continue that run with {how}={target}"
        ]
    return []


def _job_problems(
    parser: OverridesParser, overrides: list[str], config_name: str, whole: bool
) -> list[str]:
    """The problems of one job; `whole`: a single run, composed whole (as Hydra will) if it can."""
    from dltrain import plugins
    from dltrain.config import check_config

    group_overrides, key_overrides, problems = [], [], []
    for override in parser.parse_overrides(overrides):
        key = override.key_or_group
        choices = group_options(key)
        if _left_to_hydra(override):
            group_overrides.append(override.input_line)
        elif choices:
            bad = unknown_options(key, override.value())
            problems += bad
            group_overrides += [] if bad else [override.input_line]
        else:
            key_overrides.append(override)
    try:
        cfg = _run_config(overrides, config_name) if whole and not problems else None
        if cfg is None:
            cfg = _by_parts(group_overrides, key_overrides, config_name, problems)
        plugins.for_run(cfg)  # their registrations count in the checks below
        _DRY_RUN.append(bool(OmegaConf.select(cfg, "trainer.dry_run", default=False)))
        # Check the values too, leaving out what is already reported, so all come out at once.
        check_config(cfg)
    except ConfigError as e:
        problems += e.problems
    except (HydraException, OmegaConfBaseException) as e:
        problems.append(message(e))
    return problems


def _run_config(overrides: list[str], config_name: str) -> DictConfig | None:
    """A single run's config composed whole, Hydra's part left out; None if Hydra refuses it
    (then the parts are checked one by one, so that every problem is named at once)."""
    try:
        cfg = run_composition.whole(overrides, False, config_name)
    except (HydraException, OmegaConfBaseException, OSError):  # OSError: a name too long
        return None
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _by_parts(
    group_overrides: list[str], key_overrides: list[Override], config_name: str, problems: list[str]
) -> DictConfig:
    """The config of the group choices, composed once per sweep, with each key=value applied
    as Hydra would; keys that do not exist are added to `problems`."""
    groups = [o.partition("=")[0] for o in group_overrides]
    if len(set(groups)) == len(groups):  # distinct groups: their order does not matter
        group_overrides.sort()
    base = _composed(config_name, tuple(group_overrides))
    cfg = copy.deepcopy(base)
    for override in key_overrides:
        if unknown := unknown_key(base, override.key_or_group):
            problems.append(unknown)
        else:  # what Hydra does with key=value, without composing again
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
    return cfg


def _composed(config_name: str, group_overrides: tuple[str, ...]) -> DictConfig:
    """The config of these group choices (the jobs of a sweep share most; composing is slow)."""
    return _composed_in(search_path(), config_name, group_overrides)


@functools.lru_cache(maxsize=64)
def _composed_in(
    search_path: tuple[str, ...], config_name: str, group_overrides: tuple[str, ...]
) -> DictConfig:
    return compose(config_name, overrides=list(group_overrides))


def _left_to_hydra(override: Override) -> bool:
    """Additions, deletions, package moves and Hydra's own settings: Hydra judges these."""
    adds_or_deletes = override.is_add() or override.is_force_add() or override.is_delete()
    return (
        adds_or_deletes or override.package is not None or override.key_or_group.startswith("hydra")
    )
