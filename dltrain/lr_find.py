"""dltrain-lr-find: the learning-rate range test (dltrain.range_test) on the run that `dltrain`
with the same command line would train; prints the suggested lr as the override to give it.

Its folder (default outputs/lr_find/<date>/<time>/) holds lr_find.json (settings and outcome,
written first: dltrain-report leaves a folder holding it out), lr_find.csv, lr_find.png,
config.yaml and TensorBoard. Exit 0 with a suggestion, 1 when the loss never clearly fell (the
curve is still written), 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig

from dltrain import lr_find_curve, plugins, preflight, range_test, run_dirs
from dltrain.build.run import build_run
from dltrain.composition import hydra_context
from dltrain.errors import ConfigError
from dltrain.failures import command
from dltrain.files import save_json_atomic
from dltrain.project import project_config_dir
from dltrain.runs_table import NOT_RUNS
from dltrain.world import processes

PROG = "dltrain-lr-find"
SUMMARY = NOT_RUNS[0]  # lr_find.json
NOT_HERE = ("resume", "resume_sweep")  # ways to continue a run: the test starts from scratch


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as every other mistake
        raise ConfigError(f"{message} (see {PROG} --help)")


def parser() -> argparse.ArgumentParser:
    """The command line: dltrain's overrides and config flags, and the sweep's own options."""
    p = _Parser(
        prog=PROG,
        description="Learning-rate range test: train while the lr grows exponentially, suggest "
        "the lr where the smoothed loss falls fastest. Takes the overrides `dltrain` takes.",
    )
    p.add_argument("overrides", nargs="*", help="group=option and key=value, as for dltrain")
    p.add_argument("--min-lr", type=float, default=range_test.MIN_LR, help="first lr (%(default)g)")
    p.add_argument("--max-lr", type=float, default=range_test.MAX_LR, help="last lr (%(default)g)")
    p.add_argument(
        "--steps", type=int, default=range_test.STEPS, help="optimiser steps (%(default)s)"
    )
    p.add_argument(
        "--beta", type=float, default=range_test.BETA, help="loss smoothing (%(default)s)"
    )
    p.add_argument(
        "--divergence", type=float, default=range_test.DIVERGENCE,
        help="stop once the smoothed loss is this many times its best (%(default)s)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="folder (default outputs/lr_find/<date>/<time>)")
    p.add_argument("--config-dir", "-cd", help="your config folder, searched before dltrain's")
    p.add_argument("--config-path", "-cp", help="a primary config folder instead of dltrain's")
    p.add_argument("--config-name", "-cn", default="config", help="primary config (%(default)s)")
    return p


def checked_config(overrides: list[str], config_name: str) -> DictConfig:
    """The config `dltrain <overrides>` would train, checked as dltrain checks it; plugins loaded.

    Runs inside the command's Hydra context.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        parsed = []  # preflight says what is wrong with them
    problems = [
        f"{o.input_line}: the lr finder tests one configuration; give one value"
        for o in parsed
        if o.is_sweep_override()
    ]
    problems += [
        f"{o.key_or_group}: the lr finder starts from the config's new model; leave it out"
        for o in parsed
        if o.key_or_group in NOT_HERE
    ]
    if problems or (problems := preflight.problems(overrides, False, config_name)):
        raise ConfigError(problems)
    cfg = compose(config_name, overrides=overrides)
    plugins.for_run(cfg)
    return cfg


def output_folder(out: Path | None) -> Path:
    """The folder named with --out (new, or empty of runs), or a new one under outputs/lr_find/."""
    if out is not None:
        markers = (*run_dirs.RUN_MARKERS, SUMMARY)
        return run_dirs.claim(out.expanduser().absolute(), "--out", markers)
    now = datetime.now()
    default = Path("outputs", "lr_find", f"{now:%Y-%m-%d}", f"{now:%H-%M-%S}")
    return run_dirs.claim_fresh(default.absolute())


def lr_key(cfg: DictConfig) -> str:
    """The setting that decides the lr: a one-cycle schedule's peak, else the optimizer's."""
    return "scheduler.max_lr" if "max_lr" in cfg.get("scheduler", {}) else "optimizer.lr"


def dltrain_command(args: argparse.Namespace, key: str, lr: float) -> str:
    """The `dltrain` command line given, with the suggested lr."""
    kept = [o for o in args.overrides if o.lstrip("+").partition("=")[0] != key]
    flags = [f"--config-dir={args.config_dir}"] if args.config_dir else []
    flags += [f"--config-path={args.config_path}"] if args.config_path else []
    flags += [f"--config-name={args.config_name}"] if args.config_name != "config" else []
    return shlex.join(["dltrain", *flags, *kept, f"{key}={lr:.1e}"])


def summary(args: argparse.Namespace, result: range_test.RangeTest, seconds: float) -> dict:
    """What lr_find.json records once the sweep is over."""
    return {
        "status": "suggested" if result.suggestion else "no_suggestion",
        "overrides": args.overrides,
        "settings": {
            k: getattr(args, k) for k in ("min_lr", "max_lr", "steps", "beta", "divergence")
        },
        "suggestion": result.suggestion,
        "falling": list(result.falling) if result.falling else None,
        "steps_taken": len(result.lrs),
        "stopped_early": result.stopped_early,
        "no_suggestion": result.no_suggestion,
        "sweep_seconds": round(seconds, 3),
    }


def find(args: argparse.Namespace, cfg: DictConfig, folder: Path) -> int:
    """Build the run in `folder`, sweep, write the curve, print the suggestion; the exit code."""
    save_json_atomic({"status": "running", "overrides": args.overrides}, folder / SUMMARY)
    try:
        result, seconds, png = sweep_into(args, cfg, folder)
    except Exception as e:  # the folder says why it holds no curve
        failed = {
            "status": "failed",
            "overrides": args.overrides,
            "error": f"{type(e).__name__}: {e}",
        }
        save_json_atomic(failed, folder / SUMMARY)
        raise
    save_json_atomic(summary(args, result, seconds), folder / SUMMARY)
    ended = f"stopped early: {result.stopped_early}" if result.stopped_early else "ran to the end"
    print(f"{len(result.lrs)} steps in {seconds:.1f} s, {ended}")
    print(f"curve: {png} (and lr_find.csv, TensorBoard in {folder})")
    if result.suggestion is None:
        print(f"{PROG}: no suggestion: {result.no_suggestion}", file=sys.stderr)
        return 1
    low, high = result.falling or (math.nan, math.nan)
    lr = result.suggestion
    print(f"the smoothed loss fell from lr {low:.1e} to {high:.1e}, fastest at {lr:.1e}")
    if (ranks := processes(cfg.trainer)) > 1:
        print(f"(tested in one process: with {ranks}, each step averages {ranks} batches)")
    print(f"suggested learning rate {lr:.1e}: {dltrain_command(args, lr_key(cfg), lr)}")
    return 0


def sweep_into(
    args: argparse.Namespace, cfg: DictConfig, folder: Path
) -> tuple[range_test.RangeTest, float, Path]:
    """Build the run in `folder` and sweep: (the result, its seconds, the plot's path)."""
    built = build_run(cfg, folder)
    with built.tracker:
        started = time.perf_counter()
        result = range_test.range_test(
            built, args.min_lr, args.max_lr, args.steps, args.beta, args.divergence
        )
        seconds = time.perf_counter() - started
        title = f"lr range test: {cfg.model.name} on {cfg.dataset.name}, {cfg.optimizer.name}"
        print(title)
        return result, seconds, lr_find_curve.save_curve(result, folder, built, title)


def main(argv: Sequence[str] | None = None) -> None:
    """`dltrain-lr-find [--min-lr ..] [--max-lr ..] [--steps ..] [--out DIR] [overrides ...]`."""
    code = 0

    def body() -> None:
        nonlocal code
        args = parser().parse_intermixed_args(sys.argv[1:] if argv is None else list(argv))
        for name in ("config_dir", "config_path"):  # relative to where the user is, as dltrain
            if value := getattr(args, name):
                setattr(args, name, str(Path(value).expanduser().absolute()))
        problems = []
        try:
            range_test.check_settings(
                args.min_lr, args.max_lr, args.steps, args.beta, args.divergence
            )
        except ConfigError as e:
            problems = e.problems
        try:
            with hydra_context(args.config_dir or project_config_dir(), args.config_path):
                cfg = checked_config(args.overrides, args.config_name)
        except ConfigError as e:
            problems += e.problems
        if problems:
            raise ConfigError(problems)
        code = find(args, cfg, output_folder(args.out))

    command(PROG, body)
    sys.exit(code)


if __name__ == "__main__":
    main()
