"""Hostile data files: pickles that run code, FIFOs that block readers, names too long to stat.

Every one must end in a one-line ConfigError at once: nothing run, nothing hung, no traceback.
"""

from __future__ import annotations

import contextlib
import csv
import os
import pickle
import shutil
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dltrain.data.image_folder import load_image
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS

from .helpers import (
    PYTHON,
    Payload,
    crafted_batch,
    make_imdb,
    make_mnist,
    py2_dumps,
    run_command,
    write_cifar,
)
from .helpers import build_dataset as build
from .helpers import dataset_options as options

WAIT_S = 30  # far above a refusal's milliseconds, even on a busy machine
LONG = "x" * 300  # one path component over NAME_MAX (255): stat fails with ENAMETOOLONG


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
from dltrain.errors import ConfigError
try:
    cifar_batch(sys.stdin.buffer.read(), "batch")
except ConfigError as e:
    print(e)
"""


@pytest.mark.parametrize("case", sorted(CRASHERS))
@pytest.mark.slow
def test_numpy_state_that_would_crash_numpy_is_refused(case: str) -> None:
    blob = py2_dumps({b"data": CRASHERS[case], b"labels": [0]})
    # A child process: were the refusal to fail, the crash must not take the test session along.
    done = run_command(PYTHON, "-c", CRASH_CHECK, input=blob, text=False, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    [line] = done.stdout.decode().splitlines()
    assert line.startswith("dataset cifar10: batch is not a CIFAR-10 batch (")


def refused_at_once(call: Callable[[], object], fifo: Path) -> str:
    """The one-line ConfigError `call` raises; the test fails if it blocks on `fifo` instead."""
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as e:  # handed to the test thread, which judges it
            outcome.append(e)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(WAIT_S)
    if worker.is_alive():
        with contextlib.suppress(OSError):  # a writer that comes and goes: the reader gets EOF
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(WAIT_S)
        pytest.fail(f"reading {fifo} blocked instead of failing at once")
    return one_line(outcome[0])


def fifo_at(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


def text(name: str, **extra: object) -> Callable[[], object]:
    return lambda: DATASETS.build(name, options(name, **extra))


def fifo_case(case: str, tmp: Path) -> tuple[Path, Callable[[], object]]:
    """A FIFO where dataset `case` reads a file, and the call that would read it."""
    if case == "csv":
        fifo = fifo_at(tmp / "table.csv")
        return fifo, lambda: DATASETS.build("csv", {"path": str(fifo), "target": "y"})
    if case == "mnist idx":
        fifo = fifo_at(make_mnist(tmp) / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz")
        return fifo, lambda: build("mnist", data_dir=str(tmp))
    if case == "cifar batch":
        fifo = fifo_at(write_cifar(tmp) / "data_batch_4")
        return fifo, lambda: build("cifar10", data_dir=str(tmp))
    if case == "cifar archive":
        fifo = fifo_at(tmp / "cifar-10-python.tar.gz")
        return fifo, lambda: build("cifar10", data_dir=str(tmp))
    if case == "text_csv":
        fifo = fifo_at(tmp / "reviews.csv")
        return fifo, text("text_csv", path=str(fifo))
    if case == "tokenizer_file":
        data = write_csv(tmp / "reviews.csv", [("good film", "pos"), ("bad film", "neg")] * 4)
        fifo = fifo_at(tmp / "tokenizer.json")
        return fifo, text("text_csv", path=str(data), tokenizer_file=str(fifo))
    if case == "imdb archive":
        fifo = fifo_at(tmp / "aclImdb_v1.tar.gz")
        return fifo, text("imdb", path=str(fifo))
    if case == "imdb review":
        folder = make_imdb(tmp)
        return fifo_at(folder / "train" / "pos" / "99_9.txt"), text("imdb", path=str(folder))
    if case == "sst2":
        fifo = fifo_at(tmp / "SST-2" / "train.tsv")
        return fifo, text("sst2", path=str(fifo.parent))
    if case == "ag_news":
        fifo = fifo_at(tmp / "ag_news_csv" / "test.csv")
        return fifo, text("ag_news", path=str(fifo.parent))
    fifo = fifo_at(tmp / "cat.png")  # "image": what image_folder and predict decode
    return fifo, lambda: load_image(fifo, (3, 8, 8))


@pytest.mark.parametrize(
    "case",
    [
        *("csv", "mnist idx", "cifar batch", "cifar archive", "text_csv", "tokenizer_file"),
        *("imdb archive", "imdb review", "sst2", "ag_news", "image"),
    ],
)
def test_a_fifo_is_refused_at_once_not_read(tmp_path: Path, case: str) -> None:
    fifo, call = fifo_case(case, tmp_path)
    line = refused_at_once(call, fifo)
    assert f"{fifo} is a FIFO (named pipe), not a regular file" in line


def test_a_folder_where_a_file_belongs_is_named(tmp_path: Path) -> None:
    (tmp_path / "table.csv").mkdir()
    with pytest.raises(ConfigError, match="dataset.path: .*table.csv is a folder, not a regular"):
        DATASETS.build("csv", {"path": str(tmp_path / "table.csv"), "target": "y"})


@pytest.mark.parametrize(
    "case",
    ["csv", "bank_marketing", "text_csv", "imdb", "sst2", "mnist", "cifar10", "image_folder"],
)
def test_a_name_too_long_to_look_at_is_one_line(tmp_path: Path, case: str) -> None:
    long = str(tmp_path / LONG / "data.csv")
    call = {
        "csv": lambda: DATASETS.build("csv", {"path": long, "target": "y"}),
        "bank_marketing": lambda: DATASETS.build("bank_marketing", {"path": long}),
        "text_csv": text("text_csv", path=long),
        "imdb": text("imdb", path=long),
        "sst2": text("sst2", path=long),
        "mnist": lambda: build("mnist", data_dir=long),
        "cifar10": lambda: build("cifar10", data_dir=long),
        "image_folder": lambda: build("image_folder", root=long),
    }[case]
    with pytest.raises(ConfigError) as err:
        call()
    assert "File name too long" in one_line(err.value) and LONG in str(err.value)
