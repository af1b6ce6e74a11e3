"""One data root for every built-in file dataset: dataset.data_dir holds each one's official folder,
directly or in a subfolder named after the dataset (the layout of the shared data)."""

from __future__ import annotations

import csv
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from dltrain.errors import ConfigError

from .helpers import (
    BAD,
    GOOD,
    SHARED,
    build_dataset,
    dltrain,
    make_imdb,
    make_mnist,
    write_cifar,
    write_table,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning"
)


def imdb_archive(root: Path) -> None:
    """aclImdb/ packed as the shared data's aclImdb_labeled.tar.gz."""
    folder = make_imdb(root / "tree")
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / "aclImdb_labeled.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="aclImdb")


def sst2_folder(root: Path) -> None:
    """SST-2/{train,dev}.tsv as GLUE ships them."""
    (root / "SST-2").mkdir(parents=True)
    rows = "".join(f"{t}\t1\n" for t in GOOD * 5) + "".join(f"{t}\t0\n" for t in BAD * 5)
    for name in ("train", "dev"):
        (root / "SST-2" / f"{name}.tsv").write_text("sentence\tlabel\n" + rows)


def ag_news_folder(root: Path) -> None:
    """ag_news_csv/{test.csv,classes.txt}: the split the shared data holds."""
    news = root / "ag_news_csv"
    news.mkdir(parents=True)
    (news / "classes.txt").write_text("World\nSports\nBusiness\nSci/Tech\n")
    with (news / "test.csv").open("w", newline="") as f:
        csv.writer(f).writerows([(str(i % 4 + 1), f"title {i}", f"body {i}") for i in range(40)])


def bank_file(root: Path) -> None:
    """bank.csv with the target column `deposit`."""
    root.mkdir(parents=True, exist_ok=True)
    write_table(root / "bank.csv")


# dataset -> (its subfolder in the shared layout, what writes its official files into a folder)
MAKERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "mnist": ("mnist", make_mnist),
    "fashion_mnist": ("fashion-mnist", lambda d: make_mnist(d, folder="FashionMNIST")),
    "mnist_seq": ("mnist", make_mnist),
    "cifar10": ("cifar10", write_cifar),
    "imdb": ("imdb", imdb_archive),
    "sst2": ("sst2", sst2_folder),
    "ag_news": ("ag_news", ag_news_folder),
    "bank_marketing": ("bank_marketing", bank_file),
}
EXTRA = {"ag_news": {"min_frequency": 1}}  # the tiny fixture's words occur once


def files_in(root: Path) -> list[tuple[str, int, int]]:
    """Every path under root with its size and mtime: what a loader must leave alone."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    )


@pytest.fixture(scope="module")
def shared_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data root holding every dataset in its own subfolder, as the shared data does."""
    root = tmp_path_factory.mktemp("data")
    for sub, make in dict(MAKERS.values()).items():
        make(root / sub)
    return root


@pytest.mark.parametrize("name", MAKERS)
def test_one_data_dir_serves_every_file_dataset(shared_layout: Path, name: str) -> None:
    before = files_in(shared_layout)
    data = build_dataset(name, data_dir=str(shared_layout), **EXTRA.get(name, {}))
    assert len(data.train) > 0 and data.val is not None and len(data.val) > 0
    assert files_in(shared_layout) == before  # read in place: nothing extracted or cached there


@pytest.mark.parametrize("name", MAKERS)
def test_the_env_var_dltrain_data_dir_is_the_default(
    shared_layout: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("DLTRAIN_DATA_DIR", str(shared_layout))
    assert len(build_dataset(name, **EXTRA.get(name, {})).train) > 0


@pytest.mark.parametrize("name", MAKERS)
def test_the_official_folder_directly_in_data_dir(tmp_path: Path, name: str) -> None:
    MAKERS[name][1](tmp_path)
    assert len(build_dataset(name, data_dir=str(tmp_path), **EXTRA.get(name, {})).train) > 0


@pytest.mark.parametrize("name", MAKERS)
def test_missing_data_is_one_line_naming_where_it_looked(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_dataset(name, data_dir=str(tmp_path))
    [line] = str(err.value).splitlines()
    assert f"looked in {tmp_path}" in line and f"{tmp_path / MAKERS[name][0]}" in line
    assert "dataset.download=true" in line or "https://" in line  # how to get it
    assert "dataset.data_dir" in line


REAL = {  # what the shared copy holds: the train split each builder keeps (val carved from it)
    "mnist": 54000,
    "fashion_mnist": 54000,
    "mnist_seq": 54000,
    "imdb": 22500,
    "sst2": 63981,
    "ag_news": 5320,
    "bank_marketing": 8929,
}


@pytest.mark.slow  # IMDB and SST-2 train a tokenizer on tens of thousands of texts
@pytest.mark.parametrize("name", REAL)
def test_the_shared_data_root_serves_every_dataset_there(name: str) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (the real data lives outside the repo)")
    assert len(build_dataset(name, data_dir=str(SHARED)).train) == REAL[name]


@pytest.mark.parametrize(
    "args",
    [
        ["dataset=imdb", "model=text_rnn"],
        ["dataset=sst2", "model=text_rnn"],
        ["dataset=ag_news", "model=text_rnn"],
        ["dataset=bank_marketing", "loss=bce"],
    ],
    ids=["imdb", "sst2", "ag_news", "bank_marketing"],
)
def test_missing_data_is_found_missing_before_any_run_dir(tmp_path: Path, args: list[str]) -> None:
    empty = tmp_path / "empty_root"
    empty.mkdir()
    done = dltrain(tmp_path, *args, f"dataset.data_dir={empty}", "trainer.device=cpu")
    assert done.returncode == 2, done.stderr
    assert str(empty) in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "outputs").exists()
