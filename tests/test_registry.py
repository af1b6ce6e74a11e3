from __future__ import annotations

from typing import Literal

import pytest

from dltrain.errors import ConfigError, closest
from dltrain.registry import ModelInfo, Registry


@pytest.fixture
def things() -> Registry:
    reg = Registry("thing", info=ModelInfo)

    @reg.register("adder", tasks=("math",))
    def adder(
        base: int, step: float = 1.0, mode: Literal["up", "down"] = "up", label: str | None = None
    ) -> float:
        return base + (step if mode == "up" else -step)

    return reg


def test_names_get_info_and_build(things: Registry) -> None:
    assert things.names() == ["adder"]
    assert "adder" in things and "nope" not in things
    assert things.info("adder") == ModelInfo(tasks=("math",))
    # runtime values the builder does not accept are dropped, config kwargs are checked
    assert things.build("adder", {"step": 2}, base=1, unused=5) == 3


def test_unknown_name_suggests_closest_and_lists_all(things: Registry) -> None:
    with pytest.raises(ConfigError) as err:
        things.get("addr")
    assert "unknown thing 'addr'. Did you mean 'adder'? Available: adder" in str(err.value)


def test_check_reports_every_problem_with_its_config_path(things: Registry) -> None:
    problems = things.check("adder", {"stepp": 1, "mode": "upp", "label": 3}, path="grp")
    assert len(problems) == 4, problems
    assert problems[0].startswith(
        "grp.stepp: thing 'adder' has no option 'stepp'. Did you mean 'step'?"
    )
    assert "grp.mode: must be one of up, down, got 'upp'. Did you mean 'up'?" in problems
    assert "grp.label: must be null or str, got 3" in problems
    assert "grp.base: required by thing 'adder' but not set" in problems
    assert things.check("adder", {"step": 2, "mode": "down"}, runtime=["base"]) == []


def test_type_check_accepts_ints_for_floats_but_not_bools_or_text(things: Registry) -> None:
    assert things.check("adder", {"step": 3}, runtime=["base"]) == []
    assert things.check("adder", {"step": True}, runtime=["base"]) == [
        "thing.step: must be float, got True"
    ]
    assert things.check("adder", {"step": "fast"}, runtime=["base"]) == [
        "thing.step: must be float, got 'fast'"
    ]


def test_build_raises_all_problems_together(things: Registry) -> None:
    with pytest.raises(ConfigError) as err:
        things.build("adder", {"step": "x", "bogus": 1}, base=1)
    assert len(err.value.problems) == 2


def test_registering_a_name_twice_is_an_error(things: Registry) -> None:
    with pytest.raises(RuntimeError, match="registered twice"):
        things.register("adder")(lambda: None)


def test_closest() -> None:
    assert closest("adma", ["adam", "sgd"]) == "adam"
    assert closest("zzz", ["adam", "sgd"]) is None
