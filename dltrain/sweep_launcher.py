"""How a sweep's jobs are launched: hydra/launcher=joblib that outlives a dead worker process.

With the joblib plugin, a worker process that dies (SIGKILL, the kernel's out-of-memory killer)
makes loky raise TerminatedWorkerError in the sweep's process: the whole sweep stopped with a
traceback, the job beside it was killed with the pool, later jobs never started and no report was
written. Here the jobs that were running are recorded as failed (metrics.json in their run dir),
the jobs not started yet run in a new pool, and the sweep ends with its report.

Hydra instantiates only launchers under the hydra_plugins package, so the class lives in
hydra_plugins.dltrain_joblib_launcher; SweepCallback (conf/config.yaml) puts it in place of the
plugin's class whenever the sweep chose hydra/launcher=joblib.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from dltrain import sweep_resume  # in a worker too: registers the resume_sweep resolvers
from dltrain.run_files import monitored, read_summary

log = logging.getLogger(__name__)

JOBLIB_PLUGIN = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
JOBLIB_SAFE = "hydra_plugins.dltrain_joblib_launcher.DltrainJoblibLauncher"


class SweepCallback(Callback):
    """Registered in conf/config.yaml: the joblib launcher swap and resume_sweep's bookkeeping."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Launch joblib sweeps with DltrainJoblibLauncher; keep a resumed sweep's multirun.yaml."""
        launcher = config.hydra.launcher
        if launcher.get("_target_") == JOBLIB_PLUGIN:  # Hydra instantiates it after this hook
            with read_write(launcher):
                launcher._target_ = JOBLIB_SAFE
        if config.get("resume_sweep"):
            sweep_resume.keep_multirun_yaml(Path(str(config.hydra.sweep.dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Remove the claims of a resumed sweep's jobs (they matter only while it runs)."""
        if config.get("resume_sweep"):
            shutil.rmtree(Path(str(config.hydra.sweep.dir)) / sweep_resume.CLAIMS, True)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], first: int) -> list[JobReturn]:
    """Run the jobs as the plugin does (joblib's loky processes), going on when a worker dies."""
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed
    from joblib.externals.loky.process_executor import BrokenProcessPool

    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    options = dict(launcher.joblib, backend="loky")  # the threading backend breaks Hydra
    process_joblib_cfg(options)
    shown = ",".join(f"{k}={v}" for k, v in options.items())
    log.info(f"Joblib.Parallel({shown}) is launching {len(job_overrides)} jobs")
    log.info(f"Launching jobs, sweep output dir : {sweep_dir}")
    pending = {first + i: list(overrides) for i, overrides in enumerate(job_overrides)}
    for idx, overrides in pending.items():
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
    returns: dict[int, JobReturn] = {}
    with tempfile.TemporaryDirectory(prefix="dltrain-joblib-") as marks:
        while pending:
            context = (launcher.hydra_context, launcher.config, launcher.task_function)
            state = Singleton.get_state()  # Hydra's singletons, as the plugin hands them over
            calls = [
                delayed(run_job_in_worker)(idx, o, *context, state, marks)
                for idx, o in pending.items()
            ]
            try:
                for idx, job_return in Parallel(return_as="generator_unordered", **options)(calls):
                    returns[idx] = job_return
                    del pending[idx]
            except BrokenProcessPool as e:
                returns |= _after_the_pool_broke(pending, Path(marks), e)
    return [returns[idx] for idx in sorted(returns)]


def run_job_in_worker(
    idx: int,
    overrides: Sequence[str],
    hydra_context: Any,
    config: DictConfig,
    task_function: Any,
    singleton_state: dict[Any, Any],
    marks: str,
) -> tuple[int, JobReturn]:
    """The plugin's execute_job, leaving marks for the sweep's process: started (the run dir) and
    done, so it can tell the jobs a dying pool took from those that never started."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    def task(cfg: DictConfig) -> Any:
        (Path(marks) / f"{idx}.started").write_text(HydraConfig.get().runtime.output_dir)
        value = task_function(cfg)
        (Path(marks) / f"{idx}.done").touch()
        return value

    args = (hydra_context, config, task, singleton_state)
    return idx, execute_job(idx, overrides, *args)


def _after_the_pool_broke(
    pending: dict[int, list[str]], marks: Path, error: Exception
) -> dict[int, JobReturn]:
    """Take out of `pending` the jobs that had started (recorded as failed unless they finished);
    the rest stay to run in a new pool."""
    found = re.search(r"exit codes of the workers are (\{[^}]*\})", str(error))
    codes = found.group(1) if found else "unknown"
    cause = (
        f"WorkerDied: a joblib worker process died (killed, e.g. out of memory; exit codes "
        f"{codes}) while this job ran; the pool stopped the jobs running beside it too"
    )
    started = [idx for idx in pending if (marks / f"{idx}.started").is_file()]
    if not started:  # nothing of ours ran: a pool that cannot start would break forever
        started = list(pending)
    returns, dead = {}, []
    for idx in started:
        overrides = pending.pop(idx)
        mark = marks / f"{idx}.started"
        run_dir = Path(mark.read_text()) if mark.is_file() else None
        value = math.nan  # what a sweeper gets for a job that left no result (optuna: failed)
        if run_dir and _finished(run_dir, mark):  # its result was lost with the pool
            summary, _ = read_summary(run_dir)
            value = monitored(summary) if summary else value
        else:
            dead.append(f"{idx}" + (f" ({run_dir})" if run_dir else ""))
            if run_dir:
                _record_failure(run_dir, cause)
        returns[idx] = JobReturn(
            overrides=overrides, status=JobStatus.COMPLETED, _return_value=value
        )
    print(
        f"dltrain: a joblib worker process died (exit codes {codes}): job(s) "
        f"{', '.join(dead) or 'none'} recorded as failed; {len(pending)} not started yet "
        "run in a new pool",
        file=sys.stderr,
        flush=True,
    )
    return returns


def _finished(run_dir: Path, started: Path) -> bool:
    """Whether the job wrote its metrics.json in this sweep (not one left by an earlier attempt),
    or its task returned."""
    done = started.with_suffix(".done").is_file()
    metrics = run_dir / "metrics.json"
    return done or (metrics.is_file() and metrics.stat().st_mtime_ns >= started.stat().st_mtime_ns)


def _record_failure(run_dir: Path, cause: str) -> None:
    """metrics.json of a job its worker's death stopped (the last checkpoint, if any, stays)."""
    from dltrain.files import SaveError, save_json_atomic

    try:
        save_json_atomic({"status": "failed", "error": cause}, run_dir / "metrics.json")
    except SaveError as e:
        print(f"dltrain: {e}", file=sys.stderr)
