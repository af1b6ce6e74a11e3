"""What this process's CPU offers: its instruction-set flags and the cores it may use.

Each reader takes its file as an argument, so tests point it at a fake one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>"
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")  # cpu.cfs_quota_us (-1: none), cpu.cfs_period_us
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # the CPU has bfloat16 instructions (fast autocast)


def cpu_flags(cpuinfo: Path | None = None) -> set[str]:
    """The first processor's `flags` in /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = (cpuinfo or CPUINFO).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / ARM
            return set(value.split())
    return set()


def bf16_flags(cpuinfo: Path | None = None) -> list[str]:
    """The CPU's bfloat16 flags (avx512_bf16, amx_bf16) that it has; empty: none."""
    flags = cpu_flags(cpuinfo)
    return [flag for flag in BF16_FLAGS if flag in flags]


def cpu_quota(v2: Path | None = None, v1: Path | None = None) -> int | None:
    """The cgroup's CPU quota in whole CPUs, rounded up (None: no quota)."""
    try:
        quota, period = (v2 or CGROUP_V2).read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = ((v1 or CGROUP_V1) / "cpu.cfs_quota_us").read_text().strip()
            period = ((v1 or CGROUP_V1) / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by the cgroup's quota.

    Not os.cpu_count(): a container or `taskset` often gives a process fewer than the machine has.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this OS
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, min(cpus, quota) if quota else cpus)


def share(processes: int, cores: int) -> int:
    """Threads for each of `processes` side by side on `cores` cores (< 1: one per core)."""
    if processes < 1:
        return 1
    return max(1, cores // processes)


def set_threads(threads: int) -> None:
    """Use `threads` for torch's intra-op pool; children (subprocesses) inherit it via OpenMP/MKL.

    DataLoader workers run with one thread each (torch sets that in every worker).
    """
    torch.set_num_threads(threads)
    try:  # only before any inter-op work has started; afterwards torch refuses
        if torch.get_num_interop_threads() != threads:
            torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


_SIDE_BY_SIDE = {"jobs": 1}  # parallel sweep jobs on this machine (set by dltrain.sweep)


def share_with_jobs(jobs: int) -> None:
    """This process is one of `jobs` sweep jobs running side by side: default threads shrink."""
    _SIDE_BY_SIDE["jobs"] = jobs


def default_threads(processes_per_node: int = 1, workers: int = 0) -> int:
    """trainer.threads=null: this process's share of the usable CPUs (DDP ranks, sweep jobs),
    less one for each of its DataLoader workers (they run one thread each); at least 1."""
    return max(1, share(_SIDE_BY_SIDE["jobs"] * processes_per_node, usable_cpus()) - workers)
