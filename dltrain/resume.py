"""`dltrain resume=<run> [key=value ...]`: the run's own saved config, never its command line.

The checkpoint's resolved config (checked as data, nothing resolved) is the run; the run dir's
.hydra/overrides.yaml is never replayed, so nothing in a run dir can reach Hydra (its callbacks,
`_target_`s, interpolations). The new command line may give trainer.epochs (more, or fewer while
the run has not trained past them) and where to train; any other value must equal the saved one,
and is refused otherwise. Only what the command line gives is compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from dltrain import checkpoints, plugin_trust
from dltrain.command_names import group_options, message, unknown_key, unknown_options
from dltrain.config import check_config
from dltrain.errors import ConfigError
from dltrain.plugins import load
from dltrain.trainer_options import RESOLVED_AUTO, WHERE_TO_TRAIN

CHANGEABLE = ("trainer.epochs", *WHERE_TO_TRAIN)
_MISSING = object()


def resume_config(target: str, overrides: list[str]) -> tuple[DictConfig, Path]:
    """The config to go on with, and the run dir; ConfigError listing every problem at once.

    Runs inside a Hydra context (initialize_config_dir): group options are looked up there.
    """
    path = checkpoints.resume_path(target)
    saved = checkpoints.load_for_resume(path)
    cfg = checkpoints.saved_config(saved["config"], path)
    problems = []
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(message(e)) from None
    given, trust = _plugin_options(parsed)
    load(given)  # the command's own plugins (they vouch for the run's)
    plugin_trust.for_saved_run(cfg, given, trust)  # before the checks: registrations count
    for override in parsed:
        if override.key_or_group not in ("plugins", "trust_plugins"):
            problems += _override_problems(cfg, override)
    if not problems:  # values are checked as a new command's are
        try:
            check_config(cfg)
        except ConfigError as e:
            problems += e.problems
    if not problems and (fewer := checkpoints.epochs_problem(saved, cfg.trainer.epochs)):
        problems.append(fewer)
    if problems:
        raise ConfigError(problems)
    cfg.resume = str(path)
    return cfg, path.parent.parent


def _plugin_options(parsed: list[Any]) -> tuple[list[str], bool]:
    """`plugins=[...]` and `trust_plugins=true` of a resume command: what it vouches for."""
    given, trust = [], False
    for override in parsed:
        value = override.value()
        if override.key_or_group == "plugins":
            given = [str(v) for v in (value if isinstance(value, list) else [value])]
        elif override.key_or_group == "trust_plugins":
            if not isinstance(value, bool):
                raise ConfigError(f"trust_plugins: must be true or false, got {value!r}")
            trust = value
    return given, trust


def _override_problems(cfg: DictConfig, override: Any) -> list[str]:
    """Apply one `key=value` to `cfg` if it may change; else say why not."""
    line, key = override.input_line, override.key_or_group
    allowed = ", ".join(CHANGEABLE)
    if override.is_sweep_override():
        return [f"{line}: resume continues one run; a sweep is continued with -m resume_sweep="]
    if key.startswith("hydra") or override.package is not None or override.type.name != "CHANGE":
        return [f"{line}: a resumed run takes only key=value for existing keys ({allowed})"]
    if group_options(key):  # a group: model=cnn
        unknown = unknown_options(key, override.value())
        current = OmegaConf.select(cfg, f"{key}.name", default=None)
        if unknown or override.value() == current:
            return unknown
        return [f"{line}: a resumed run keeps its {key} ({current}); start a new run for another"]
    if unknown := unknown_key(cfg, key):
        return [unknown]
    value = _value(override.value())
    saved = OmegaConf.to_container(cfg, resolve=True)
    before = OmegaConf.select(OmegaConf.create(saved), key, default=_MISSING)
    if value == "auto" and key in RESOLVED_AUTO:  # the run's config holds what auto chose
        return []
    OmegaConf.update(cfg, key, value, merge=False)
    if key in CHANGEABLE or value == before:
        return []
    try:
        check_config(cfg)  # a wrong value is named as in a new command, before "keeps"
    except ConfigError as e:
        return e.problems
    return [
        f"{line}: a resumed run keeps its settings ({key} is {before!r} in its checkpoint); "
        f"it may change {allowed}"
    ]


def _value(value: Any) -> Any:
    """An override's value with every `${` read as text (as in a saved config)."""
    if isinstance(value, str):
        return checkpoints.literal(value)
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    return value
