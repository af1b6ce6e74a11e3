"""Installed dltrain plugins bring their config folders: `pip install dltrain-x` adds model=x.

A package that declares a `dltrain.plugins` entry point and ships a `conf/` folder beside its
`__init__.py` (conf/model/x.yaml, ...) has that folder on every dltrain command's search path.
Found without importing the package: `dltrain --help` stays fast.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import entry_points
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DltrainPluginsSearchPath(SearchPathPlugin):
    """Appends each installed dltrain plugin's conf/ folder to Hydra's config search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        """Add `file://<package>/conf` for every plugin package that has one."""
        for ep in entry_points(group="dltrain.plugins"):
            if folder := plugin_conf(ep.value.partition(":")[0]):
                search_path.append(provider=f"dltrain-plugin-{ep.name}", path=f"file://{folder}")


def plugin_conf(module: str) -> Path | None:
    """The conf/ folder of the package that holds `module`, if it has one."""
    try:
        spec = importlib.util.find_spec(module.partition(".")[0])
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    found = [Path(p) / "conf" for p in locations if (Path(p) / "conf").is_dir()]
    return found[0] if found else None
