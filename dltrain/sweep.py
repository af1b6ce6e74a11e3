"""What one job of a sweep does differently: its share of the cores or GPUs, and resuming.

Parallel jobs (hydra/launcher=joblib) each get cores // n_jobs torch threads, so N jobs do not
oversubscribe the machine, and on a machine with several GPUs each job is pinned to GPU
`job number % GPUs`. With `resume_sweep`, a job whose run dir says it completed is skipped, one
with a checkpoint continues from it, and the rest start fresh (dltrain.sweep_resume finds the dir).
"""

from __future__ import annotations

from typing import Any

import torch

from dltrain.cpu import share, share_with_jobs, usable_cpus
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
