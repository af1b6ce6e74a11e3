"""Readers for labelled text corpora in their published on-disk formats (no torchtext)."""

from __future__ import annotations

import csv
import tarfile
from pathlib import Path

from dltrain.registry import ConfigError

Texts = tuple[list[str], list[str]]  # texts and their raw labels


def read_imdb(path: Path) -> dict[str, Texts]:
    """aclImdb/{train,test}/{pos,neg}/*.txt from the folder or the .tar.gz (read in place)."""
    splits: dict[str, Texts] = {"train": ([], []), "test": ([], [])}

    def add(member: str, text: str) -> None:
        parts = member.split("/")
        if len(parts) >= 3 and parts[-3] in splits and parts[-2] in ("pos", "neg"):
            splits[parts[-3]][0].append(text.replace("<br />", " "))  # the reviews' HTML breaks
            splits[parts[-3]][1].append(parts[-2])

    if path.is_file():
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".txt"):
                    add(member.name, tar.extractfile(member).read().decode("utf-8"))
    elif path.is_dir():
        for file in sorted(path.rglob("*.txt")):
            add(file.relative_to(path).as_posix(), file.read_text(encoding="utf-8"))
    else:
        raise _missing("imdb", path)
    if not splits["train"][0]:
        raise ConfigError(f"dataset imdb: no aclImdb/train/{{pos,neg}}/*.txt reviews in {path}")
    return splits


def read_sst2(folder: Path) -> dict[str, Texts]:
    """GLUE SST-2 train.tsv and dev.tsv (the published test.tsv has no labels)."""
    splits = {}
    for name in ("train", "dev"):
        file = folder / f"{name}.tsv"
        if not file.is_file():
            raise _missing("sst2", file)
        with file.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        splits[name] = ([r["sentence"].strip() for r in rows], [r["label"] for r in rows])
    return splits


def read_ag_news(folder: Path) -> tuple[dict[str, Texts], list[str]]:
    """AG_NEWS train.csv / test.csv (class 1-4, title, description) and classes.txt."""
    splits = {}
    for name in ("train", "test"):
        file = folder / f"{name}.csv"
        if file.is_file():
            with file.open(encoding="utf-8", newline="") as f:
                rows = list(csv.reader(f))
            splits[name] = (
                [f"{title} {body}".replace("\\", " ") for _, title, body in rows],
                [label for label, _, _ in rows],
            )
    if not splits:
        raise _missing("ag_news", folder / "train.csv")
    classes_file = folder / "classes.txt"
    names = classes_file.read_text().split() if classes_file.is_file() else None
    return splits, names


def read_text_csv(path: Path, text_column: str, label_column: str) -> Texts:
    """Any CSV with a text column and a label column."""
    if not path.is_file():
        raise _missing("text_csv", path)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        absent = [c for c in (text_column, label_column) if c not in columns]
        if absent:
            raise ConfigError(
                f"dataset text_csv: {path} has no column {', '.join(absent)}; "
                f"its columns are {', '.join(columns)}"
            )
        rows = list(reader)
    return [r[text_column] for r in rows], [r[label_column] for r in rows]


def _missing(dataset: str, path: Path) -> ConfigError:
    return ConfigError(
        f"dataset {dataset}: {path} does not exist; point dataset.path at it (see conf/dataset/"
        f"{dataset}.yaml for the expected layout)"
    )
