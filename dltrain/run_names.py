"""Run dir names that say what ran: `<time>_<model>_<dataset>`, sweep jobs `<num>_<swept>`.

conf/config.yaml builds them with the `dltrain_name` resolver (registered when this module is
imported, which dltrain.composition does before anything composes). A name is one path component
of ASCII letters, digits and `._+-`: nothing a shell, Windows or a Hydra override reads specially
(`resume=<run dir>` must parse, so no `=` or `,`), at most MAX_LEN characters, a longer one cut and
ended with a short hash of the whole text, so names that share their start stay apart.
"""

from __future__ import annotations

import hashlib
import re

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

MAX_LEN = 100
EXCLUDE_KEYS = "hydra.job.config.override_dirname.exclude_keys"
_DROPPED = re.compile(r"[\[\]'\"]")  # list brackets and quotes: `hidden_sizes-32-64`
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(*parts: object) -> str:
    """The parts (None and empty ones left out) joined by `_` as one safe path component."""
    text = "_".join(str(p) for p in parts if p is not None and str(p) != "")
    name = _UNSAFE.sub("-", _DROPPED.sub("", text)).lstrip(".-").rstrip(".") or "run"
    if len(name) <= MAX_LEN:
        return name
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{name[: MAX_LEN - len(digest) - 1]}-{digest}"


def sweep_job_names(overrides: list[str]) -> list[str]:
    """The Hydra override that names a sweep's job dirs by their swept overrides only: the keys
    the command line gives one value are left out of hydra.job.override_dirname."""
    if any(o.lstrip("+").startswith(EXCLUDE_KEYS) for o in overrides):
        return []  # the user's own choice
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return []  # Hydra says what is wrong with it
    fixed = [o for o in parsed if not o.is_sweep_override() and not o.is_hydra_override()]
    keys = list(dict.fromkeys(o.key_or_group for o in fixed))
    return [f"{EXCLUDE_KEYS}=[{','.join(repr(k) for k in keys)}]"] if keys else []


OmegaConf.register_new_resolver("dltrain_name", safe_name, replace=True)
