"""Hostile data files: pickles that run code or crash numpy.

Every one must end in a one-line ConfigError at once: nothing run, nothing hung, no traceback.
"""

from __future__ import annotations

import builtins
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dltrain.registry import ConfigError

from .test_vision_data import build, py2_dumps, write_cifar


class Payload:
    """Pickles as a call of `call(*args)`: what a crafted pickle makes an unpickler do."""

    def __init__(self, call: Callable[..., object], *args: object):
        self.call, self.args = call, args
        self.state: object = None

    def with_state(self, state: object) -> Payload:
        """The same call, then its result's __setstate__(state) (pickle's BUILD)."""
        self.state = state
        return self

    def __reduce__(self) -> tuple:
        return (self.call, self.args) if self.state is None else (self.call, self.args, self.state)


def crafted_batch(marker: Path, attack: str) -> bytes:
    """A batch-shaped pickle whose b"data" is a call that creates `marker` when unpickled."""
    call = {
        "os.system": Payload(os.system, f"touch {marker}"),
        "builtins.open": Payload(builtins.open, str(marker), "w"),
    }[attack]
    return py2_dumps({b"data": call, b"labels": [0] * 20})  # as the official files are written


def one_line(error: BaseException | None) -> str:
    assert isinstance(error, ConfigError), f"expected a ConfigError, got {error!r}"
    [line] = str(error).splitlines()
    return line


@pytest.mark.parametrize("archive", [False, True])
@pytest.mark.parametrize("attack", ["os.system", "builtins.open"])
def test_a_crafted_cifar_pickle_is_refused_and_runs_nothing(
    tmp_path: Path, attack: str, archive: bool
) -> None:
    control = tmp_path / "CONTROL"
    pickle.loads(crafted_batch(control, attack))  # the payload is live for a plain unpickler
    assert control.exists()
    marker = tmp_path / "MARKER"
    folder = write_cifar(tmp_path / "data")
    (folder / "data_batch_2").write_bytes(crafted_batch(marker, attack))
    if archive:
        with tarfile.open(tmp_path / "data" / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname="cifar-10-batches-py")
        shutil.rmtree(folder)
    with pytest.raises(ConfigError) as err:
        build("cifar10", data_dir=str(tmp_path / "data"))
    line = one_line(err.value)
    assert "data_batch_2 is not a CIFAR-10 batch" in line and "refused" in line
    assert ("system" if attack == "os.system" else ".open") in line
    assert ("cifar-10-python.tar.gz:" in line) == archive
    assert not marker.exists()


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([1, 2, 3], "no b'data' uint8 array"),
        ({b"data": np.zeros((20, 3072)), b"labels": [0] * 20}, "dtype 'f8', not integers"),
        ({b"data": np.zeros((20, 3072), np.int64), b"labels": [0] * 20}, "no b'data' uint8"),
        ({b"data": np.zeros((20, 100), np.uint8), b"labels": [0] * 20}, "100 values per image"),
        ({b"data": np.zeros((20, 3072), np.uint8), b"labels": [10] * 20}, "numbers 0..9"),
        ({b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 19}, "20 whole numbers"),
        ({b"data": np.zeros((20, 3072), np.uint8)}, "no b'labels' list"),
    ],
)
def test_a_batch_without_a_batch_shape_is_named(
    tmp_path: Path, batch: object, message: str
) -> None:
    (write_cifar(tmp_path) / "test_batch").write_bytes(py2_dumps(batch))
    with pytest.raises(ConfigError) as err:
        build("cifar10", data_dir=str(tmp_path))
    assert "test_batch is not a CIFAR-10 batch" in one_line(err.value)
    assert message in str(err.value)


# numpy's ndarray.__setstate__ trusts its state: an object array whose list is too short is
# left holding garbage pointers, and the process crashes (numpy 2.4). These pickles ask for it.
RECONSTRUCT = np.empty(0).__reduce__()[0]
EMPTY = (np.ndarray, (0,), b"b")
CRASHERS = {
    "short object list": Payload(RECONSTRUCT, *EMPTY).with_state(
        (1, (1000,), np.dtype("O"), False, [None])
    ),
    "object array": Payload(np.ndarray, (1000,), "O"),
    "huge shape": Payload(RECONSTRUCT, np.ndarray, (10**7, 10**7), b"b"),
    "bytes short of the shape": Payload(RECONSTRUCT, *EMPTY).with_state(
        (1, (10**9,), np.dtype("u1"), False, b"x")
    ),
}
CRASH_CHECK = """
import sys
from dltrain.data.cifar import cifar_batch
from dltrain.registry import ConfigError
try:
    cifar_batch(sys.stdin.buffer.read(), "batch")
except ConfigError as e:
    print(e)
"""


@pytest.mark.parametrize("case", sorted(CRASHERS))
def test_numpy_state_that_would_crash_numpy_is_refused(case: str) -> None:
    blob = py2_dumps({b"data": CRASHERS[case], b"labels": [0]})
    # A child process: were the refusal to fail, the crash must not take the test session along.
    root = str(Path(__file__).resolve().parents[1])  # this checkout's dltrain, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", CRASH_CHECK], input=blob, capture_output=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    [line] = done.stdout.decode().splitlines()
    assert line.startswith("dataset cifar10: batch is not a CIFAR-10 batch (")
