"""Reading what a run dir holds (metrics.json, .hydra/overrides.yaml, config.yaml) as plain data.

A run dir may have been edited, truncated or planted by anyone, so nothing here lets Hydra or
OmegaConf resolve or instantiate it: JSON through json, YAML through yaml.safe_load (no python/
tags). A file that cannot be read comes back as (None, reason), never as an exception.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

Read = tuple[Any, str | None]  # (the data or None, why it could not be read or None)


def _text(path: Path) -> tuple[str | None, str | None]:
    """A file's text, or (None, why not); (None, None) when no regular file is there (a FIFO
    would block the read)."""
    if not path.is_file():
        return None, None
    try:
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (byte {e.start})"
    except OSError as e:
        return None, e.strerror or type(e).__name__


def read_json_object(path: Path) -> Read:
    """A JSON file holding one object: (dict, None), or (None, reason); (None, None): no file."""
    text, why = _text(path)
    if text is None:
        return None, why
    try:
        data = json.loads(text)
    except ValueError as e:  # JSONDecodeError, and Python's limit on huge integers
        return None, f"not JSON ({str(e).splitlines()[0]})"
    if not isinstance(data, dict):
        return None, f"JSON {type(data).__name__}, not an object"
    return data, None


def read_yaml(path: Path) -> Read:
    """A YAML file as plain data (safe_load): (data, None), or (None, reason); no file: (None,
    None)."""
    text, why = _text(path)
    if text is None:
        return None, why
    try:
        return yaml.safe_load(text), None
    except yaml.YAMLError as e:  # python/ tags land here: safe_load constructs no objects
        return None, f"not plain YAML ({_first_line(e)})"
    except RecursionError:
        return None, "not plain YAML (nested too deep)"


def read_overrides(run_dir: Path) -> Read:
    """The overrides a job ran with (.hydra/overrides.yaml): a list of strings ([] for no file or
    an empty one), or (None, reason)."""
    data, why = read_yaml(run_dir / ".hydra" / "overrides.yaml")
    if why is None and data is not None and not _strings(data):
        why = f"{type(data).__name__}, not a list of strings"
    return (None, why) if why else (data or [], None)


def read_summary(run_dir: Path) -> Read:
    """metrics.json checked for the shape dltrain writes: (dict, None), or (None, reason); no
    file: (None, None)."""
    data, why = read_json_object(run_dir / "metrics.json")
    if data is not None:
        for key in ("metrics", "last_metrics"):
            if not isinstance(data.get(key) or {}, dict):
                why = f"its {key!r} is not an object"
        if not isinstance(data.get("status", ""), str):
            why = "its 'status' is not a string"
    return (None, why) if why else (data, None)


def monitored(summary: dict[str, Any]) -> float:
    """The metric a finished job was monitored on (what a sweeper optimises), NaN if absent."""
    value = (summary.get("metrics") or {}).get(summary.get("monitor"))
    return float(value) if isinstance(value, int | float) else math.nan


def _strings(data: Any) -> bool:
    return isinstance(data, list) and all(isinstance(item, str) for item in data)


def _first_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 120 else text[:119] + "…"
