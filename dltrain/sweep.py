"""What one job of a sweep does differently: its share of the cores or GPUs, its seed, resuming.

Parallel jobs (hydra/launcher=joblib) each get cores // n_jobs torch threads, so N jobs do not
oversubscribe the machine, and on a machine with several GPUs each job is pinned to GPU
`job number % GPUs`. With trainer.seed null, every job trains with the sweep's one seed, drawn by
the first job that needs it and kept in <sweep dir>/seed.txt (a resumed sweep reads it), so a grid
compares its settings, not seeds; a seed swept or given is each job's own. With `resume_sweep`, a
job whose run dir says it completed is skipped, one with a checkpoint continues from it, and the
rest start fresh (dltrain.sweep_resume finds the dir).
"""

from __future__ import annotations

import os
import random
import stat
import uuid
from pathlib import Path
from typing import Any

import torch

from dltrain.cpu import share, share_with_jobs, usable_cpus
from dltrain.errors import ConfigError
from dltrain.sweep_resume import previous_outcome  # noqa: F401  (hydra_main imports it from here)


def threads_for_job(n_jobs: int, cores: int) -> int:
    """Torch threads for each of `n_jobs` parallel jobs on `cores` cores (-1: one job per core)."""
    return share(n_jobs, cores)


def gpu_for_job(job_number: int, gpus: int) -> int | None:
    """The GPU a parallel job is pinned to (round robin), or None without several GPUs."""
    return job_number % gpus if gpus > 1 else None


def share_machine(launcher: dict[str, Any], job_number: int, device: str) -> dict[str, Any]:
    """Set this job's threads and GPU when the launcher runs jobs side by side; say what was set."""
    n_jobs = launcher.get("n_jobs")
    if "joblib" not in str(launcher.get("_target_", "")) or n_jobs in (None, 1):
        return {}
    threads = threads_for_job(int(n_jobs), usable_cpus())
    share_with_jobs(int(n_jobs) if int(n_jobs) >= 1 else usable_cpus())  # -1: one per core
    torch.set_num_threads(threads)  # trainer.threads=null takes this share (dltrain.cpu)
    shared: dict[str, Any] = {"threads": threads}
    gpu = gpu_for_job(job_number, torch.cuda.device_count()) if device in ("auto", "cuda") else None
    if gpu is not None:
        torch.cuda.set_device(gpu)
        shared["gpu"] = gpu
    return shared


SEED_FILE = "seed.txt"


def sweep_seed(sweep_dir: Path) -> int:
    """The seed of every job in `sweep_dir` that gives none: <sweep_dir>/seed.txt's, or one drawn
    now and written there (of jobs racing to write it, the first wins and all read that one)."""
    path = sweep_dir / SEED_FILE
    if not os.path.lexists(path):
        sweep_dir.mkdir(parents=True, exist_ok=True)
        tmp = sweep_dir / f".{SEED_FILE}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(f"{random.SystemRandom().randrange(2**31)}\n")
        try:
            os.link(tmp, path)  # atomic, never over another job's: whole or not there at all
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return _read_seed(path)


def _read_seed(path: Path) -> int:
    """The seed in a sweep's seed.txt; ConfigError if it holds anything else."""
    text = ""
    if stat.S_ISREG(os.lstat(path).st_mode):  # never a link out of the sweep dir, nor a FIFO
        with open(path, "rb") as f:
            text = f.read(32).decode("ascii", errors="replace").strip()
    if not (text.isascii() and text.isdigit() and int(text) < 2**32):
        raise ConfigError(
            f"{path}: not a seed (a sweep's {SEED_FILE} holds one integer in [0, 2**32 - 1]); "
            "delete it to draw a new one, or give trainer.seed"
        )
    return int(text)
