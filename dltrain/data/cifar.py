"""CIFAR-10's python batches, read without letting the pickles run anything.

The official files are pickles (protocol 2, written by Python 2), and an ordinary unpickler calls
whatever global a pickle names: a crafted batch would run code during training or evaluation.
`BatchUnpickler` admits only the three numpy names an array is pickled with, and even those map
to stand-ins here: numpy's own ndarray.__setstate__ trusts its input (an object-dtype state with a
short list crashes the process), so the stand-ins check the state and build the array with
np.frombuffer from a plain integer dtype and exactly the bytes its shape needs. The result must
then look like a batch: a dict with uint8 b"data" of N x 3072 and N labels 0..9.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.data.files import is_regular, reason, regular_file
from dltrain.errors import ConfigError

FOLDER, ARCHIVE = "cifar-10-batches-py", "cifar-10-python.tar.gz"
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
MAX_BATCH_BYTES = 1 << 28  # a real batch is 30 MB; more is not a batch and may exhaust memory
PIXELS = 3 * 32 * 32
INTEGER_DTYPE = re.compile(r"[iu][1248]")  # the only array dtypes admitted (data is u1)
Batch = tuple[np.ndarray, np.ndarray]  # images (N, 3, 32, 32) uint8, labels (N,) int64


class Refused(pickle.UnpicklingError):
    """A pickle that asks the stand-ins for something no CIFAR-10 batch holds."""


NDARRAY = object()  # numpy.ndarray: only ever an argument of _reconstruct, so not callable here


class PickledDtype:
    """numpy.dtype(spec, align, copy) as a pickle calls it; becomes a numpy dtype on request."""

    def __init__(self, spec: object, align: object = False, copy: object = True):
        self.spec, self.byteorder = spec, "|"

    def __setstate__(self, state: object) -> None:
        """(version, byteorder, subarray, names, fields, ...): only a plain dtype's byteorder."""
        if not isinstance(state, tuple) or len(state) < 5 or state[2:5] != (None, None, None):
            raise Refused("a structured or sub-array dtype")
        self.byteorder = _text(state[1])

    def resolve(self) -> np.dtype:
        """The numpy dtype: a plain integer one, else Refused."""
        spec = _text(self.spec)
        if not INTEGER_DTYPE.fullmatch(spec) or self.byteorder not in ("|", "<", ">", "="):
            raise Refused(f"an array of dtype {spec!r}, not integers")
        return np.dtype(spec).newbyteorder(self.byteorder if self.byteorder in "<>" else "=")


class PickledArray:
    """What numpy's _reconstruct returns while unpickling: empty until the state fills it."""

    array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        """([version,] shape, dtype, is_fortran, raw bytes) -> a copy of exactly those bytes."""
        parts = state[1:] if isinstance(state, tuple) and len(state) == 5 else state
        if not isinstance(parts, tuple) or len(parts) != 4:
            raise Refused("an array state of an unknown layout")
        shape, dtype, fortran, raw = parts
        if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
            raise Refused(f"an array shape {shape!r}")
        if not isinstance(dtype, PickledDtype) or not isinstance(raw, bytes):
            raise Refused("an array without a dtype and raw bytes")
        dtype = dtype.resolve()
        if len(raw) != math.prod(shape) * dtype.itemsize:  # checked before any allocation
            raise Refused(f"{len(raw)} bytes for an array of shape {shape}")
        order = "F" if fortran else "C"
        self.array = np.frombuffer(raw, dtype).reshape(shape, order=order).copy()


def _reconstruct(subtype: object, shape: object, typecode: object) -> PickledArray:
    """numpy's _reconstruct(ndarray, (0,), b'b'), the one call an array's pickle makes."""
    if subtype is not NDARRAY:
        raise Refused("an array of a type other than numpy.ndarray")
    return PickledArray()


def _text(value: object) -> str:
    """A pickled str (bytes when written by Python 2) as str; Refused for anything else."""
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        raise Refused(f"{type(value).__name__} where a dtype name belongs")
    return value


# The stand-in for each admitted global, under both module names of _reconstruct: numpy < 2 and
# Python 2 wrote numpy.core.multiarray, numpy >= 2 writes numpy._core.multiarray.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): PickledDtype,
}


class BatchUnpickler(pickle.Unpickler):
    """Builds plain Python values and the array stand-ins; refuses every other global."""

    def __init__(self, blob: bytes, source: str):
        # encoding="bytes": the Python 2 str keys and array bytes stay bytes.
        super().__init__(io.BytesIO(blob), encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """The admitted global's stand-in; ConfigError (nothing imported or run) for the rest."""
        if (module, name) not in ALLOWED:
            raise ConfigError(
                f"dataset cifar10: {self.source} is not a CIFAR-10 batch: its pickle asks for "
                f"{module}.{name}, which a CIFAR-10 batch never needs (refused; nothing was run)"
            )
        return ALLOWED[(module, name)]


def read_cifar(root: Path) -> dict[str, np.ndarray]:
    """The batches from root/cifar-10-batches-py or, unextracted, from the official tar.gz."""
    folder = root / FOLDER
    if all(is_regular(folder / b, "dataset cifar10") for b in BATCHES):
        batches = {b: cifar_batch(read_file(folder / b), str(folder / b)) for b in BATCHES}
    else:
        archive = regular_file(root / ARCHIVE, "dataset cifar10")
        raw = read_members(archive, [f"{FOLDER}/{b}" for b in BATCHES])
        batches = {b: cifar_batch(raw[f"{FOLDER}/{b}"], f"{archive}:{FOLDER}/{b}") for b in BATCHES}
    return {
        "train_images": np.concatenate([batches[b][0] for b in BATCHES[:-1]]),
        "train_labels": np.concatenate([batches[b][1] for b in BATCHES[:-1]]),
        "test_images": batches["test_batch"][0],
        "test_labels": batches["test_batch"][1],
    }


def read_file(path: Path) -> bytes:
    """A batch file's bytes; ConfigError when it is too big to be one or cannot be read."""
    try:
        with regular_file(path, "dataset cifar10").open("rb") as f:
            blob = f.read(MAX_BATCH_BYTES + 1)  # bounded: a huge file is refused, not loaded
    except OSError as e:
        raise ConfigError(f"dataset file {path}: cannot be read ({reason(e)})") from None
    if len(blob) > MAX_BATCH_BYTES:
        raise ConfigError(f"dataset cifar10: {path} is too big to be a CIFAR-10 batch")
    return blob


def read_members(archive: Path, names: list[str]) -> dict[str, bytes]:
    """The named files of a .tar.gz, in one pass over the stream (the archive stays packed)."""
    found = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # stream order: looking names up instead would re-read the gzip
                if member.name not in names:
                    continue
                if not member.isfile() or member.size > MAX_BATCH_BYTES:
                    raise ConfigError(
                        f"dataset file {archive}: {member.name} is not a CIFAR-10 batch "
                        f"({'not a regular file' if not member.isfile() else 'too big'})"
                    )
                found[member.name] = tar.extractfile(member).read()
    except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
        raise ConfigError(f"dataset file {archive}: cannot be read ({reason(e)})") from None
    if absent := [n for n in names if n not in found]:
        raise ConfigError(f"dataset file {archive}: lacks {', '.join(absent)}")
    return found


def cifar_batch(blob: bytes, source: str) -> Batch:
    """Images (N, 3, 32, 32) and labels of one pickled CIFAR-10 batch; `source` names it."""
    try:
        entry = BatchUnpickler(blob, source).load()
    except ConfigError:
        raise
    except Exception as e:  # any garbage: a wrong file, truncation, a different pickle
        raise ConfigError(
            f"dataset cifar10: {source} is not a CIFAR-10 batch ({reason(e)})"
        ) from None
    return checked_batch(entry, source)


def checked_batch(entry: object, source: str) -> Batch:
    """The images and labels of an unpickled batch; ConfigError unless it has a batch's shape."""
    data, labels = (
        [_array(entry.get(key)) for key in (b"data", b"labels")]
        if isinstance(entry, dict)
        else (None, None)
    )
    problem = None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        problem = "no b'data' uint8 array of N x 3072 pixels"
    elif data.shape[1] != PIXELS:
        problem = f"b'data' holds {data.shape[1]} values per image, not {PIXELS}"
    elif not _whole_numbers(labels) or len(labels) != len(data):
        problem = f"no b'labels' list of {len(data)} whole numbers 0..9 (one per image)"
    if problem:
        raise ConfigError(f"dataset cifar10: {source} is not a CIFAR-10 batch ({problem})")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, np.int64)


def _array(value: object) -> object:
    """An unpickled value, with an array stand-in replaced by its array."""
    return value.array if isinstance(value, PickledArray) else value


def _whole_numbers(labels: object) -> bool:
    """Whether `labels` is a list or 1-D integer array of class indices 0..9."""
    if isinstance(labels, np.ndarray):  # range compared only once the dtype is known integer
        whole = labels.ndim == 1 and labels.dtype.kind in "iu"
        return whole and bool(np.all((labels >= 0) & (labels < 10)))
    # `type(v) is int`: no bool, no subclass; Python ints are what the official batches hold.
    return isinstance(labels, list) and all(type(v) is int and 0 <= v < 10 for v in labels)
