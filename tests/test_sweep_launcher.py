"""hydra/launcher=joblib: a worker process that dies fails its jobs, and the sweep goes on."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from .helpers import job_dir, run_dirs, start_command


def children(pid: int) -> list[int]:
    """The processes `pid` started (loky's workers and its resource tracker)."""
    tasks = Path(f"/proc/{pid}/task").glob("*/children")
    return [int(child) for task in tasks for child in task.read_text().split()]


def worker_of(parent: int, run_dir: Path) -> int | None:
    """The child process that has a file of `run_dir` open (its job's dltrain.log)."""
    for pid in children(parent):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # it ended meanwhile
            continue
        if any(link.startswith(f"{run_dir}/") for link in links):
            return pid
    return None


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_joblib_worker_fails_its_job_and_the_sweep_goes_on(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.epochs=2000,2001,2"]
    args += ["dataset=iris", "trainer.device=cpu", f"hydra.sweep.dir={sweep}"]
    sweep_process = start_command("dltrain", *args, cwd=tmp_path)
    deadline, killed = time.monotonic() + 240, None
    while killed is None and time.monotonic() < deadline and sweep_process.poll() is None:
        time.sleep(0.1)
        if (job_dir(sweep, 0) / "config.yaml").is_file():  # job 0 is training
            killed = worker_of(sweep_process.pid, job_dir(sweep, 0))
    assert killed, "job 0's worker process was not found"
    os.kill(killed, signal.SIGKILL)  # as the out-of-memory killer does
    out, err = sweep_process.communicate(timeout=300)

    assert sweep_process.returncode == 0, err
    assert "Traceback" not in err + out
    assert (sweep / "report.csv").is_file() and "3 runs" in out
    died = json.loads((job_dir(sweep, 0) / "metrics.json").read_text())
    assert died["status"] == "failed"
    assert "worker process died (killed, e.g. out of memory; exit codes" in died["error"]
    assert json.loads((job_dir(sweep, 2) / "metrics.json").read_text())["status"] == "completed"
    assert [d.name for d in run_dirs(sweep)] == [
        "0_trainer.epochs-2000", "1_trainer.epochs-2001", "2_trainer.epochs-2"
    ]  # fmt: skip
    assert "jobs failed: 0_trainer.epochs-2000 (failed: WorkerDied" in err
