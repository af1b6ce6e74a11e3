"""How a sweep's jobs are launched: resume_sweep's bookkeeping around Hydra's sweep."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dltrain import sweep_resume


class SweepCallback(Callback):
    """Registered in conf/config.yaml: resume_sweep's bookkeeping."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Keep a resumed sweep's multirun.yaml (Hydra writes the new one after this hook)."""
        if config.get("resume_sweep"):
            sweep_resume.keep_multirun_yaml(Path(str(config.hydra.sweep.dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Remove the claims of a resumed sweep's jobs (they matter only while it runs)."""
        if config.get("resume_sweep"):
            shutil.rmtree(Path(str(config.hydra.sweep.dir)) / sweep_resume.CLAIMS, True)
