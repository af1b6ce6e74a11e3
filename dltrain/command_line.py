"""The `SOURCE name=value group.key=value` command lines of dltrain-eval, -predict and -export."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from dltrain.errors import ConfigError, did_you_mean


def parse_args(
    argv: Sequence[str], prog: str, usage: str, defaults: dict[str, str | None]
) -> tuple[Path, dict[str, str | None], list[str]]:
    """`SOURCE [name=value ...] [group.key=value ...]` -> (source, named options, overrides)."""
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} {usage}")
        sys.exit(0 if argv else 2)
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
