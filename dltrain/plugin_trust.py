"""Which plugins a saved run may import: a run dir names its plugins, the user vouches for them.

A run dir may come from anyone, so the code it names (plugins, `target` components) is imported
only when the user's side vouches for it: the same plugin given on this command line, listed in
the working directory's pyproject.toml, installed (an entry point), or `trust_plugins=true`.
"""

from __future__ import annotations

from collections.abc import Iterable

from omegaconf import DictConfig

from dltrain.errors import ConfigError
from dltrain.plugins import installed, load, module_name, resolve
from dltrain.project import project_plugins
from dltrain.registry import TARGET

TARGET_GROUPS = ("model", "dataset", "loss", "optimizer", "scheduler")


def for_saved_run(cfg: DictConfig, given: Iterable[str], trust: bool) -> list[str]:
    """Import a saved run's recorded plugins if vouched for (else a one-line error); its `target`
    components must name code in those plugins too."""
    recorded = cfg.get("plugins") or []
    if isinstance(recorded, str) or not all(isinstance(p, str) for p in recorded):
        raise ConfigError("the run's config: plugins is not a list of module names or files")
    permitted = load(allowed(list(recorded), given, trust))
    if not trust:
        modules = [module_name(p) for p in permitted]
        for group in TARGET_GROUPS:
            node = cfg.get(group)
            if isinstance(node, DictConfig) and node.get("name") == TARGET:
                _check_target(group, str(node.get(TARGET)), modules)
    return permitted


def allowed(recorded: list[str], given: Iterable[str], trust: bool) -> list[str]:
    """The recorded plugins, once the user's side vouches for each (a plugin is known by the
    module it is imported as); a one-line error naming the others and how to allow them."""
    if trust:
        return recorded
    vouched = [*(resolve(str(p)) for p in given), *project_plugins(), *installed().values()]
    known = {module_name(resolve(p)) for p in vouched}
    if refused := [p for p in recorded if module_name(p) not in known]:
        raise ConfigError(
            f"this run needs the plugins {', '.join(refused)}, which this command does not vouch "
            "for (a run dir may come from anyone): give them again with plugins=[...], list them "
            "in [tool.dltrain] plugins of ./pyproject.toml, or add trust_plugins=true"
        )
    return recorded


def _check_target(group: str, spec: str, modules: list[str]) -> None:
    """A saved `target` may name only code in a vouched-for plugin module."""
    module = spec.partition(":")[0] if ":" in spec else spec.rpartition(".")[0]
    if not any(module == m or module.startswith(f"{m}.") for m in modules):
        raise ConfigError(
            f"this run's {group}.target is {spec}, code this command does not vouch for (a run "
            f"dir may come from anyone): give plugins=[{module}] or add trust_plugins=true"
        )
