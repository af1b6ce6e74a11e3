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

from dltrain import preflight, run_dirs, sweep_resume  # sweep_resume: registers resolvers
from dltrain.failures import failure
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
    run dir; the other ranks train each job it announces. Whatever fails is one line on stderr.
    """
    try:
        launch_main()
    except KeyboardInterrupt:
        print("dltrain: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # outside a job (which reports its own): still one line
        print(f"dltrain: {failure(e)}", file=sys.stderr)
        sys.exit(1)


def launch_main() -> None:
    """main() in this process: alone, or as one rank of several."""
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


def node_rank() -> int:
    """Which machine of a several-node run this is (0: the first, which owns the run dir)."""
    return int(os.environ.get("NODE_RANK") or os.environ.get("SLURM_NODEID") or 0)


def main_rank() -> None:
    """The command in one process (or in rank 0 of several)."""
    if "--dry-run" in sys.argv:  # a flag for trainer.dry_run=true
        sys.argv = [a for a in sys.argv if a != "--dry-run"] + ["trainer.dry_run=true"]
    args = get_args_parser().parse_args(sys.argv[1:])
    resume = [o.partition("=")[2] for o in args.overrides if o.startswith("resume=")]
    try:
        if resume:
            sys.exit(continue_run(args, resume[-1]))
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
            try:
                problems or claim_output(args.overrides, args.multirun, config_name)
            except ConfigError as e:
                problems = e.problems
        if problems:
            report(problems)
            sys.exit(2)
    hydra_main()
    if _SWEEP["jobs"] and _SWEEP["failed"] == _SWEEP["jobs"]:
        sys.exit(1)  # a sweep fails only when every job failed


def claim_output(overrides: list[str], multirun: bool, config_name: str) -> None:
    """Make this process the only one in its run (or sweep) dir, and pin Hydra to that dir.

    A default name already taken (another run started in the same second) becomes `<name>_2`.
    """
    found = preflight.output_dir(overrides, multirun, config_name)
    if found is None or node_rank() > 0:  # later nodes of a run started by hand share node 0's
        return
    key, target = found
    if preflight.named_output(overrides, key):
        markers = run_dirs.SWEEP_MARKERS if multirun else run_dirs.RUN_MARKERS
        resumed = any(o.startswith("resume_sweep=") for o in overrides)
        if resumed:  # the sweep's dir holds its earlier jobs, as it should
            run_dirs.lock(target, key)
        else:
            run_dirs.claim(target, key, markers)
        claimed = target
    else:
        claimed = run_dirs.claim_fresh(target)
    given = {a for a in sys.argv[1:] if a.partition("=")[0].lstrip("+") == key}
    sys.argv = [*(a for a in sys.argv if a not in given), f"{key}={quoted(str(claimed))}"]


def quoted(value: str) -> str:
    """A value as a quoted Hydra override string (whatever characters a path holds)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def continue_run(args: Any, target: str) -> int:
    """resume=<run>: go on from its checkpoint with its saved config, in its own dir; exit code."""
    from dltrain.distributed import configure_logging
    from dltrain.resume import resume_config

    if args.multirun:
        raise ConfigError("resume: continues one run; leave out --multirun (-m)")
    overrides = [o for o in args.overrides if not o.startswith("resume=")]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="dltrain"):
        cfg, run_dir = resume_config(target, overrides)
    run_dirs.lock(run_dir, "resume")
    configure_logging(0, run_dir)
    run_job(cfg, run_dir, sweep=False)
    return 0


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
    extra = [f"hydra.sweep.dir={quoted(str(path))}", *sweep_resume.continue_overrides(path)]
    args.overrides += extra  # preflight and the run-dir lock see the sweep's own dir
    sys.argv += extra


_SWEEP = {"jobs": 0, "failed": 0}  # filled in when a sweep ends (ReportCallback)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """One job: Hydra has made the run dir; train in it."""
    from dltrain.sweep import previous_outcome, share_machine

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
    return run_job(cfg, run_dir, sweep)


def run_job(cfg: DictConfig, run_dir: Path, sweep: bool) -> float | None:
    """Train one job in `run_dir`; what a sweeper optimises. A failure is one line on stderr.

    A failed single run exits (2: a config problem, 1: it failed, 130/143: stopped by a
    signal); a failed sweep job is recorded and returns the worst value, so the sweep goes on.
    """
    from dltrain.signals import Interrupted
    from dltrain.train import run

    worst = float("inf") if cfg.trainer.get("monitor_mode") == "min" else float("-inf")
    if under_launcher():  # the other ranks train this job with rank 0
        from dltrain.distributed import announce

        announce((OmegaConf.to_container(cfg, resolve=True), str(run_dir)))
    try:
        summary = run(cfg, run_dir)
    except ConfigError as e:
        report(e.problems)
        return worst if sweep else sys.exit(2)
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
        return worst if sweep else sys.exit(1)
    return summary.get("metrics", {}).get(cfg.trainer.monitor)


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


def report(problems: list[str]) -> None:
    """Print config problems, one per line, without a traceback."""
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        print(f"dltrain: {unique[0]}", file=sys.stderr)
        return
    listed = "".join(f"\n  - {p}" for p in unique)
    print(f"dltrain: {len(unique)} problems in the configuration:{listed}", file=sys.stderr)
