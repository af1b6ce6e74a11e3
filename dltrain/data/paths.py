"""Dataset options that name files or folders: which they are, and where a relative one points.

Path options are found by name (`path`, `root`, `*_dir`, `*_file`, `*_path`, `*_shards`), so a
new dataset's options need no list. A run stores them absolute (it can be evaluated from any
folder); messages show them as the user gave them, and say what a relative one is relative to.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

PATH_NAMES = ("path", "root")
PATH_SUFFIXES = ("_dir", "_file", "_path", "_shards")
PATTERN_CHARACTERS = "*?[{"  # a glob or a brace pattern: always names local files


def path_keys(options: Mapping[str, Any]) -> list[str]:
    """The dataset options, in their order, that name files or folders."""
    return [str(k) for k in options if k in PATH_NAMES or str(k).endswith(PATH_SUFFIXES)]


def absolute(value: str) -> str | None:
    """`value` as an absolute path (~ expanded); None if it is relative and names nothing here.

    Nothing here: no file or folder of that name, nor the folder it would be in (a download
    goes there), nor a pattern; such a value may be a name (dataset=hf's Hub datasets).
    """
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return expanded
    folder = os.path.dirname(expanded)
    here = os.path.lexists(expanded) or bool(folder and os.path.isdir(folder))
    if here or any(c in expanded for c in PATTERN_CHARACTERS):
        return os.path.abspath(expanded)
    return None


def absolute_paths(options: MutableMapping[str, Any]) -> None:
    """Make the path options of a dataset node absolute in place (see `absolute`)."""
    for key in path_keys(options):
        value = options[key]
        if isinstance(value, str) and value and (found := absolute(value)) is not None:
            options[key] = found


def relative_given(options: Mapping[str, Any]) -> list[str]:
    """The path options' values that are relative, as given."""
    values = (options[k] for k in path_keys(options))
    return [
        v for v in values if isinstance(v, str) and v and not os.path.isabs(os.path.expanduser(v))
    ]


def said_relative(problems: list[str], options: Mapping[str, Any]) -> list[str]:
    """`problems`, each naming a relative path option's value told what it is relative to."""
    given = relative_given(options)
    if not given:
        return problems
    here, said = os.getcwd(), []
    for problem in problems:
        named = [v for v in given if re.search(_as_path(v), problem)]
        said.append(f"{problem} ({', '.join(named)}: relative to {here})" if named else problem)
    return said


def _as_path(value: str) -> str:
    """A regex finding `value` as a path of its own, or the start of one (not inside a word)."""
    return rf"(?<![\w./~-]){re.escape(value)}(?![\w-]|\.\w)"
