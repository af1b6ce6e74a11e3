"""A run's command line is composed once to be checked and once by Hydra to run it: not more."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

from hydra._internal.config_loader_impl import ConfigLoaderImpl

from .helpers import dltrain_main, invoke


def test_a_run_composes_its_config_once_for_the_check_and_once_to_run(tmp_path: Path) -> None:
    compose = ConfigLoaderImpl.load_configuration
    with mock.patch.object(
        ConfigLoaderImpl, "load_configuration", autospec=True, side_effect=compose
    ) as composed:
        code, stderr = invoke(
            dltrain_main, ["dataset=iris", "trainer.epochs=1", "trainer.device=cpu"], tmp_path
        )
    assert code == 0, stderr
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    assert composed.call_count == 2
