"""A run dir belongs to one process: fresh default names, and an exclusive lock while it runs.

Two commands started in the same second used to share `outputs/<date>/<time>_<model>_<dataset>/`
(dltrain.run_names); now the second takes `<that name>_2`. A folder named on purpose
(hydra.run.dir, hydra.sweep.dir, resume=) is locked with flock for as long as this process lives:
a second process aiming at it is refused, and the kernel drops the lock when the holder dies, so a
killed run never leaves a stale one.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import IO

from dltrain.errors import ConfigError

LOCK_FILE = ".dltrain.lock"
RUN_MARKERS = ("config.yaml", "metrics.json", "checkpoints")  # what a started run leaves
SWEEP_MARKERS = ("multirun.yaml",)
MAX_SUFFIX = 1000
_held: dict[Path, IO[str]] = {}  # open lock files: closing one would release its lock


def claim_fresh(target: Path) -> Path:
    """Create and lock `target`, or `<target>_2`, `_3`, ... if that name is taken already."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, MAX_SUFFIX):
        candidate = target if n == 1 else target.with_name(f"{target.name}_{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        lock(candidate)
        return candidate
    raise ConfigError(f"{target}: {MAX_SUFFIX} runs already started under this name")


def claim(folder: Path, key: str, markers: tuple[str, ...] = RUN_MARKERS) -> Path:
    """Lock a folder named on purpose (made if absent); refused if in use or holding a run."""
    folder.mkdir(parents=True, exist_ok=True)
    lock(folder, key)
    if found := holds_run(folder, markers):
        release(folder)
        raise ConfigError(
            f"{key}: {folder} already holds a run ({found}); give another folder, or continue "
            f"that run with {'resume_sweep' if markers is SWEEP_MARKERS else 'resume'}={folder}"
        )
    return folder


def holds_run(folder: Path, markers: tuple[str, ...] = RUN_MARKERS) -> str | None:
    """The first sign that `folder` holds a run (or sweep) already, if any."""
    return next((m for m in markers if (folder / m).exists()), None)


def lock(folder: Path, key: str = "run dir") -> None:
    """Hold an exclusive lock on `folder` until this process ends; ConfigError if taken."""
    folder = folder.absolute()
    if folder in _held:
        return
    try:
        file = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 - held open while the process lives
    except OSError as e:
        raise ConfigError(f"{key}: cannot lock {folder}: {e.strerror}") from None
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        file.seek(0)
        holder = file.read().strip() or "unknown"
        file.close()
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            raise ConfigError(f"{key}: cannot lock {folder}: {e.strerror}") from None
        raise ConfigError(
            f"{key}: {folder} is in use by another dltrain process (pid {holder}); wait for it "
            "to end, or give another folder"
        ) from None
    file.seek(0)
    file.truncate()
    file.write(f"{os.getpid()}\n")
    file.flush()
    _held[folder] = file


def release(folder: Path) -> None:
    """Give up the lock on `folder` (if this process holds it)."""
    if file := _held.pop(folder.absolute(), None):
        file.close()
