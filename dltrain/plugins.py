"""Your own code: plugins (modules or .py files) whose registrations count like dltrain's own.

A plugin is imported before anything is checked, so its `@MODELS.register(...)`, ... are known.
They come from `plugins=[my_models, ./nets.py]` (on the command line or in the user's YAML; the
working directory is importable, as with `python -m`), from `[tool.dltrain] plugins` in the
working directory's pyproject.toml (dltrain.project), and from installed packages'
`dltrain.plugins` entry points (always loaded). A run records its plugins: code in a folder as
its absolute file path (so the run is usable from anywhere it is vouched for), installed modules
by name. A run dir never decides to import them: see dltrain.plugin_trust.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from omegaconf import DictConfig, open_dict

from dltrain.errors import ConfigError
from dltrain.project import project_plugins

ENTRY_POINTS = "dltrain.plugins"
_loaded: set[str] = set()  # resolved plugins imported in this process (each once)


def resolve(plugin: str, base: Path | None = None) -> str:
    """A plugin's lasting form: a file (or a module found in `base`, the working directory) as
    its absolute path; an installed module by its name."""
    base = (base or Path.cwd()).absolute()
    if plugin.endswith(".py") or "/" in plugin or os.sep in plugin:
        return str(base.joinpath(plugin).expanduser().absolute())
    for candidate in (f"{plugin.replace('.', '/')}.py", f"{plugin.replace('.', '/')}/__init__.py"):
        if (base / candidate).is_file():
            return str(base / candidate)
    return plugin


def module_name(resolved: str) -> str:
    """The module a resolved plugin is imported as: a file by its package path (pkg/sub.py under
    a folder without __init__.py is pkg.sub), a module name as it is."""
    if not os.path.isabs(resolved):
        return resolved
    return ".".join(_root_and_parts(Path(resolved))[1])


def _root_and_parts(path: Path) -> tuple[Path, list[str]]:
    """The folder a file's top package lives in, and the module path below it."""
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return folder, parts


def load(plugins: Iterable[str] | None) -> list[str]:
    """Import every plugin (and the installed ones) once; their resolved forms, in order."""
    load_installed()
    resolved = [resolve(str(p)) for p in plugins or ()]
    for plugin in resolved:
        if plugin not in _loaded:
            _import(plugin)
            _loaded.add(plugin)
    return resolved


def for_run(cfg: DictConfig) -> list[str]:
    """Import a new run's plugins (the project's and the config's) and record them, resolved."""
    given = [*project_plugins(), *(str(p) for p in cfg.get("plugins") or [])]
    resolved = list(dict.fromkeys(load(given)))
    with open_dict(cfg):
        cfg.plugins = resolved
    return resolved


@functools.cache
def installed() -> dict[str, str]:
    """The installed packages' plugins: entry point name -> module (read once per process)."""
    return {ep.name: ep.value.partition(":")[0] for ep in entry_points(group=ENTRY_POINTS)}


def load_installed() -> None:
    """Import every installed plugin (once per process)."""
    for module in installed().values():
        if module not in _loaded:
            _import(module)
            _loaded.add(module)


def _import(plugin: str) -> None:
    """Import one plugin; a one-line ConfigError naming it and the cause when that fails."""
    folder = Path.cwd()
    if os.path.isabs(plugin):
        if not Path(plugin).is_file():
            raise ConfigError(f"plugins: no such file {plugin}")
        folder = _root_and_parts(Path(plugin))[0]
    if str(folder) not in sys.path:  # its folder importable, as `python -m` makes the cwd
        sys.path.insert(0, str(folder))
    name = module_name(plugin)
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        where = f"(which {name} imports)" if e.name != name else f"in {folder} or installed"
        raise ConfigError(f"plugins: no module named '{e.name}' {where}") from None
    except RuntimeError as e:
        if "registered twice" not in str(e):
            raise _failed(plugin, e) from None
        taken = str(e).removesuffix(" is registered twice")
        raise ConfigError(
            f"plugins: {plugin} registers {taken}, a name already taken (by dltrain or another "
            "plugin); rename it"
        ) from None
    except ConfigError:
        raise
    except Exception as e:  # the plugin's own code failed
        raise _failed(plugin, e) from None


def _failed(plugin: str, error: Exception) -> ConfigError:
    first = next((line for line in str(error).splitlines() if line.strip()), "")[:200]
    return ConfigError(f"plugins: importing {plugin} failed: {type(error).__name__}: {first}")
