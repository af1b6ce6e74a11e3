"""A sweep's jobs as child runs of one MLflow parent run: the first job to start creates it, and
it is RUNNING while any job runs. Jobs may run in parallel processes: the parent's id and the jobs
running are kept in the sweep's folder (mlflow_parent.json), changed under a flock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dltrain import run_files
from dltrain.files import save_json_atomic
from dltrain.tracking.backend import SAFE_ID, RunInfo

PARENT_FILE, PARENT_LOCK = "mlflow_parent.json", ".mlflow_parent.lock"


def join_sweep(client: Any, run: RunInfo, experiment_id: str, exists: Callable) -> str:
    """The sweep's parent run id, this job listed among those running."""
    sweep_dir, job = Path(run.sweep_dir), Path(run.run_dir).name
    with locked(sweep_dir / PARENT_LOCK):
        parent, jobs = _read_parent(sweep_dir)
        if parent is None or exists(parent) is None:
            tags = {"dltrain.sweep_dir": str(sweep_dir.absolute())}
            created = client.create_run(experiment_id, run_name=sweep_dir.name, tags=tags)
            parent, jobs = created.info.run_id, set()
        elif not jobs:
            client.update_run(parent, status="RUNNING")
        _save_parent(sweep_dir, parent, jobs | {job})
    return parent


def leave_sweep(client: Any, run: RunInfo) -> None:
    """This job is done; the last one running ends the parent run."""
    sweep_dir, job = Path(run.sweep_dir), Path(run.run_dir).name
    with locked(sweep_dir / PARENT_LOCK):
        parent, jobs = _read_parent(sweep_dir)
        _save_parent(sweep_dir, parent, jobs - {job})
        if parent and not jobs - {job}:
            client.set_terminated(parent, "FINISHED")


def _read_parent(sweep_dir: Path) -> tuple[str | None, set[str]]:
    """The sweep's parent run id and its running jobs, as far as the file can be trusted."""
    saved = run_files.read_json_object(sweep_dir / PARENT_FILE)[0] or {}
    jobs = saved.get("jobs") if isinstance(saved.get("jobs"), list) else []
    return (saved["run_id"] if _safe(saved.get("run_id")) else None), {j for j in jobs if _safe(j)}


def _save_parent(sweep_dir: Path, run_id: str | None, jobs: set[str]) -> None:
    save_json_atomic({"run_id": run_id, "jobs": sorted(jobs)}, sweep_dir / PARENT_FILE)


def _safe(value: Any) -> bool:
    return isinstance(value, str) and SAFE_ID.fullmatch(value) is not None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created; never a link followed) while the block runs."""
    handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)
