"""A project's own settings for dltrain: `[tool.dltrain]` of the working directory's
pyproject.toml (read as ruff or pytest read theirs): `plugins` and `config_dir`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from dltrain.errors import ConfigError


def project_settings(folder: Path | None = None) -> dict[str, Any]:
    """The `[tool.dltrain]` table of the pyproject.toml in `folder` (the working directory)."""
    file = (folder or Path.cwd()) / "pyproject.toml"
    if not file.is_file():
        return {}
    try:
        table = tomllib.loads(file.read_text(encoding="utf-8")).get("tool", {}).get("dltrain", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{file}: cannot be read ({e})") from None
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [tool.dltrain] must be a table")
    return table


def project_plugins(folder: Path | None = None) -> list[str]:
    """`[tool.dltrain] plugins`: module names or files (relative to the project folder)."""
    base = (folder or Path.cwd()).absolute()
    listed = project_settings(base).get("plugins", [])
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise ConfigError(
            f"{base / 'pyproject.toml'}: [tool.dltrain] plugins must be a list of module names or "
            "files"
        )
    return [p if not p.endswith(".py") else str(base / p) for p in listed]


def project_config_dir(folder: Path | None = None) -> str | None:
    """`[tool.dltrain] config_dir`: the project's config folder (as with --config-dir)."""
    base = (folder or Path.cwd()).absolute()
    value = project_settings(base).get("config_dir")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{base / 'pyproject.toml'}: [tool.dltrain] config_dir must be a path")
    return str(base / value)
