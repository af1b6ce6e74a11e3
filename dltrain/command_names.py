"""The names a command line uses, looked up as Hydra would: group options and config keys (with
did-you-mean and other tools' names), and Hydra's own messages as one line."""

from __future__ import annotations

import functools

from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from dltrain.errors import did_you_mean
from dltrain.other_names import dltrain_way

_MISSING = object()
_SEARCHPATH: list[tuple[str, ...]] = [()]  # the command's hydra.searchpath overrides


def use_searchpath(overrides: list[str]) -> None:
    """Group options are looked up with the command's own hydra.searchpath overrides too."""
    _SEARCHPATH[0] = tuple(o for o in overrides if o.lstrip("+").startswith("hydra.searchpath"))


def group_options(group: str) -> list[str]:
    """The options of a config group in the current Hydra context (its search path, and the
    command's hydra.searchpath); none for a name the file system cannot even look up."""
    return _options(search_path(), _SEARCHPATH[0], group)


@functools.lru_cache(maxsize=512)
def _options(search_path: tuple[str, ...], searchpath: tuple[str, ...], group: str) -> list[str]:
    """Cached per search path: the jobs of a sweep (and commands run in one process) share it."""
    loader = GlobalHydra.instance().config_loader()
    try:
        if searchpath:  # the command adds folders: Hydra reads them from the primary config
            return loader.get_group_options(group, config_name="config", overrides=list(searchpath))
        return loader.get_group_options(group)
    except OSError:
        return []


def search_path() -> tuple[str, ...]:
    """Where the current Hydra context looks for configs (a cache key)."""
    sources = GlobalHydra.instance().config_loader().get_sources()
    return tuple(f"{s.provider}:{s.path}" for s in sources)


def unknown_options(group: str, value: object) -> list[str]:
    values = value if isinstance(value, list) else [value]
    problems = []
    for v in (str(v) for v in values if v is not None):
        folder = v.rpartition("/")[0]  # presets in a sub-folder: optimizer=blobs_study/sgd
        options = group_options(f"{group}/{folder}" if folder else group)
        choices = [f"{folder}/{o}" if folder else o for o in options]
        if v not in choices:
            choices = choices or group_options(group)
            hint = dltrain_way(group, v) or did_you_mean(v, choices)
            problems.append(
                f"{group}={v}: no such {group} option.{hint} Available: {', '.join(choices)}"
            )
    return problems


def unknown_key(cfg: DictConfig, key: str) -> str | None:
    if OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING:
        return None
    parent, _, leaf = key.rpartition(".")
    while parent and OmegaConf.select(cfg, parent, default=_MISSING) is _MISSING:
        parent, _, leaf = parent.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    siblings = list(node.keys()) if isinstance(node, DictConfig) else []
    where = f"in {parent}" if parent else "at the top level"
    hint = dltrain_way(key) or did_you_mean(leaf, siblings, prefix=f"{parent}." if parent else "")
    return (
        f"{key}: no such key {where}.{hint} Keys there: {', '.join(map(str, siblings))}. "
        f"(To add a new key: +{key}=...)"
    )


def message(error: Exception) -> str:
    """Hydra's message up to its first blank line or search-path dump, as one line."""
    kept = []
    for line in str(error).strip().splitlines():
        if not line.strip() or line.startswith(("Config search path", "    full_key")):
            break
        kept.append(line.strip())
    return " ".join(kept) or type(error).__name__
