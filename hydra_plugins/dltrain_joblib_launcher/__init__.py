"""hydra/launcher=joblib for dltrain: a worker process that dies fails its jobs, not the sweep.

Hydra instantiates launchers only from the hydra_plugins package; the work is in
dltrain.sweep_launcher, imported when a sweep launches (Hydra imports this module at every start).
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn

try:
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
except ImportError:  # without the joblib plugin (dltrain[sweep]) there is nothing to extend
    JoblibLauncher = None

if JoblibLauncher is not None:

    class DltrainJoblibLauncher(JoblibLauncher):
        """The joblib plugin's launcher, with dltrain.sweep_launcher.launch running the jobs."""

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            """Run the jobs in joblib's loky processes; a dead worker fails only its jobs."""
            from dltrain.sweep_launcher import launch

            return launch(self, job_overrides, initial_job_idx)
