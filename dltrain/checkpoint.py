"""Checkpoints: one dict per file, written atomically, read back with weights_only=True.

save_training_state / restore_training_state map a run's whole training state to that dict.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from omegaconf import OmegaConf

from dltrain import __version__
from dltrain.parts import EpochProgress, FitState, Parts
from dltrain.registry import ConfigError


class SaveError(RuntimeError):
    """A run's file could not be written (a full disk, a read-only folder); the old one stays."""


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write via a temp file in the same folder, fsync, then rename over `path`.

    A crash or kill at any moment leaves either the old file or the new one, never half a file;
    a failed write (SaveError) leaves the old one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise SaveError(f"cannot write {path}: {e.strerror}") from e
    file = _Recording(os.fdopen(fd, "wb"))
    try:
        with file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes it private; a run's files are as any other
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        failed = file.error or (e if isinstance(e, OSError) else None)
        if failed is None:
            raise
        kept = "; the previous one is kept" if path.exists() else ""
        raise SaveError(f"cannot write {path}: {failed.strerror or failed}{kept}") from e


class _Recording:
    """A file whose write errors are kept: torch.save turns them into vaguer RuntimeErrors."""

    def __init__(self, file: BinaryIO):
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def __enter__(self) -> _Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.file.close()
        except OSError as e:  # the last buffered bytes fail to reach the disk
            self.error = self.error or e
            if exc[0] is None:
                raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # read once, at import: os.umask is process-wide


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save `obj` to `path` atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_json_atomic(obj: Any, path: Path) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode() + b"\n"))


def save_text_atomic(text: str, path: Path) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write(path, lambda f: f.write(text.encode()))


def save_safetensors(
    state_dict: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write a state_dict as safetensors atomically (temp file in the same folder, then rename)."""
    from safetensors.torch import save

    tensors, storages = {}, set()
    for name, value in state_dict.items():
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in storages and tensor.numel():  # safetensors refuses tensors sharing memory
            tensor = tensor.clone()
        storages.add(storage)
        tensors[name] = tensor
    blob = save(tensors, metadata=metadata)
    atomic_write(Path(path), lambda f: f.write(blob))


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely; a missing, truncated or foreign file is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise ConfigError(
            f"checkpoint {path} is truncated, corrupted or not a PyTorch weights file "
            f"({type(e).__name__})"
        ) from None


def find(target: str | Path, name: str) -> Path:
    """A checkpoint file given itself or by its run dir (whose checkpoints/<name> it means)."""
    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / "checkpoints" / name).is_file():
            raise ConfigError(f"{path} is not a dltrain run dir: it has no checkpoints/{name}")
        return path / "checkpoints" / name
    if not path.exists():
        raise ConfigError(f"{path}: no such run dir or checkpoint file")
    return path


def resume_path(target: str | Path) -> Path:
    """The checkpoint to resume from: the file itself, or a run dir's checkpoints/last.pt."""
    try:
        return find(target, "last.pt").resolve()
    except ConfigError as e:
        raise ConfigError(f"resume: {e}") from None


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in types that weights_only loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what rng_states() captured."""
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_training_state(parts: Parts, state: FitState, name: str, keep: int = 0) -> None:
    """Write everything training needs to go on (checkpoints/<name>), atomically.

    With `keep` > 0 the file is also kept as step-<step>.pt, the newest `keep` of those stay.
    Only rank 0 writes (every rank holds the same state).
    """
    if not parts.world.main:
        return
    early_stopping = parts.regs.get("early_stopping")
    schedule, scaler = parts.opts.schedule, parts.opts.scaler
    folder = parts.run_dir / "checkpoints"
    parts.tracker.flush()  # what was logged up to this step survives a kill, as the weights do
    save_atomic(
        {
            "model": parts.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": schedule.scheduler.state_dict() if schedule else None,
            "scaler": scaler.state_dict() if scaler else None,
            "epoch": state.epoch,  # completed epochs
            "step": state.step,
            "progress": asdict(state.progress),  # of the epoch under way, if mid-epoch
            "batches": parts.batches["train"].state_dict(),  # its order and position
            "best": {
                "monitor": parts.trainer.monitor,
                "mode": parts.trainer.monitor_mode,
                "value": state.best_value,
                "epoch": state.best_epoch,
                "metrics": state.best_metrics,
            },
            "last_metrics": state.last_metrics,
            "early_stopping": early_stopping.state_dict() if early_stopping else None,
            "rng": rng_states(),
            "config": OmegaConf.to_container(parts.cfg, resolve=True),
            "data_meta": parts.data.meta.to_dict(),
            "world_size": parts.world.size,  # informative: any number of ranks may resume
            "dltrain_version": __version__,
        },
        folder / name,
    )
    if keep > 0:
        kept = folder / f"step-{state.step:08d}.pt"
        kept.unlink(missing_ok=True)
        os.link(folder / name, kept)  # the same file under a second name: no second write
        for old in sorted(folder.glob("step-*.pt"))[:-keep]:
            old.unlink()


def restore_training_state(parts: Parts, state: FitState, saved: dict[str, Any]) -> None:
    """Put a run back where a save_training_state checkpoint left it, RNGs and data order too."""
    parts.model.load_state_dict(saved["model"])
    parts.optimizer.load_state_dict(saved["optimizer"])
    if parts.opts.schedule is not None and saved["scheduler"] is not None:
        parts.opts.schedule.scheduler.load_state_dict(saved["scheduler"])
    if parts.opts.scaler is not None and saved["scaler"] is not None:
        parts.opts.scaler.load_state_dict(saved["scaler"])
    if (early_stopping := parts.regs.get("early_stopping")) and saved["early_stopping"]:
        early_stopping.load_state_dict(saved["early_stopping"])
    best = saved["best"]
    state.epoch, state.step = saved["epoch"], saved["step"]
    state.best_value, state.best_epoch = best["value"], best["epoch"]
    state.best_metrics, state.last_metrics = best.get("metrics", {}), saved.get("last_metrics", {})
    state.progress = EpochProgress(**saved.get("progress", {}))
    if "batches" in saved:
        parts.batches["train"].load_state_dict(saved["batches"])
    set_rng_states(saved["rng"])
