"""Readers for labelled text corpora in their published on-disk formats (no torchtext).

The files are untrusted: only regular files are opened (a FIFO would block forever), and a file
that cannot be read or decoded, or lacks what its format promises, is a one-line ConfigError.
"""

from __future__ import annotations

import csv
import tarfile
import zlib
from pathlib import Path

from dltrain.data.files import find_data, is_folder, is_regular, reason, regular_file
from dltrain.errors import ConfigError

Texts = tuple[list[str], list[str]]  # texts and their raw labels
UNREADABLE = (OSError, EOFError, UnicodeDecodeError, csv.Error, tarfile.TarError, zlib.error)
OFFICIAL = {  # dataset -> its official folder or archive names, and where to get one
    "imdb": (
        ["aclImdb", "aclImdb_v1.tar.gz", "aclImdb_labeled.tar.gz"],
        "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz (read in place)",
    ),
    "sst2": (["SST-2"], "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip (unzipped)"),
    "ag_news": (["ag_news_csv"], "https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz (unpacked)"),
}


def locate(dataset: str, path: str | None, data_dir: str | None) -> Path:
    """`path` when given (the user's own copy), else the official folder under the data root."""
    if path is not None:
        return Path(path).expanduser()
    entries, url = OFFICIAL[dataset]
    return find_data(
        dataset, data_dir, entries, f"get {url} there or give your copy as dataset.path"
    )


def check_located(dataset: str, path: str | None = None, data_dir: str | None = None, **_: object):
    """The corpus is where `locate` looks (checked before a run dir is made)."""
    found = locate(dataset, path, data_dir)
    if not (is_folder(found, "dataset.path") or is_regular(found, "dataset.path")):
        raise _missing(dataset, found)


def read_imdb(path: Path) -> dict[str, Texts]:
    """aclImdb/{train,test}/{pos,neg}/*.txt from the folder or the .tar.gz (read in place)."""
    splits: dict[str, Texts] = {"train": ([], []), "test": ([], [])}

    def add(member: str, text: str) -> None:
        parts = member.split("/")
        if len(parts) >= 3 and parts[-3] in splits and parts[-2] in ("pos", "neg"):
            splits[parts[-3]][0].append(text.replace("<br />", " "))  # the reviews' HTML breaks
            splits[parts[-3]][1].append(parts[-2])

    folder = is_folder(path, "dataset.path")
    if not folder and not is_regular(path, "dataset.path"):
        raise _missing("imdb", path)
    try:
        if folder:
            for file in sorted(path.rglob("*.txt")):
                add(file.relative_to(path).as_posix(), read_text(file, "imdb"))
        else:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:  # regular members only: a link or a device is never read
                    if member.isfile() and member.name.endswith(".txt"):
                        add(member.name, tar.extractfile(member).read().decode("utf-8"))
    except UNREADABLE as e:
        raise ConfigError(f"dataset imdb: cannot read {path} ({reason(e)})") from None
    if not splits["train"][0]:
        raise ConfigError(f"dataset imdb: no aclImdb/train/{{pos,neg}}/*.txt reviews in {path}")
    return splits


def read_text(file: Path, dataset: str) -> str:
    """A UTF-8 text file; ConfigError when it is not a regular file or cannot be decoded."""
    try:
        return regular_file(file, "dataset.path").read_text(encoding="utf-8")
    except UNREADABLE as e:
        raise ConfigError(f"dataset {dataset}: cannot read {file} ({reason(e)})") from None


def read_rows(file: Path, dataset: str, **reader: object) -> list[list[str]]:
    """The non-blank rows of a CSV/TSV file (header included), as csv.DictReader would see them."""
    try:
        with regular_file(file, "dataset.path").open(encoding="utf-8", newline="") as f:
            return [row for row in csv.reader(f, **reader) if row]
    except UNREADABLE as e:  # csv.Error: e.g. a field over csv's size limit
        raise ConfigError(f"dataset {dataset}: cannot read {file} ({reason(e)})") from None


def columns(file: Path, dataset: str, rows: list[list[str]], wanted: list[str]) -> list[list[str]]:
    """The wanted columns of `rows` under their header ('' where a short row lacks a value)."""
    header = rows[0] if rows else []
    if absent := [c for c in wanted if c not in header]:
        raise ConfigError(
            f"dataset {dataset}: {file} has no column {', '.join(absent)}; "
            f"its columns are {', '.join(header) or 'none (the file is empty)'}"
        )
    at = [header.index(c) for c in wanted]
    return [[row[i] if i < len(row) else "" for row in rows[1:]] for i in at]


def read_sst2(folder: Path) -> dict[str, Texts]:
    """GLUE SST-2 train.tsv and dev.tsv (the published test.tsv has no labels)."""
    splits = {}
    for name in ("train", "dev"):
        file = folder / f"{name}.tsv"
        if not is_regular(file, "dataset.path"):
            raise _missing("sst2", file)
        rows = read_rows(file, "sst2", delimiter="\t", quoting=csv.QUOTE_NONE)
        texts, labels = columns(file, "sst2", rows, ["sentence", "label"])
        splits[name] = ([t.strip() for t in texts], labels)
    return splits


def read_ag_news(folder: Path) -> tuple[dict[str, Texts], list[str] | None]:
    """AG_NEWS train.csv / test.csv (class 1-4, title, description) and classes.txt."""
    splits = {}
    for name in ("train", "test"):
        file = folder / f"{name}.csv"
        if is_regular(file, "dataset.path"):
            rows = read_rows(file, "ag_news")  # no header: every row is data
            if odd := sum(len(row) != 3 for row in rows):
                raise ConfigError(
                    f"dataset ag_news: {odd} rows of {file} do not hold 3 fields "
                    "(class index, title, description)"
                )
            splits[name] = (
                [f"{title} {body}".replace("\\", " ") for _, title, body in rows],
                [label for label, _, _ in rows],
            )
    if not splits:
        raise _missing("ag_news", folder / "train.csv")
    classes = folder / "classes.txt"
    names = read_text(classes, "ag_news").split() if is_regular(classes, "dataset.path") else []
    known = {str(i) for i in range(1, (len(names) or 4) + 1)}  # 1-based, as in classes.txt
    for name, (_, labels) in splits.items():
        if bad := sorted({label.strip() for label in labels} - known)[:5]:
            raise ConfigError(
                f"dataset ag_news: {folder / name}.csv has class indices {', '.join(bad)}; "
                f"expected 1..{len(known)} (one per line of classes.txt)"
            )
    return splits, names or None


def read_text_csv(path: Path, text_column: str, label_column: str) -> Texts:
    """Any CSV with a text column and a label column; every row needs a label."""
    if not is_regular(path, "dataset.path"):
        raise _missing("text_csv", path)
    rows = read_rows(path, "text_csv")
    texts, labels = columns(path, "text_csv", rows, [text_column, label_column])
    if not labels:
        raise ConfigError(f"dataset text_csv: {path} has no rows under its header")
    if unlabelled := sum(not label.strip() for label in labels):
        raise ConfigError(
            f"dataset text_csv: {unlabelled} rows of {path.name} have an empty label in column "
            f"'{label_column}'; fill or remove them"
        )
    if len(set(labels)) == 1:
        raise ConfigError(
            f"dataset.label_column: column '{label_column}' of {path.name} holds one value "
            f"({labels[0]!r}) in all {len(labels)} rows; a classifier needs at least two classes"
        )
    return texts, labels


def _missing(dataset: str, path: Path) -> ConfigError:
    return ConfigError(
        f"dataset {dataset}: {path} does not exist; point dataset.path at it (see conf/dataset/"
        f"{dataset}.yaml for the expected layout)"
    )
