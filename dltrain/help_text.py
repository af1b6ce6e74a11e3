"""`dltrain --help`: Hydra's help text for the app's groups and config, without Hydra's own."""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dltrain.composition import CONF_DIR, hydra_context
from dltrain.errors import ConfigError


def print_help(args: Any) -> bool:
    """Hydra's --help text, about twice as fast; False if Hydra should say what is wrong.

    Hydra's own help also lists its ~100 plugin groups (hydra/...), which the text leaves out;
    the app's groups and options are those of every config folder: dltrain's, the user's
    (--config-dir, hydra.searchpath) and installed plugins'.
    """
    try:
        with hydra_context(args.config_dir, args.config_path):
            cfg = compose(args.config_name or "config", overrides=args.overrides)
            repository = group_repository(GlobalHydra.instance().config_loader())
            listed = "".join(f"{g}: {', '.join(o)}\n" for g, o in config_groups(repository))
    except (HydraException, OmegaConfBaseException, ConfigError):
        return False
    own = OmegaConf.load(CONF_DIR / "config.yaml")  # hydra.help, with its interpolations
    text = string.Template(OmegaConf.to_container(own.hydra.help, resolve=True)["template"])
    config = OmegaConf.to_yaml(cfg, resolve=args.resolve)
    print(text.safe_substitute(APP_CONFIG_GROUPS=listed, CONFIG=config))
    return True


def group_repository(loader: Any) -> Any:
    """The config loader's view of every config folder, made once: Hydra's list_groups and
    get_group_options make it again (the primary config loaded and copied) at every call."""
    make = getattr(loader, "_parse_overrides_and_create_caching_repo", None)
    return make(None, [])[1] if make else loader  # Hydra 1.3's; the loader answers as slowly


def config_groups(repository: Any, parent: str = "") -> Iterator[tuple[str, list[str]]]:
    """(group, its sorted options) for every config group with options, Hydra's own left out."""
    for name in sorted(repository.get_group_options(parent, ObjectType.GROUP)):
        group = f"{parent}/{name}" if parent else name
        if group == "hydra":
            continue
        if options := sorted(repository.get_group_options(group, ObjectType.CONFIG)):
            yield group, options
        yield from config_groups(repository, group)
