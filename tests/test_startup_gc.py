"""`dltrain` starts with Python's garbage collector off (start-up allocates much and frees
little) and trains with it on; it is on again after any command, one that fails too."""

from __future__ import annotations

import gc
from pathlib import Path
from unittest import mock

from dltrain import preflight, train

from .helpers import dltrain_main, invoke


def test_the_collector_is_off_while_a_command_starts_and_on_while_it_trains(
    tmp_path: Path,
) -> None:
    seen: dict[str, bool] = {}

    def check(*args: object) -> list[str]:
        seen["check"] = gc.isenabled()
        return check_command_line(*args)

    def fit(*args: object) -> dict:
        seen["training"] = gc.isenabled()
        return fit_and_test(*args)

    check_command_line, fit_and_test = preflight.problems, train.fit_and_test
    with (
        mock.patch.object(preflight, "problems", side_effect=check),
        mock.patch.object(train, "fit_and_test", side_effect=fit),
    ):
        code, stderr = invoke(dltrain_main, ["dataset=iris", "trainer.epochs=1"], tmp_path)
    assert code == 0, stderr
    assert seen == {"check": False, "training": True}
    assert gc.isenabled()


def test_the_collector_is_on_again_after_a_command_that_fails(tmp_path: Path) -> None:
    code, stderr = invoke(dltrain_main, ["trainer.epochs=-1"], tmp_path)
    assert code == 2 and "trainer.epochs" in stderr
    assert gc.isenabled()
