"""One Hydra job of `dltrain`: Hydra has made the run dir; train in it, and report a sweep.

Every failure of a job is one line on stderr. A single run exits with its code; a sweep's job
that fails is recorded (its metrics.json) and hands the sweeper the worst value, so the sweep
goes on; when it ends, ReportCallback compares its runs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dltrain.composition import CONF_DIR
from dltrain.errors import ConfigError
from dltrain.failures import failure, print_problems
from dltrain.launch import announce
from dltrain.launch import run as launch_run
from dltrain.launcher_env import launched
from dltrain.signals import Interrupted
from dltrain.sweep import share_machine, sweep_seed
from dltrain.sweep_resume import previous_outcome

log = logging.getLogger("dltrain")
SWEEP = {"jobs": 0, "failed": 0}  # filled in when a sweep ends (ReportCallback)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """One job: Hydra has made the run dir; train in it."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    # In a sweep a failing job is recorded (its metrics.json) and the sweep goes on.
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    if sweep:
        launcher = OmegaConf.to_container(hydra_cfg.launcher, resolve=True)
        if shared := share_machine(launcher, int(hydra_cfg.job.num), cfg.trainer.device):
            log.info(f"parallel job {hydra_cfg.job.num}: {shared}")
        if cfg.get("resume_sweep"):
            outcome, summary = previous_outcome(run_dir)
            if outcome == "completed":
                print(f"dltrain: job {hydra_cfg.job.num} completed before: skipped")
                return (summary.get("metrics") or {}).get(cfg.trainer.monitor)
            if outcome == "checkpoint":
                cfg.resume = str(run_dir)
        if cfg.trainer.get("seed") is None and not cfg.get("resume"):  # one seed for the sweep
            try:
                cfg.trainer.seed = sweep_seed(Path(hydra_cfg.sweep.dir))
            except ConfigError as e:  # its seed.txt holds something else
                print_problems("dltrain", e.problems)
                return worst(cfg)
            log.info(f"trainer.seed is null: every job of this sweep uses seed {cfg.trainer.seed}")
    return run_job(cfg, run_dir, sweep)


def worst(cfg: DictConfig) -> float:
    """The worst value of trainer.monitor: what a sweeper gets for a job that failed."""
    return float("inf") if cfg.trainer.get("monitor_mode") == "min" else float("-inf")


def run_job(cfg: DictConfig, run_dir: Path, sweep: bool) -> float | None:
    """Train one job in `run_dir`; what a sweeper optimises. A failure is one line on stderr.

    A failed single run exits (2: a config problem, 1: it failed, 130/143: stopped by a
    signal); a failed sweep job is recorded and returns the worst value, so the sweep goes on.
    """
    if launched():  # the other ranks train this job with rank 0
        announce((OmegaConf.to_container(cfg, resolve=True), str(run_dir)))
    try:
        summary = launch_run(cfg, run_dir)
    except ConfigError as e:
        print_problems("dltrain", e.problems)
        return worst(cfg) if sweep else sys.exit(2)
    except Interrupted as e:
        print(
            f"dltrain: {e}; saved {run_dir / 'checkpoints' / 'last.pt'}. "
            f"Continue with: dltrain resume={run_dir}",
            file=sys.stderr,
        )
        sys.exit(130 if e.signal_name == "SIGINT" else 143)
    except KeyboardInterrupt:  # before training began: there is no checkpoint to go on from
        print(f"dltrain: interrupted before training started in {run_dir}", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # diverged, a full disk, out of memory, a bug: one line, and why
        print(f"dltrain: {failure(e, run_dir)}", file=sys.stderr)
        return worst(cfg) if sweep else sys.exit(1)
    return summary.get("metrics", {}).get(cfg.trainer.monitor)


class ReportCallback(Callback):
    """Registered in conf/config.yaml: when a sweep ends, compare its runs (dltrain.report)."""

    def __init__(
        self, sort: str | None = None, metrics: list[str] | None = None, tag: str = "train/loss"
    ):
        self.options = {"sort": sort, "metrics": metrics, "tag": tag}

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Name the failed jobs; print the comparison; write report.csv, .md, curves.png."""
        if OmegaConf.select(config, "trainer.dry_run"):  # no job keeps metrics to compare
            return
        from dltrain.report import write_report  # pandas: only when a sweep ends
        from dltrain.runs_table import collect

        sweep_dir = Path(config.hydra.sweep.dir)
        frame = collect([sweep_dir])
        failed = frame[frame["status"] != "completed"]
        SWEEP.update(jobs=len(frame), failed=len(failed))
        try:
            write_report([sweep_dir], sweep_dir, **self.options)
        except Exception as e:  # a report must never fail the sweep that already ran
            print(f"dltrain: warning: no sweep report ({type(e).__name__}: {e})", file=sys.stderr)
        if len(failed):
            jobs = "; ".join(f"{r.run} ({r.status}: {r.error})" for r in failed.itertuples())
            print(f"dltrain: {len(failed)} of {len(frame)} jobs failed: {jobs}", file=sys.stderr)
