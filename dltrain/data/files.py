"""Small helpers for datasets read from files: where data lives, IDX parsing, option checks.

Every built-in dataset looks for its official files or folder in the data root (dataset.data_dir,
else $DLTRAIN_DATA_DIR, else ~/.cache/dltrain), then in root/<dataset name> (`_` may be `-`).

Everything on disk is untrusted: a file is opened only once os.stat shows a regular file (a FIFO
or a device would block the reader forever), and every failure is a one-line ConfigError.
"""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from pathlib import Path

import numpy as np

from dltrain.errors import ConfigError
from dltrain.files import kind_of

IDX_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, columns)
IDX_LABELS = 0x00000801  # unsigned bytes, 1 dimension (count)
MAX_IDX_BYTES = 1 << 32  # far above any real IDX file; guards against a garbled header


def reason(error: BaseException) -> str:
    """An exception as one short line for a ConfigError (its message may span lines or pages)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # without the file name, which the error names already
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else f"{text[:197]}..."


def stat_of(path: Path, what: str) -> os.stat_result | None:
    """os.stat of `path` (None: nothing there); ConfigError when it cannot be looked at."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as e:  # a name too long, a loop of links, a NUL byte
        raise ConfigError(f"{what}: cannot look at {path} ({reason(e)})") from None


def is_regular(path: Path, what: str) -> bool:
    """Whether a regular file is at `path` (False: nothing); ConfigError for anything else there."""
    found = stat_of(path, what)
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise ConfigError(f"{what}: {path} is {kind_of(found.st_mode)}, not a regular file")
    return found is not None


def is_folder(path: Path, what: str) -> bool:
    """Whether a folder is at `path`; ConfigError when `path` cannot be looked at."""
    found = stat_of(path, what)
    return found is not None and stat.S_ISDIR(found.st_mode)


def regular_file(path: Path, what: str) -> Path:
    """`path` itself, once os.stat shows a regular file there; else a one-line ConfigError."""
    if not is_regular(path, what):
        raise ConfigError(f"{what}: no such file {path}")
    return path


def data_root(data_dir: str | None) -> Path:
    """`data_dir`, else $DLTRAIN_DATA_DIR, else ~/.cache/dltrain."""
    chosen = data_dir or os.environ.get("DLTRAIN_DATA_DIR") or Path.home() / ".cache" / "dltrain"
    return Path(chosen).expanduser()


def data_folders(dataset: str, data_dir: str | None) -> list[Path]:
    """Where `dataset` looks for its official files: the data root, then root/<dataset name>."""
    root = data_root(data_dir)
    named = dict.fromkeys([dataset, dataset.replace("_", "-")])  # fashion_mnist or fashion-mnist
    return [root, *(root / name for name in named)]


def find_data(dataset: str, data_dir: str | None, entries: list[str], how: str) -> Path:
    """The first of `entries` (files or folders) in data_folders; else missing_data."""
    folders = data_folders(dataset, data_dir)
    for folder in folders:
        for entry in entries:
            if stat_of(folder / entry, "dataset.data_dir") is not None:
                return folder / entry
    raise missing_data(dataset, " or ".join(str(folders[0] / e) for e in entries), folders, how)


def missing_data(dataset: str, expected: str, folders: list[Path], how: str) -> ConfigError:
    """One line for absent data: what was expected, the folders looked in, how to get it."""
    looked = f"{', '.join(map(str, folders[:-1]))} and {folders[-1]}"
    return ConfigError(
        f"dataset {dataset}: missing {expected} (looked in {looked}); {how}, "
        "or set dataset.data_dir (or DLTRAIN_DATA_DIR) to the folder that holds it"
    )


def plain_or_gz(path: Path) -> Path | None:
    """`path` if it is a file, else `path`.gz if that is one, else None (ConfigError: neither)."""
    gz = path.with_name(f"{path.name}.gz")
    return next((p for p in (path, gz) if is_regular(p, "dataset file")), None)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array in an IDX file (read in place, .gz too); ConfigError naming a bad file."""
    opener = gzip.open if path.suffix == ".gz" else open
    regular_file(path, "dataset file")
    try:
        with opener(path, "rb") as f:
            header = f.read(4)
            if len(header) < 4 or int.from_bytes(header, "big") != magic:
                raise ConfigError(
                    f"dataset file {path}: not an IDX file (magic number {header.hex() or 'none'}, "
                    f"expected {magic:08x})"
                )
            ndim = magic & 0xFF
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise ConfigError(f"dataset file {path}: truncated IDX header")
            dims = [int.from_bytes(raw_dims[i : i + 4], "big") for i in range(0, 4 * ndim, 4)]
            size = int(np.prod(dims))
            if size > MAX_IDX_BYTES:
                raise ConfigError(f"dataset file {path}: implausible IDX dimensions {dims}")
            array = np.empty(size, dtype=np.uint8)  # filled in place: no second copy in memory
            got = f.readinto(memoryview(array))
            extra = len(f.read(1))
    except (OSError, EOFError, zlib.error) as e:  # unreadable, or a broken gzip stream
        raise ConfigError(f"dataset file {path}: cannot be read ({reason(e)})") from None
    if got != size or extra:
        raise ConfigError(
            f"dataset file {path}: {'truncated' if got != size else 'has trailing bytes'}: "
            f"the header {dims} needs {size} data bytes"
        )
    return array.reshape(dims)


def check_image_options(
    random_crop_padding: int, val_fraction: float | None = None, image_size: int | None = None
) -> None:
    """ConfigError naming each impossible option as dataset.<key>, all at once."""
    problems = []
    if val_fraction is not None and not 0 <= val_fraction < 1:
        problems.append(f"dataset.val_fraction: must be in [0, 1), got {val_fraction}")
    if random_crop_padding < 0:
        problems.append(f"dataset.random_crop_padding: must be >= 0, got {random_crop_padding}")
    if image_size is not None and image_size < 1:
        problems.append(f"dataset.image_size: must be >= 1, got {image_size}")
    if problems:
        raise ConfigError(problems)
