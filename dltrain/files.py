"""Files a run writes and reads back: atomic writes, and loads that verify before they trust.

Every file is written to a temp file in its folder and renamed over the target, so a kill leaves
the old file or the new one, never half of one. PyTorch files (checkpoints, model.pt) carry a
SHA-256 of their bytes in the zip's end-of-archive comment, which torch.load ignores, so they stay
plain torch files (safetensors files carry it in their metadata: safetensors_files). Loading
checks it (older files without one: the zip CRCs) before torch.load(weights_only=True) parses
anything. Nothing read here may run code, block on a FIFO, or follow a path the user did not name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # torch is imported where a file is saved or loaded: --help stays fast
    pass

END_OF_ZIP = b"PK\x05\x06"  # the zip end-of-central-directory record, 22 bytes + comment
SEAL = b"dltrain-sha256:"
SEALED_COMMENT = len(SEAL) + 64
TMP_SUFFIX = ".tmp"


class SaveError(RuntimeError):
    """A run's file could not be written (a full disk, a read-only folder); the old one stays."""


class UnreadableFile(ValueError):
    """A file is missing, not a regular file, corrupted, or not what it should be (one line)."""


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write via a temp file in the same folder, fsync, then rename over `path`.

    A crash or kill at any moment leaves either the old file or the new one, never half a file
    (a killed write leaves a `.<name>.*.tmp` that `remove_orphans` clears); a failed write
    (SaveError) leaves the old one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
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


def remove_orphans(folder: Path) -> list[Path]:
    """Delete the temp files that writes killed mid-way left in `folder`; returns them."""
    orphans = [p for p in Path(folder).glob(f".*{TMP_SUFFIX}") if p.is_file()]
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


def save_json_atomic(obj: Any, path: Path) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode() + b"\n"))


def save_text_atomic(text: str, path: Path) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write(path, lambda f: f.write(text.encode()))


def save_torch(obj: Any, path: Path) -> None:
    """torch.save `obj` to `path` atomically, sealed with the SHA-256 of its bytes."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    blob = seal(buffer.getvalue())
    atomic_write(path, lambda f: f.write(blob))


def seal(zip_bytes: bytes) -> bytes:
    """A zip file (torch.save, torch.jit.save) with its SHA-256 as the end record's comment."""
    if zip_bytes[-22:-18] != END_OF_ZIP or zip_bytes[-2:] != b"\0\0":
        raise ValueError("not a zip file without a comment")
    comment = SEAL + hashlib.sha256(zip_bytes).hexdigest().encode()
    return zip_bytes[:-2] + len(comment).to_bytes(2, "little") + comment


def verified_zip(path: Path, data: bytes) -> bytes:
    """`data` (the bytes of zip file `path`) if its seal, or else its zip CRCs, hold."""
    tail = data[-SEALED_COMMENT - 22 :]
    if tail[-SEALED_COMMENT:].startswith(SEAL):
        if tail[:4] != END_OF_ZIP or tail[20:22] != SEALED_COMMENT.to_bytes(2, "little"):
            raise UnreadableFile(f"{path} is corrupted: its zip end record is damaged")
        unsealed = data[: -SEALED_COMMENT - 2] + b"\0\0"
        expected = tail[-64:].decode("ascii", "replace")
        if hashlib.sha256(unsealed).hexdigest() != expected:
            raise UnreadableFile(f"{path} is corrupted: its SHA-256 checksum does not match")
        return data
    if data[-22:-18] != END_OF_ZIP:
        raise UnreadableFile(f"{path} is truncated, corrupted or not a PyTorch weights file")
    try:  # written before files were sealed: the zip's own CRCs are all there is to check
        bad = zipfile.ZipFile(io.BytesIO(data)).testzip()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise UnreadableFile(
            f"{path} is truncated, corrupted or not a PyTorch weights file ({e})"
        ) from None
    if bad is not None:
        raise UnreadableFile(f"{path} is corrupted: the CRC of {bad} does not match")
    return data


def read_regular(path: Path, what: str = "file") -> bytes:
    """The bytes of `path`, which must be a regular file (never a FIFO or device: they block)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(f"{what} {path} is {kind_of(mode)}, not a regular file")
        return path.read_bytes()
    except FileNotFoundError:
        raise UnreadableFile(f"{what} {path} does not exist") from None
    except OSError as e:
        raise UnreadableFile(f"{what} {path} cannot be read: {e.strerror or e}") from None


def kind_of(mode: int) -> str:
    """What a file mode says the file is, in words ('a FIFO', 'a folder', ...)."""
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def load_torch(path: Path, what: str = "checkpoint") -> Any:
    """A verified PyTorch file, read with weights_only=True (tensors and plain data only)."""
    import torch

    data = verified_zip(path, read_regular(path, what))
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # any parser error: the file is not a weights-only PyTorch file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UnreadableFile(f"{what} {path} is not a PyTorch weights file ({reason})") from None
