from __future__ import annotations

import pytest
import yaml
from omegaconf import DictConfig

from dltrain.composition import CONF_DIR
from dltrain.config import check_config, expected_task
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS, LOSSES, MODELS, OPTIMIZERS, REGULARIZERS, SCHEDULERS

from .helpers import compose_config

NAMED_GROUPS = {
    "model": MODELS,
    "dataset": DATASETS,
    "optimizer": OPTIMIZERS,
    "loss": LOSSES,
    "scheduler": SCHEDULERS,
}
# A dataset and a loss for each task, so that any option can be checked in a fitting config.
FITTING = {
    "regression": ["dataset=diabetes", "loss=mse", "model=mlp"],
    "binary": ["dataset=breast_cancer", "loss=bce", "model=mlp"],
    "multiclass": ["dataset=digits", "loss=cross_entropy", "model=mlp"],
    "reconstruction": ["dataset=digits", "loss=mse", "model=autoencoder"],
}

# A dataset giving the inputs a model reads, and a loss that fits (flat models: FITTING).
READING = {
    "image": ["dataset=mnist", "loss=cross_entropy"],
    "sequence": ["dataset=sine_cosine", "loss=mse"],
    "tokens": ["dataset=imdb", "loss=cross_entropy"],
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", sorted(NAMED_GROUPS))
def test_registry_and_conf_agree(group: str) -> None:
    assert options(group) == NAMED_GROUPS[group].names()
    for stem in options(group):
        assert yaml.safe_load((CONF_DIR / group / f"{stem}.yaml").read_text())["name"] == stem


def test_regularization_options_are_keyed_by_their_name() -> None:
    stems = options("regularization")
    assert [s for s in stems if s != "none"] == REGULARIZERS.names()
    for stem in REGULARIZERS.names():
        content = yaml.safe_load((CONF_DIR / "regularization" / f"{stem}.yaml").read_text())
        assert list(content) == [stem]


def _fitting_overrides(group: str, option: str) -> list[str]:
    if group == "model":
        return READING.get(MODELS.info(option).input) or FITTING[MODELS.info(option).tasks[0]]
    if group == "loss":
        return FITTING[LOSSES.info(option).tasks[0]][:1]
    if group == "dataset":
        task = expected_task(compose_config(f"dataset={option}").dataset)
        return FITTING[task or "multiclass"][1:]  # None: known after loading (image_folder)
    return []


CASES = [(g, o) for g in [*NAMED_GROUPS, "regularization", "trainer"] for o in options(g)]


def check_all_but_absent_data(cfg: DictConfig) -> None:
    """check_config, allowing only that the data is not on this machine or not named yet."""
    try:
        check_config(cfg)
    except ConfigError as e:
        absent = (f"dataset {cfg.dataset.name}: missing ", "dataset.path: set it")
        unnamed = "dataset.target: set it"
        callable_ = "target: set it to an importable callable"  # <group>=target names none yet
        allowed = [p.startswith((*absent, unnamed)) or callable_ in p for p in e.problems]
        assert all(allowed), e.problems


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_composes_and_validates(group: str, option: str) -> None:
    cfg = compose_config(*_fitting_overrides(group, option), f"{group}={option}")
    check_all_but_absent_data(cfg)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_validates(experiment: str) -> None:
    check_all_but_absent_data(compose_config(f"experiment={experiment}"))


@pytest.mark.parametrize("search", options("hparams_search"))
def test_every_search_composes_and_validates(search: str) -> None:
    check_config(compose_config(f"hparams_search={search}"))


def test_regularization_options_merge() -> None:
    cfg = compose_config("regularization=[l2,early_stopping,grad_clip]")
    assert set(cfg.regularization) == {"l2", "early_stopping", "grad_clip"}
    assert cfg.regularization.early_stopping.monitor == cfg.trainer.monitor


def test_all_problems_are_reported_at_once() -> None:
    cfg = compose_config(
        "dataset=diabetes",
        "trainer.epochs=0",
        "optimizer.lr=fast",
        "model.activation=rellu",
        "model.init.name=xavierr",
        "regularization=early_stopping",
        "regularization.early_stopping.patience=0",
    )
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    text = str(err.value)
    assert "trainer.epochs: must be at least 1, got 0" in text
    assert "optimizer.lr: must be float, got 'fast'" in text
    assert "Did you mean 'relu'?" in text
    assert "unknown init 'xavierr'. Did you mean 'xavier'?" in text
    assert "patience >= 1" in text
    assert "loss=cross_entropy: does not fit dataset 'diabetes' (regression task)" in text
    assert "loss=mse" in text  # names the losses that fit
    assert len(err.value.problems) == 6


def test_monitor_must_exist_for_the_task() -> None:
    with pytest.raises(ConfigError, match="trainer.monitor: cannot monitor 'val/acc'"):
        check_config(compose_config(*FITTING["regression"], "trainer.monitor=val/acc"))
    with pytest.raises(ConfigError, match="monitors 'val/loss' but dataset.val_fraction is 0"):
        check_config(compose_config("dataset.val_fraction=0"))


def test_train_metrics_other_than_the_loss_cannot_be_monitored() -> None:
    with pytest.raises(ConfigError, match="cannot monitor 'train/acc'"):
        check_config(compose_config("trainer.monitor=train/acc"))


def test_dropout_needs_a_model_with_dropout() -> None:
    cfg = compose_config("model=logistic", "regularization=dropout")
    with pytest.raises(
        ConfigError, match="model 'logistic' has no dropout option; models with one: .*mlp"
    ):
        check_config(cfg)


def test_unknown_device_and_fractions() -> None:
    with pytest.raises(ConfigError, match="trainer.device: must be one of auto, cpu, cuda, mps"):
        check_config(compose_config("trainer.device=gpu"))


def test_impossible_values_are_caught_before_any_data_loads() -> None:
    cfg = compose_config("optimizer.lr=-1", "dataset.val_fraction=0.6", "dataset.test_fraction=0.5")
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert err.value.problems == [
        "dataset.val_fraction=0.6 and dataset.test_fraction=0.5 must each be in [0, 1) and sum "
        "to less than 1 (the rest is the train split)",
        "optimizer (adam): Invalid learning rate: -1",
    ]
