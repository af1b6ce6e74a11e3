"""The `SOURCE name=value group.key=value` command lines of dltrain-eval, -predict and -export."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from dltrain.errors import ConfigError, did_you_mean

# Every command that reads a run dir: the plugins it may import (see dltrain.plugins.allowed).
PLUGIN_OPTIONS = {"plugins": None, "trust_plugins": "false"}


def parse_args(
    argv: Sequence[str], prog: str, usage: str, defaults: dict[str, str | None]
) -> tuple[Path, dict[str, str | None], list[str]]:
    """`SOURCE [name=value ...] [group.key=value ...]` -> (source, named options, overrides)."""
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} {usage} [plugins=[module,file.py]] [trust_plugins=true]")
        sys.exit(0 if argv else 2)
    defaults = {**defaults, **PLUGIN_OPTIONS}
    named, overrides, problems = dict(defaults), [], []
    for item in argv[1:]:
        key, eq, value = item.partition("=")
        if not eq:
            problems.append(f"{item}: expected name=value")
        elif "." in key:
            overrides.append(item)
        elif key in defaults:
            named[key] = value
        else:
            problems.append(
                f"{key}: no such option.{did_you_mean(key, defaults)} "
                f"Options: {', '.join(defaults)}"
            )
    if problems:
        raise ConfigError(problems)
    return Path(argv[0]).expanduser(), named, overrides


def plugin_options(named: dict[str, str | None]) -> tuple[list[str], bool]:
    """`plugins=[a,./b.py]` as a list, and `trust_plugins=true|false` as a bool."""
    listed = (named.get("plugins") or "").strip().removeprefix("[").removesuffix("]")
    trust = (named.get("trust_plugins") or "false").strip().lower()
    if trust not in ("true", "false"):
        raise ConfigError(f"trust_plugins: must be true or false, got '{trust}'")
    return [p.strip() for p in listed.split(",") if p.strip()], trust == "true"
