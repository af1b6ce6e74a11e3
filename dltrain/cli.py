"""The `dltrain` command: check every job (preflight), then let Hydra run them (hydra_main)."""

from __future__ import annotations

import gc
import logging
import shutil
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from hydra._internal.utils import get_args_parser

from dltrain import (  # sweep_resume: resolvers
    preflight,
    run_composition,
    run_dirs,
    run_names,
    startup_gc,
    sweep_resume,
)
from dltrain.closed_output import guard_output
from dltrain.composition import hydra_context
from dltrain.errors import ConfigError
from dltrain.failures import failure, print_problems
from dltrain.help_text import print_help
from dltrain.launcher_env import launched, node_rank
from dltrain.project import project_config_dir

log = logging.getLogger("dltrain")


# Flags that only print something: Hydra handles them without a training run.
_INFO_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion")
SCRATCH: list[Path] = []  # temporary folders of this command, removed when it ends


def main() -> None:
    """Entry point: check every job's config up front, then hand over to Hydra.

    Under a launcher of several ranks (torchrun, srun) only rank 0 runs Hydra, so there is one
    run dir; the other ranks train each job it announces. Whatever fails is one line on stderr.
    """
    guard_output()
    startup_gc.pause()
    try:
        launch_main()
    except KeyboardInterrupt:
        print("dltrain: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # outside a job (which reports its own): still one line
        print(f"dltrain: {failure(e)}", file=sys.stderr)
        sys.exit(1)
    finally:
        startup_gc.resume()
        gc.freeze()  # the exit need not collect every imported module: ~1 s less per command


def launch_main() -> None:
    """main() in this process: alone, or as one rank of several."""
    if not launched():
        return main_rank()
    from dltrain import launch, world

    ranks = world.init(launched())
    try:
        if ranks.rank > 0:
            sys.exit(launch.follow())
        clean = False
        try:
            main_rank()
            clean = True
        finally:
            launch.end_jobs(clean)
    finally:
        world.leave()


def main_rank() -> None:
    """The command in one process (or in rank 0 of several)."""
    if "--dry-run" in sys.argv:  # a flag for trainer.dry_run=true
        sys.argv = [a for a in sys.argv if a != "--dry-run"] + ["trainer.dry_run=true"]
    if len(sys.argv) > 1 and sys.argv[1] == "init":  # dltrain init <folder>: a new project
        from dltrain.scaffold import init_main

        sys.exit(init_main(sys.argv[2:]))
    args = absolute_config_path(parse_command_line())
    try:
        project_dir = None if args.config_dir else project_config_dir()
    except ConfigError as e:
        print_problems("dltrain", e.problems)
        sys.exit(2)
    if project_dir:  # [tool.dltrain] config_dir of ./pyproject.toml: as --config-dir
        args.config_dir = project_dir
        sys.argv.insert(1, f"--config-dir={project_dir}")
    resume = [o.partition("=")[2] for o in args.overrides if o.startswith("resume=")]
    try:
        if resume:
            sys.exit(continue_run(args, resume[-1]))
        continue_sweep(args)
    except ConfigError as e:
        print_problems("dltrain", e.problems)
        sys.exit(2)
    if args.help and print_help(args):
        return
    pinned = None  # the run dir claimed for a single run: Hydra runs the config checked
    if not any(getattr(args, flag) for flag in _INFO_FLAGS):
        config_name = args.config_name or "config"
        try:
            with hydra_context(args.config_dir, args.config_path):
                problems = preflight.problems(args.overrides, args.multirun, config_name)
                pinned = (
                    None if problems else claim_output(args.overrides, args.multirun, config_name)
                )
        except ConfigError as e:
            problems = e.problems
        if problems:
            print_problems("dltrain", problems)
            sys.exit(2)
    from dltrain.jobs import SWEEP, hydra_main

    try:
        with run_composition.handed_to_hydra(args.overrides, *pinned) if pinned else nullcontext():
            hydra_main()
    finally:
        for folder in SCRATCH:  # a dry run's: it keeps nothing
            shutil.rmtree(folder, ignore_errors=True)
    if SWEEP["jobs"] and SWEEP["failed"] == SWEEP["jobs"]:
        sys.exit(1)  # a sweep fails only when every job failed


def parse_command_line() -> Any:
    """Hydra's arguments, options and overrides in any order (`plugins=[m] --config-dir conf
    model=x`); sys.argv is put in the order Hydra's own parser needs: options first."""
    args = get_args_parser().parse_intermixed_args(sys.argv[1:])
    rest = list(sys.argv[1:])
    for override in args.overrides:
        rest.remove(override)
    sys.argv = [sys.argv[0], *rest, *args.overrides]
    return args


PATH_FLAGS = {"-cp": "config_path", "--config-path": "config_path", "-cd": "config_dir",
              "--config-dir": "config_dir"}  # fmt: skip


def absolute_config_path(args: Any) -> Any:
    """--config-path and --config-dir as absolute paths, relative to the working directory as
    users mean them (Hydra would take --config-path relative to dltrain's own code)."""
    argv, follows = [sys.argv[0]], None
    for item in sys.argv[1:]:
        flag, eq, value = item.partition("=")
        if follows:  # the value after `-cd DIR`
            item = str(Path(item).expanduser().absolute())
            setattr(args, follows, item)
        elif eq and flag in PATH_FLAGS:
            item = f"{flag}={Path(value).expanduser().absolute()}"
            setattr(args, PATH_FLAGS[flag], item.partition("=")[2])
        follows = PATH_FLAGS.get(item) if not eq else None
        argv.append(item)
    sys.argv = argv
    return args


def claim_output(
    overrides: list[str], multirun: bool, config_name: str
) -> tuple[set[str], str] | None:
    """Make this process the only one in its run (or sweep) dir, and pin Hydra to that dir: the
    overrides of sys.argv it took off and the one it put on, for a single run; else None.

    A default name already taken (another run started in the same second) becomes `<name>_2`.
    A dry run makes no run dir: Hydra's dir is a temporary folder, removed when the command ends.
    """
    sys.argv += run_names.sweep_job_names(overrides) if multirun else []  # on every node
    found = run_composition.output_dir(overrides, multirun, config_name)
    if preflight.dry_run():  # Hydra's own files go to a temporary folder, removed at the end
        SCRATCH.append(Path(tempfile.mkdtemp(prefix="dltrain-dry-run-")))
        found = "hydra.sweep.dir" if multirun else "hydra.run.dir", SCRATCH[-1]
    if found is None or node_rank() > 0:  # later nodes of a run started by hand share node 0's
        return None
    key, target = found
    if target in SCRATCH:
        claimed = target
    elif preflight.named_output(overrides, key):
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
    pin = f"{key}={quoted(str(claimed))}"
    sys.argv = [*(a for a in sys.argv if a not in given), pin]
    return None if multirun else (given, pin)


def quoted(value: str) -> str:
    """A value as a quoted Hydra override string (whatever characters a path holds)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def continue_run(args: Any, target: str) -> int:
    """resume=<run>: go on from its checkpoint with its saved config, in its own dir; exit code."""
    from dltrain.jobs import run_job
    from dltrain.launch import configure_logging
    from dltrain.resume import resume_config

    if args.multirun:
        raise ConfigError("resume: continues one run; leave out --multirun (-m)")
    overrides = [o for o in args.overrides if not o.startswith("resume=")]
    with hydra_context(args.config_dir, args.config_path):
        cfg, run_dir = resume_config(target, overrides)
    run_dirs.lock(run_dir, "resume")
    configure_logging(0, run_dir)
    run_job(cfg, run_dir, sweep=False)
    return 0


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
