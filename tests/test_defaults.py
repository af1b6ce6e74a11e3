"""Every default is stated once: a value a conf/ YAML shows equals its builder's default.

A YAML file may list an option (users read it, `dltrain --cfg job` prints it) but only with the
value the builder's signature gives it; an option the signature leaves without a default is the
YAML's to set. Interpolations (`${trainer.monitor}`) link values and are not defaults.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from dltrain.composition import CONF_DIR
from dltrain.registry import (
    CALLBACKS,
    DATASETS,
    INITIALIZERS,
    LOGGERS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    REGULARIZERS,
    SCHEDULERS,
    TARGET,
    Registry,
)
from dltrain.signatures import parameters
from dltrain.trainer_options import TrainerOptions

GROUPS = {
    "model": MODELS,
    "dataset": DATASETS,
    "optimizer": OPTIMIZERS,
    "loss": LOSSES,
    "scheduler": SCHEDULERS,
}
# torch.optim's classes are registered as they are; where dltrain's YAML differs from torch's
# default it is a choice of dltrain's, made once, in the YAML.
CHOSEN_OVER_TORCH = {("optimizer/sgd.yaml", "lr"): "the curriculum's SGD lr 0.01 (torch: 0.001)"}


def differences(where: str, node: DictConfig, builder: Any) -> list[str]:
    """`key: YAML value != signature default` for each option of `node` that differs."""
    params = parameters(builder)
    found = []
    for key in node:
        if key in ("name", "init") or (where, key) in CHOSEN_OVER_TORCH:
            continue
        raw = node._get_node(key)._value()
        if isinstance(raw, str) and "${" in raw:
            continue  # a link to another value, not a default
        default = params[key].default if key in params else "(no such option)"
        if default is inspect.Parameter.empty:
            continue  # required by the builder: the YAML's to set
        value = OmegaConf.to_container(node, resolve=False)[key]
        if normalised(value) != normalised(default):
            found.append(f"{where}: {key} is {value!r} there, {default!r} in the signature")
    return found


def normalised(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def group_files(group: str) -> list[Path]:
    return sorted((CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_a_group_option_shows_its_builders_defaults(group: str) -> None:
    registry: Registry = GROUPS[group]
    found = []
    for file in group_files(group):
        node = OmegaConf.load(file)
        if node.name == TARGET:  # its builder is whichever callable it names
            continue
        where = f"{group}/{file.name}"
        found += differences(where, node, registry.get(node.name))
        if "init" in node:
            found += differences(f"{where}:init", node.init, INITIALIZERS.get(node.init.name))
    assert found == []


def test_regularization_and_trainer_show_their_defaults() -> None:
    found = []
    for file in group_files("regularization"):
        for name, options in (OmegaConf.load(file) or {}).items():
            found += differences(f"regularization/{file.name}", options, REGULARIZERS.get(name))
    trainer = OmegaConf.load(CONF_DIR / "trainer" / "default.yaml")
    found += differences("trainer/default.yaml", trainer, TrainerOptions)
    assert found == []
    assert set(trainer) == set(inspect.signature(TrainerOptions).parameters)  # all, once


@pytest.mark.parametrize(("group", "registry"), [("callbacks", CALLBACKS), ("logger", LOGGERS)])
def test_list_groups_show_their_defaults(group: str, registry: Registry) -> None:
    found = []
    for file in group_files(group):
        for name, options in (OmegaConf.load(file) or {}).items():
            if name != TARGET:  # its builder is whichever callable it names
                found += differences(f"{group}/{file.name}", options, registry.get(name))
    assert found == []


def test_a_difference_is_found() -> None:
    node = OmegaConf.create({"name": "mlp", "dropout": 0.5})
    assert differences("model/x.yaml", node, MODELS.get("mlp")) == [
        "model/x.yaml: dropout is 0.5 there, 0.0 in the signature"
    ]
