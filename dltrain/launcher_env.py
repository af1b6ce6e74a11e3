"""Which ranks a launcher started, read from the environment alone (no torch import).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; an srun step with one
task per rank sets SLURM_PROCID, SLURM_STEP_NUM_TASKS, ...; a run started by hand on several
machines sets NODE_RANK. `dltrain --help` reads these without paying for torch.
"""

from __future__ import annotations

import os
import re

from dltrain.errors import ConfigError

RENDEZVOUS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched(one_rank: bool = False) -> dict[str, str] | None:
    """The rendezvous variables a launcher gave this process (torchrun, srun), if several ranks.

    `one_rank`: also a launch of a single rank (a run that asks for DDP with one device).
    """
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        found = {key: env.get(key, "") for key in RENDEZVOUS}
        found["LOCAL_RANK"] = found["LOCAL_RANK"] or "0"
    elif "SLURM_STEP_ID" in env and "SLURM_STEP_NUM_TASKS" in env:  # inside an srun step
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "localhost")
        found = {
            "RANK": env["SLURM_PROCID"],
            "WORLD_SIZE": env["SLURM_STEP_NUM_TASKS"],
            "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
            "LOCAL_WORLD_SIZE": env.get("SLURM_STEP_TASKS_PER_NODE", "1").split("(")[0],
            "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodes),
            "MASTER_PORT": env.get("MASTER_PORT")
            or str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000),
        }
    else:
        return None
    return found if one_rank or int(found["WORLD_SIZE"]) > 1 else None


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: 'gpu[03-05,9],cpu1' -> 'gpu03'."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ConfigError(f"cannot read the Slurm node list '{nodelist}'; set MASTER_ADDR")
    prefix, ranges = match.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")


def node_rank() -> int:
    """Which machine of a several-node run this is (0: the first, which owns the run dir)."""
    return int(os.environ.get("NODE_RANK") or os.environ.get("SLURM_NODEID") or 0)
