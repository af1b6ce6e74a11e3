"""resume_sweep=<dir>: each job of the new command finds the earlier job that had its settings.

A job is matched by its overrides (as a set, `resume_sweep=` left out), never by its number: a
changed or reordered grid renumbers the jobs. Matched and completed: skipped; matched with
checkpoints/last.pt: resumed in that dir; otherwise the job runs in a dir no earlier job used.

Hydra writes a job's .hydra/ files into its output dir before the task function runs, so the dir
is chosen where Hydra computes it: `continue_overrides` sets hydra.sweep.subdir to the
`dltrain_resume_dir` resolver, which run_job evaluates in the process running the job (this one,
or a joblib worker: dltrain.cli and the joblib launcher import this module, which registers it),
while HydraConfig holds the job's number and overrides. Jobs of one attempt claim their dirs with
files created O_EXCL under <sweep>/.resume_sweep/<attempt>/, so parallel jobs never share one.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from dltrain.run_files import read_overrides, read_summary
from dltrain.run_names import safe_name

IGNORED = ("resume_sweep=",)  # how a job was started, not what it trains
CLAIMS = ".resume_sweep"  # <sweep>/.resume_sweep/<attempt>/: the dirs this attempt's jobs took
_NUMBERED = re.compile(r"(\d+)(?:_|$)")  # a job dir: its number, then its swept overrides
_CHOSEN: dict[tuple[str, int], tuple[Path, bool]] = {}  # (attempt, job) -> (dir, an earlier one)


def previous_outcome(run_dir: Path) -> tuple[str, dict[str, Any]]:
    """What an earlier attempt left in a job's dir: ("completed", summary), ("checkpoint", {}) or
    ("none", {}), with {"unreadable": reason} for a metrics.json that cannot be read."""
    summary, why = read_summary(run_dir)
    if summary is not None and summary.get("status") == "completed":
        return "completed", summary
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return "checkpoint", {}
    return "none", {"unreadable": why} if why else {}


def continue_overrides(sweep_dir: Path) -> list[str]:
    """Hydra overrides that put the jobs of a resumed sweep in the dirs of their earlier runs
    (given with hydra.sweep.dir=<sweep_dir>).

    Says once, for each earlier job dir whose overrides cannot be read, that it is left alone.
    """
    for why in unreadable_jobs(sweep_dir):
        print(f"dltrain: resume_sweep: {why}; that dir matches no job and is left alone")
    attempt = f"a{uuid.uuid4().hex[:12]}"  # a letter first: OmegaConf reads digits as a number
    return [
        f"hydra.sweep.subdir=${{dltrain_resume_dir:{attempt}}}",
        f"hydra.output_subdir=${{dltrain_resume_output_subdir:{attempt}}}",
    ]


def keep_multirun_yaml(sweep_dir: Path) -> Path | None:
    """Move the sweep's multirun.yaml to multirun.<n>.yaml before Hydra writes the new one."""
    current = sweep_dir / "multirun.yaml"
    if not current.is_file():
        return None
    for n in itertools.count(1):
        kept = sweep_dir / f"multirun.{n}.yaml"
        if not kept.exists():
            current.rename(kept)
            return kept
    return None  # not reached: count() does not end


def settings(overrides: list[str]) -> frozenset[str]:
    """What a job trains: its overrides as a set, without how it was started."""
    return frozenset(o for o in overrides if not o.startswith(IGNORED))


def earlier_jobs(sweep_dir: Path) -> list[tuple[Path, frozenset[str] | None]]:
    """Every job dir under the sweep dir (a .hydra/overrides.yaml) and its settings (None:
    unreadable), in natural order."""
    found = []
    for path in sweep_dir.rglob("overrides.yaml"):
        run_dir = path.parent.parent
        if path.parent.name != ".hydra" or CLAIMS in run_dir.relative_to(sweep_dir).parts:
            continue
        overrides, _ = read_overrides(run_dir)
        found.append((run_dir, None if overrides is None else settings(overrides)))
    return sorted(found, key=lambda job: _natural(job[0]))


def unreadable_jobs(sweep_dir: Path) -> list[str]:
    """Why each earlier job dir whose overrides cannot be read is no match for any job."""
    dirs = [run_dir for run_dir, found in earlier_jobs(sweep_dir) if found is None]
    return [f"{d / '.hydra' / 'overrides.yaml'}: {read_overrides(d)[1]}" for d in dirs]


def choose_dir(
    sweep_dir: Path, attempt: str, num: int, overrides: list[str], label: str = ""
) -> tuple[Path, bool]:
    """The dir of job `num` of this attempt, and whether an earlier job of its settings left it
    (a new one is named by `label`, its swept overrides); prints what was matched."""
    claims = sweep_dir / CLAIMS / attempt
    claims.mkdir(parents=True, exist_ok=True)
    wanted = settings(overrides)
    head = f"dltrain: resume_sweep: job {num} ({' '.join(o for o in overrides if o in wanted)})"
    matches = [d for d, s in earlier_jobs(sweep_dir) if s == wanted]
    for run_dir in sorted(matches, key=_preference):
        if not _claim(claims, sweep_dir, run_dir):
            continue  # the same settings twice in one command: the other job has this dir
        outcome, summary = previous_outcome(run_dir)
        if outcome != "none":
            print(f"{head} matches {run_dir}: {'skipped' if outcome == 'completed' else 'resumed'}")
            return run_dir, True
        new = _new_dir(sweep_dir, num, claims, label)
        why = f"metrics.json unreadable: {summary['unreadable']}" if summary else "no checkpoint"
        print(f"{head} matches {run_dir}, which stopped ({why}): runs again in new dir {new}")
        return new, False
    new = _new_dir(sweep_dir, num, claims, label)
    print(f"{head}: no earlier job, new dir {new}")
    return new, False


def _preference(run_dir: Path) -> int:
    """Completed first, then resumable, then the rest (several dirs may hold one setting)."""
    return ["completed", "checkpoint", "none"].index(previous_outcome(run_dir)[0])


def _claim(claims: Path, sweep_dir: Path, run_dir: Path) -> bool:
    """Take `run_dir` for one job of this attempt; False if another job took it first."""
    name = run_dir.relative_to(sweep_dir).as_posix().replace("/", "%")
    try:
        os.close(os.open(claims / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _new_dir(sweep_dir: Path, num: int, claims: Path, label: str) -> Path:
    """A dir no earlier job used, `<number>_<label>`: the job's number if no dir has it, else the
    next free number (reserved under `claims`, so parallel jobs never take the same one)."""
    taken = {int(m[1]) for p in sweep_dir.iterdir() if (m := _NUMBERED.match(p.name))}
    start = [] if num in taken else [num]
    for number in itertools.chain(start, itertools.count(max(taken, default=-1) + 1)):
        if not _claim(claims, sweep_dir, sweep_dir / f"#{number}"):
            continue  # another job of this attempt took the number
        new = sweep_dir / safe_name(number, label)
        try:
            new.mkdir()
        except FileExistsError:
            continue
        _claim(claims, sweep_dir, new)
        return new
    raise AssertionError("not reached: count() does not end")


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _job_dir(attempt: Any) -> str:
    """hydra.sweep.subdir of a resumed sweep: the chosen dir, relative to the sweep dir."""
    hydra = HydraConfig.get()
    key = (str(attempt), int(hydra.job.num))
    if key not in _CHOSEN:  # once per job: Hydra may read the setting again
        sweep_dir = Path(str(hydra.sweep.dir)).resolve()
        overrides = [str(o) for o in hydra.overrides.task]
        label = str(hydra.job.override_dirname)
        _CHOSEN[key] = choose_dir(sweep_dir, *key, overrides, label)
        sys.stdout.flush()
    return os.path.relpath(_CHOSEN[key][0], Path(str(hydra.sweep.dir)).resolve())


def _output_subdir(attempt: Any) -> str | None:
    """hydra.output_subdir of a resumed sweep: none in an earlier job's dir (its .hydra/ keeps the
    command it ran with), .hydra in a new one."""
    chosen = _CHOSEN.get((str(attempt), int(HydraConfig.get().job.num)))
    return None if chosen and chosen[1] else ".hydra"


OmegaConf.register_new_resolver("dltrain_resume_dir", _job_dir, replace=True)
OmegaConf.register_new_resolver("dltrain_resume_output_subdir", _output_subdir, replace=True)
