"""Bad places to write: what the user sees, and that nothing saved before is lost."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from dltrain.checkpoint import load

WIDE_MLP = ["model.hidden_sizes=[256,256]", "trainer.seed=0", "trainer.device=cpu"]


def dltrain(*args: str, cwd: Path, file_size_limit: int | None = None):
    def limit() -> None:  # files beyond the limit fail to grow (EFBIG), as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "dltrain", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit if file_size_limit else None,
    )


def test_a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    first = dltrain(*WIDE_MLP, "trainer.epochs=1", "hydra.run.dir=run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    assert len(before) > 500_000
    # Go on with files limited to 200 kB: the next checkpoint cannot be written.
    result = dltrain("resume=run", "trainer.epochs=2", cwd=tmp_path, file_size_limit=200_000)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("dltrain:")]
    assert len(error) == 1 and "Traceback" not in result.stderr
    assert "cannot write" in error[0] and "File too large" in error[0]
    assert "the previous one is kept" in error[0]
    assert last.read_bytes() == before and load(last)["epoch"] == 1
    assert not list((tmp_path / "run").rglob("*.tmp"))  # no half-written file left behind
    assert '"status": "failed"' in (tmp_path / "run" / "metrics.json").read_text()


def test_a_run_dir_that_cannot_be_made_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    result = dltrain("trainer.epochs=1", f"hydra.run.dir={tmp_path}/a_file/run", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"hydra.run.dir: cannot create {tmp_path}/a_file/run" in result.stderr
    assert "is a file, not a folder. Give a writable folder: hydra.run.dir=<folder>" in (
        result.stderr
    )
