"""What the test modules share: the one way to run dltrain's commands, and tiny data file makers.

Test modules import from here (never from one another); pytest fixtures live in conftest.py.
"""

from __future__ import annotations

import builtins
import contextlib
import gzip
import io
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dltrain import cli
from dltrain.composition import compose_config
from dltrain.data.splits import DataSplits
from dltrain.registry import DATASETS

ROOT = Path(__file__).resolve().parents[1]  # this checkout
SHARED = ROOT.parent / "shared" / "data"  # the real data sets, outside the repo (may be absent)
BIN = Path(sys.executable).parent  # the venv's console scripts: dltrain, dltrain-eval, ...
PYTHON = sys.executable

# The tests compose the REAL conf/ tree (compose_config) with tiny overrides: small and fast, but
# the real code paths.
FAST = ["trainer.epochs=2", "trainer.seed=0", "trainer.device=cpu"]
TINY = ["dataset=iris", "trainer.epochs=2", "trainer.device=cpu"]  # for `dltrain` commands


# -- Running the commands ------------------------------------------------------------------------


def checkout_env() -> dict[str, str]:
    """os.environ with this checkout first on PYTHONPATH, so that the commands run this checkout's
    dltrain (in a git worktree the venv's editable install may point at another checkout)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


STARTED: list[subprocess.Popen] = []  # by start_command; conftest stops any left after a test


def start_command(
    program: str | Path,
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: int | None = None,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
    text: bool = True,
    file_size_limit: int | None = None,
) -> subprocess.Popen:
    """Start `program args` and return at once (text pipes for stdout and stderr by default).

    `program` is a console script of this venv by name ("dltrain", "dltrain-eval", ...) or a path
    (PYTHON, a script installed elsewhere). `env` replaces the whole environment (default:
    checkout_env()). With `file_size_limit` (bytes), files beyond it fail to grow (EFBIG), as on a
    full disk. The process leads a new process group, so stop() ends what it started as well."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    process = subprocess.Popen(
        [str(BIN / program), *map(str, args)],
        cwd=cwd,
        env=checkout_env() if env is None else env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        text=text,
        start_new_session=True,
        preexec_fn=limit if file_size_limit else None,
    )
    STARTED.append(process)
    return process


def stop(process: subprocess.Popen) -> None:
    """Kill `process` and its process group (DDP ranks, sweep workers) unless it has ended."""
    if process.poll() is None:  # not reaped: its pid is still its own
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_command(
    program: str | Path,
    *args: str | Path,
    timeout: float = 300,
    input: str | bytes | None = None,
    check: bool = False,
    **options: object,
) -> subprocess.CompletedProcess:
    """Run `program args` (options as start_command's) to its end, capturing stdout and stderr,
    within `timeout` seconds; with `check`, raise if it fails. Stopped on any error (a timeout,
    pytest-timeout's, Ctrl-C): nothing it started outlives it."""
    stdin = subprocess.PIPE if input is not None else None
    process = start_command(program, *args, stdin=stdin, **options)
    try:
        out, err = process.communicate(input, timeout=timeout)
    except BaseException:
        stop(process)
        raise
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    if check:
        done.check_returncode()
    return done


def dltrain(cwd: Path, *args: str, **options: object) -> subprocess.CompletedProcess:
    """`dltrain args` run in `cwd` (options as run_command's)."""
    return run_command("dltrain", *args, cwd=cwd, **options)


def python_dltrain(cwd: Path, *args: str, **options: object) -> subprocess.CompletedProcess:
    """`python -m dltrain args` in `cwd`: dltrain from PYTHONPATH, as on a machine where it is
    not installed (a GPU machine); options as run_command's."""
    return run_command(PYTHON, "-m", "dltrain", *args, cwd=cwd, **options)


def invoke(
    main: Callable[..., object], argv: list[str], cwd: Path | None = None
) -> tuple[object, str]:
    """A command's (exit code, stderr), its `main(argv)` run in this process (in `cwd`), far faster
    than a subprocess; stdout is dropped."""
    stderr = io.StringIO()
    with (
        contextlib.chdir(cwd or Path.cwd()),
        contextlib.redirect_stderr(stderr),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code
    return code, stderr.getvalue()


def dltrain_main(argv: list[str]) -> None:
    """dltrain's main with `argv` as its command line (it reads sys.argv)."""
    with mock.patch.object(sys, "argv", ["dltrain", *argv]):
        cli.main()


# -- What the runs leave -------------------------------------------------------------------------


def run_dirs(root: Path) -> list[Path]:
    """The finished run dirs under `root`, sorted."""
    return sorted(p.parent for p in root.rglob("metrics.json"))


def job_dir(sweep: Path, num: int) -> Path:
    """Job `num`'s dir of a sweep (`<num>_<swept overrides>`), or `sweep/<num>` if it has none."""
    found = [p for p in sweep.glob(f"{num}*") if p.name.partition("_")[0] == str(num)]
    return found[0] if len(found) == 1 else sweep / str(num)


def job_numbers(dirs: list[Path]) -> list[str]:
    """The job numbers of sweep job dirs (their names up to the first `_`)."""
    return [d.name.partition("_")[0] for d in dirs]


def events(run_dir: Path) -> EventAccumulator:
    """The run's TensorBoard events, loaded."""
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return acc


# -- Data sets as their builders see them --------------------------------------------------------


def dataset_options(name: str, **extra: object) -> dict:
    """The builder options of dataset `name` from its default YAML, updated with `extra`."""
    cfg = compose_config(f"dataset={name}").dataset
    return {**{k: v for k, v in cfg.items() if k != "name"}, **extra}


def build_dataset(name: str, **extra: object) -> DataSplits:
    """Dataset `name` as its default YAML configures it, with `extra` options."""
    return DATASETS.build(name, dataset_options(name, **extra))


# -- Tiny data files in the real on-disk formats -------------------------------------------------


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """`array` as an IDX file (MNIST's format), gzipped to `path`.gz when `compress`."""
    magic = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    data = magic + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_mnist(root: Path, folder: str = "MNIST", n: int = 100, compress: bool = True) -> Path:
    """An MNIST-layout folder whose images show their label as a bright band (easy to learn)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("t10k", n // 3)):
        labels = np.arange(count) % 10
        images = rng.integers(0, 30, (count, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 4, :] = 250
        write_idx(raw / f"{split}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels, compress)
    return root


class Py2Pickler(pickle._Pickler):
    """Pickles as the official CIFAR-10 files were (Python 2, protocol 2): str and bytes as
    BINSTRING, numpy's array rebuilder under its old module name numpy.core.multiarray."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_string(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        short = len(data) < 256
        opcode, size = (pickle.SHORT_BINSTRING, "<B") if short else (pickle.BINSTRING, "<i")
        self.write(opcode + struct.pack(size, len(data)) + data)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_string

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = "numpy.core.multiarray" if obj.__name__ == "_reconstruct" else obj.__module__
        self.write(pickle.GLOBAL + f"{module}\n{obj.__name__}\n".encode())
        self.memoize(obj)


def py2_dumps(value: object) -> bytes:
    """`value` pickled as Python 2's cPickle wrote the official CIFAR-10 batches."""
    out = io.BytesIO()
    Py2Pickler(out, protocol=2).dump(value)
    return out.getvalue()


def py3_dumps(value: object) -> bytes:
    """`value` pickled by this Python and numpy (protocol 4: numpy._core.multiarray names)."""
    return pickle.dumps(value, protocol=4)


def write_cifar(root: Path, n: int = 20, dumps: Callable[[object], bytes] = py2_dumps) -> Path:
    """A cifar-10-batches-py folder in the official format (Python 2 pickles by default)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        batch = {
            b"batch_label": b"training batch",
            b"labels": [i % 10 for i in range(n)],
            b"data": data,
            b"filenames": [f"image_{i}.png".encode() for i in range(n)],
        }
        (folder / name).write_bytes(dumps(batch))
    (folder / "batches.meta").write_bytes(dumps({b"label_names": [b"airplane"]}))
    return folder


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


def make_folder(
    root: Path,
    splits: tuple[str, ...],
    classes: tuple[str, ...] = ("cat", "dog"),
    per_class: int = 8,
) -> Path:
    """Class folders of small images, class k brighter than class k-1; every format once."""
    formats = [(".png", "PNG"), (".JPG", "JPEG"), (".bmp", "BMP"), (".gif", "GIF")]
    formats.append((".webp", "WEBP"))
    rng = np.random.default_rng(0)
    for split in splits:
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = (rng.integers(0, 60, (20, 24, 3)) + 90 * label).astype(np.uint8)
                ext, fmt = formats[i % len(formats)]
                Image.fromarray(pixels).save(root / split / name / f"{i}{ext}", format=fmt)
    (root / splits[0] / classes[0] / "notes.txt").write_text("not an image")
    return root


GOOD = ["a wonderful film", "great acting and a great story", "loved it", "brilliant and moving"]
BAD = ["a terrible film", "awful acting and a dull story", "hated it", "boring and painful"]


def make_imdb(root: Path, per_class: int = 6) -> Path:
    """An aclImdb folder (train and test, pos and neg) of GOOD and BAD reviews."""
    for split in ("train", "test"):
        for label, texts in (("pos", GOOD), ("neg", BAD)):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(texts[i % 4])
    return root / "aclImdb"


JOBS = ["admin.", "blue-collar", "retired", "student"]


def write_table(path: Path, n: int = 80) -> pd.DataFrame:
    """A small table with every column kind and missing values; returns it as read back."""
    rng = np.random.default_rng(0)
    age = rng.integers(20, 70, n).astype(float)
    age[[3, 17, 40]] = np.nan
    job = rng.choice(JOBS, n).astype(object)
    job[[5, 22, 40]] = None
    owns_home = rng.choice(["yes", "no", "Yes", "NO"], n)
    income = rng.normal(50_000, 15_000, n).round(2)
    score = income / 10_000 + 2 * (np.char.lower(owns_home) == "yes") + rng.normal(0, 1, n)
    deposit = np.where(score > np.median(score), "yes", "no").astype(object)
    deposit[10] = None  # rows without a target are always dropped
    frame = pd.DataFrame(
        {
            "row_id": np.arange(n),  # lets the tests find each split's raw rows
            "age": age,
            "income": income,
            "const": 5,
            "owns_home": owns_home,
            "job": job,
            "flag": rng.random(n) < 0.5,
            "deposit": deposit,
            "color": rng.choice(["red", "green", "blue"], n),
            "grade": rng.integers(1, 5, n),
            "price": score * 1000 + 0.25,
        }
    )
    frame.to_csv(path, index=False)
    return pd.read_csv(path)
