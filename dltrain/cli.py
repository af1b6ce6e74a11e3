"""The `dltrain` command: check every job (preflight), then let Hydra run them (hydra_main)."""

from __future__ import annotations

import logging
import os
import string
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dltrain import preflight, sweep_resume  # sweep_resume: registers its resolvers
from dltrain.registry import ConfigError

log = logging.getLogger("dltrain")


def config_dir() -> Path:
    """conf/ inside an installed wheel, else the top-level conf/ of a source checkout."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "conf"


CONF_DIR = config_dir()


def compose_config(*overrides: str) -> DictConfig:
    """The config `dltrain <overrides>` would run with (for tests, benchmarks, notebooks)."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


# Flags that only print something: Hydra handles them without a training run.
_INFO_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion")


def main() -> None:
    """Entry point: check every job's config up front, then hand over to Hydra.

    Under a launcher of several ranks (torchrun, srun) only rank 0 runs Hydra, so there is one
    run dir; the other ranks train each job it announces.
    """
    if not under_launcher():
        return main_rank()
    from dltrain import distributed

    world = distributed.init(distributed.launched())
    try:
        if world.rank > 0:
            sys.exit(distributed.follow())
        clean = False
        try:
            main_rank()
            clean = True
        finally:
            distributed.finish(clean)
    finally:
        distributed.leave()


def under_launcher() -> bool:
    """Whether torchrun or an srun step started this process as one of several ranks.

    The test of distributed.launched(), without importing torch (dltrain --help stays fast).
    """
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["WORLD_SIZE"]) > 1
    return "SLURM_STEP_ID" in env and int(env.get("SLURM_STEP_NUM_TASKS", 1)) > 1


def main_rank() -> None:
    """The command in one process (or in rank 0 of several)."""
    if "--dry-run" in sys.argv:  # a flag for trainer.dry_run=true
        sys.argv = [a for a in sys.argv if a != "--dry-run"] + ["trainer.dry_run=true"]
    args = get_args_parser().parse_args(sys.argv[1:])
    try:
        continue_run(args)
        continue_sweep(args)
    except ConfigError as e:
        report(e.problems)
        sys.exit(2)
    custom_search_path = args.config_dir or args.config_path
    if args.help and not custom_search_path and print_help(args):
        return
    if not any(getattr(args, flag) for flag in _INFO_FLAGS) and not custom_search_path:
        config_name = args.config_name or "config"
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="dltrain"):
            problems = preflight.problems(args.overrides, args.multirun, config_name)
        if problems:
            report(problems)
            sys.exit(2)
    hydra_main()
    if _SWEEP["jobs"] and _SWEEP["failed"] == _SWEEP["jobs"]:
        sys.exit(1)  # a sweep fails only when every job failed


def print_help(args: Any) -> bool:
    """Hydra's --help text, about twice as fast; False if Hydra should say what is wrong.

    Hydra's own help also lists its ~100 plugin groups (hydra/...), which the text leaves out;
    the app's groups and options are conf/'s folders and files.
    """
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="dltrain"):
        try:
            cfg = compose(args.config_name or "config", overrides=args.overrides)
        except (HydraException, OmegaConfBaseException):
            return False
    own = OmegaConf.load(CONF_DIR / "config.yaml")  # hydra.help, with its interpolations
    text = string.Template(OmegaConf.to_container(own.hydra.help, resolve=True)["template"])
    groups = sorted(
        str(folder.relative_to(CONF_DIR))
        for folder in CONF_DIR.rglob("*")
        if folder.is_dir() and any(folder.glob("*.yaml"))
    )
    listed = "".join(
        f"{g}: {', '.join(sorted(f.stem for f in (CONF_DIR / g).glob('*.yaml')))}\n" for g in groups
    )
    config = OmegaConf.to_yaml(cfg, resolve=args.resolve)
    print(text.safe_substitute(APP_CONFIG_GROUPS=listed, CONFIG=config))
    return True


def continue_run(args: Any) -> None:
    """resume=<run>: rewrite the command line to replay that run's overrides in its own dir."""
    resume = [o for o in args.overrides if o.startswith("resume=")]
    if not resume:
        return
    if args.multirun:
        raise ConfigError("resume: continues one run; leave out --multirun (-m)")
    args.overrides = resume_overrides(resume[-1].partition("=")[2], args.overrides)
    given = set(resume) | {o for o in sys.argv[1:] if "=" in o}
    sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a not in given), *args.overrides]


def continue_sweep(args: Any) -> None:
    """resume_sweep=<dir>: each job goes to the dir of its settings' earlier job, or a new one."""
    sweep_dir = [o for o in args.overrides if o.startswith("resume_sweep=")]
    if not sweep_dir:
        return
    if not args.multirun:
        raise ConfigError("resume_sweep: continues a sweep; give the sweep's command with -m")
    path = Path(sweep_dir[-1].partition("=")[2]).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"resume_sweep: {path} is not a sweep dir")
    sys.argv += sweep_resume.continue_overrides(path)


_SWEEP = {"jobs": 0, "failed": 0}  # filled in when a sweep ends (ReportCallback)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """One job: Hydra has made the run dir; train in it."""
    from dltrain.checkpoint import SaveError
    from dltrain.loop import DivergedError
    from dltrain.signals import Interrupted
    from dltrain.sweep import previous_outcome, share_machine
    from dltrain.train import run

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    # In a sweep a failing job is recorded (its metrics.json) and the sweep goes on.
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    worst = float("inf") if cfg.trainer.monitor_mode == "min" else float("-inf")
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
    if under_launcher():  # the other ranks train this job with rank 0
        from dltrain.distributed import announce

        announce((OmegaConf.to_container(cfg, resolve=True), str(run_dir)))
    try:
        summary = run(cfg, run_dir)
    except ConfigError as e:
        report(e.problems)
        return worst if sweep else sys.exit(2)
    except DivergedError as e:
        print(f"dltrain: stopped: {e}", file=sys.stderr)
        return worst if sweep else sys.exit(1)
    except SaveError as e:
        print(f"dltrain: stopped: {e}", file=sys.stderr)
        return worst if sweep else sys.exit(1)
    except Interrupted as e:
        print(
            f"dltrain: {e}; saved {run_dir / 'checkpoints' / 'last.pt'}. "
            f"Continue with: dltrain resume={run_dir}",
            file=sys.stderr,
        )
        sys.exit(130 if e.signal_name == "SIGINT" else 143)
    except Exception as e:  # out of memory, a bug, a bad file: in a sweep, one job's failure
        if not sweep:
            raise
        log.exception(f"job failed: {type(e).__name__}: {e}")  # the traceback, in its log
        print(f"dltrain: job {run_dir} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return worst
    return summary.get("metrics", {}).get(cfg.trainer.monitor)  # what a sweeper optimises


class ReportCallback(Callback):
    """Registered in conf/config.yaml: when a sweep ends, compare its runs (dltrain.report)."""

    def __init__(
        self, sort: str | None = None, metrics: list[str] | None = None, tag: str = "train/loss"
    ):
        self.options = {"sort": sort, "metrics": metrics, "tag": tag}

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Name the failed jobs; print the comparison; write report.csv, .md, curves.png."""
        from dltrain.report import collect, write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        frame = collect([sweep_dir])
        failed = frame[frame["status"] != "completed"]
        _SWEEP.update(jobs=len(frame), failed=len(failed))
        try:
            write_report([sweep_dir], sweep_dir, **self.options)
        except Exception as e:  # a report must never fail the sweep that already ran
            print(f"dltrain: warning: no sweep report ({type(e).__name__}: {e})", file=sys.stderr)
        if len(failed):
            jobs = "; ".join(f"{r.run} ({r.status}: {r.error})" for r in failed.itertuples())
            print(f"dltrain: {len(failed)} of {len(frame)} jobs failed: {jobs}", file=sys.stderr)


def resume_overrides(target: str, overrides: list[str]) -> list[str]:
    """Overrides that continue the run at `target` in its own dir: its own, then the new ones."""
    from dltrain.checkpoint import resume_path

    path = resume_path(target)
    run_dir = path.parent.parent
    saved = run_dir / ".hydra" / "overrides.yaml"
    replay = list(OmegaConf.load(saved)) if saved.is_file() else []
    new = [o for o in overrides if not o.startswith("resume=")]
    return [
        *(o for o in replay if not o.startswith(("resume=", "hydra."))),
        *new,
        f"resume='{path}'",
        f"hydra.run.dir='{run_dir}'",
        "hydra.output_subdir=null",  # keep the run's own .hydra/ (its original command)
    ]


def report(problems: list[str]) -> None:
    """Print config problems, one per line, without a traceback."""
    unique = list(dict.fromkeys(problems))
    noun = "problem" if len(unique) == 1 else "problems"
    lines = [f"dltrain: {len(unique)} {noun} in the configuration:"] + [f"  - {p}" for p in unique]
    print("\n".join(lines), file=sys.stderr)
