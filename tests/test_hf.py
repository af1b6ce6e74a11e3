"""dataset=hf: Hugging Face datasets (saved folders, data files) through the image, text and
table paths, with the real `datasets` library on tiny data made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dltrain.errors import ConfigError
from dltrain.evaluation import main as eval_main
from dltrain.finished_run import load_run
from dltrain.predict import main as predict_main
from dltrain.registry import DATASETS
from dltrain.train import run

from .helpers import (
    FAST,
    build_dataset,
    compose_config,
    dltrain_main,
    invoke,
    run_command,
    run_dirs,
)

datasets = pytest.importorskip("datasets")

SMALL_CNN = ["model=cnn", "model.channels=[4,8]", "model.hidden=16", "trainer.batch_size=8"]
SMALL_RNN = ["model=text_rnn", "model.embedding_dim=8", "model.hidden_size=8"]
COLOURS = {"cat": (220, 30, 30), "dog": (30, 30, 220)}


@pytest.fixture(autouse=True)
def hf_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`datasets` caches what it reads from data files: in a temp folder, never ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "hf_cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    return cache


def picture(name: str, seed: int, size: int = 8) -> Image.Image:
    noise = np.random.default_rng(seed).integers(0, 30, (size, size, 3))
    return Image.fromarray((np.array(COLOURS[name]) + noise).clip(0, 255).astype(np.uint8))


def save_images(folder: Path, n: int = 24) -> Path:
    """A saved Dataset of red cats and blue dogs, with a ClassLabel."""
    labels = [i % 2 for i in range(n)]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])}
    )
    images = [picture(["cat", "dog"][y], i) for i, y in enumerate(labels)]
    data = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
    data.save_to_disk(str(folder / "pets"))
    return folder / "pets"


def save_texts(folder: Path) -> Path:
    """A saved DatasetDict (train, test) of texts, the ClassLabel's order not alphabetical."""
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["pos", "neg"])}
    )
    words = {0: "great lovely fine", 1: "awful bad poor"}

    def split(n: int) -> datasets.Dataset:
        labels = [i % 2 for i in range(n)]
        texts = [f"{words[y]} film {i}" for i, y in enumerate(labels)]
        return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)

    datasets.DatasetDict(train=split(20), test=split(6)).save_to_disk(str(folder / "reviews"))
    return folder / "reviews"


def numbers_frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    return frame.assign(y=2 * frame.a - frame.b + 0.5)


def saved_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def train(tmp_path: Path, *overrides: str) -> Path:
    run_dir = tmp_path / "run"
    run(compose_config(*FAST, "trainer.epochs=1", "dataset=hf", *overrides), run_dir)
    return run_dir


def test_a_saved_image_dataset_trains_and_predicts_new_png_files(tmp_path: Path) -> None:
    saved = save_images(tmp_path)
    run_dir = train(tmp_path, f"dataset.path={saved}", *SMALL_CNN)
    meta = load_run(run_dir).meta
    assert (meta.task, meta.class_names, tuple(meta.input_shape)) == (
        "binary",
        ["cat", "dog"],
        (3, 8, 8),
    )
    assert set(meta.preprocessing) == {"normalize", "augment"}
    new = tmp_path / "new"
    new.mkdir()
    for i, name in enumerate(["cat", "dog"]):
        picture(name, 100 + i, size=12).save(new / f"{name}.png")  # resized to the run's 8x8
    predict_main([str(run_dir), f"input={new}"])
    got = pd.read_csv(run_dir / "predictions.csv")
    assert list(got.columns) == ["file", "predicted", "prob_cat", "prob_dog"]
    assert sorted(got["file"]) == ["cat.png", "dog.png"]


def test_images_not_in_memory_are_decoded_per_sample_in_loader_workers(tmp_path: Path) -> None:
    saved = str(save_images(tmp_path))
    held = build_dataset("hf", path=saved)
    mapped = build_dataset("hf", path=saved, in_memory=False)
    assert type(mapped.train).__name__ == "ArrowImages" and len(mapped.val) == len(held.val)
    assert all(torch.equal(held.train[i][0], mapped.train[i][0]) for i in range(len(held.train)))
    for key in ("mean", "std"):  # the sample is every image here
        got, expected = (d.meta.preprocessing["normalize"][key] for d in (mapped, held))
        assert got == pytest.approx(expected, rel=1e-9)
    loader = DataLoader(mapped.train, batch_size=4, num_workers=2)  # workers unpickle the mmap
    assert sum(len(x) for x, _ in loader) == len(held.train)


def test_images_of_differing_sizes_need_image_size(tmp_path: Path) -> None:
    images = [picture("cat", 0, 8), picture("dog", 1, 10)] * 4
    data = datasets.Dataset.from_dict(
        {"image": images, "label": [0, 1] * 4},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    data.save_to_disk(str(tmp_path / "mixed"))
    with pytest.raises(ConfigError, match="dataset.image_size"):
        build_dataset("hf", path=str(tmp_path / "mixed"))
    built = build_dataset("hf", path=str(tmp_path / "mixed"), image_size=6, val_fraction=0.25)
    assert built.train[0][0].shape == (3, 6, 6) and built.meta.class_names == ["0", "1"]
    assert len(built.train) + len(built.val) + len(built.test) == 8


def test_a_text_dataset_trains_with_its_test_split_evaluates_and_predicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = save_texts(tmp_path)
    run_dir = train(tmp_path, f"dataset.path={saved}", "dataset.test_split=test", *SMALL_RNN)
    meta = load_run(run_dir).meta
    assert meta.class_names == ["pos", "neg"] and meta.vocab  # the ClassLabel's order
    monkeypatch.setenv("DLTRAIN_DATA_DIR", str(tmp_path))  # eval follows paths under it
    eval_main([str(run_dir)])  # rebuilt with the saved tokenizer: the run's test metrics
    tested = json.loads((run_dir / "eval_test.json").read_text())
    assert tested["metrics"]["test/acc"] == saved_metrics(run_dir)["test/acc"]
    (tmp_path / "new.txt").write_text("great lovely film\nawful poor film\n")
    predict_main([str(run_dir), f"input={tmp_path / 'new.txt'}"])
    got = pd.read_csv(run_dir / "predictions.csv")
    assert list(got.columns) == ["line", "predicted", "prob_pos", "prob_neg"]


def test_a_parquet_file_of_numbers_trains_a_regression_and_predicts_rows(tmp_path: Path) -> None:
    frame = numbers_frame()
    datasets.Dataset.from_pandas(frame).to_parquet(str(tmp_path / "numbers.parquet"))
    path = tmp_path / "numbers.parquet"
    run_dir = train(tmp_path, f"dataset.path={path}", "dataset.target=y", "loss=mse")
    meta = load_run(run_dir).meta
    assert meta.task == "regression" and meta.feature_names == ["a", "b"]
    assert "tabular" in json.loads((run_dir / "preprocessing.json").read_text())
    frame.drop(columns=["y"]).head(5).to_csv(tmp_path / "rows.csv", index=False)
    predict_main([str(run_dir), f"input={tmp_path / 'rows.csv'}"])
    assert len(pd.read_csv(run_dir / "predictions.csv")) == 5


def test_numeric_columns_with_a_class_label_make_a_table_classifier(tmp_path: Path) -> None:
    frame = numbers_frame().assign(kind=lambda f: (f.y > f.y.median()).astype(int))
    features = datasets.Features(
        {
            "a": datasets.Value("float64"),
            "b": datasets.Value("float64"),
            "kind": datasets.ClassLabel(names=["low", "high"]),
        }
    )
    data = datasets.Dataset.from_pandas(frame[["a", "b", "kind"]], features=features)
    data.save_to_disk(str(tmp_path / "table"))
    built = build_dataset("hf", path=str(tmp_path / "table"), label_column="kind")
    assert (built.meta.task, built.meta.class_names) == ("binary", ["low", "high"])
    assert built.meta.feature_names == ["a", "b"] and len(built.val) == len(built.test) == 9
    only_a = build_dataset(
        "hf", path=str(tmp_path / "table"), label_column="kind", input_columns=["a"]
    )
    assert only_a.meta.input_shape == (1,)


def test_csv_files_by_glob_and_the_path_a_mix_of_columns_takes(tmp_path: Path) -> None:
    for part in range(2):
        labels = ["neg", "pos"] * 8
        texts = [f"{'bad poor' if y == 'neg' else 'good nice'} {part}" for y in labels]
        pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / f"{part}.csv", index=False)
    text = build_dataset("hf", path=str(tmp_path / "*.csv"))
    assert text.meta.vocab and text.meta.class_names == ["neg", "pos"]
    assert len(text.train) + len(text.val) + len(text.test) == 32
    frame = numbers_frame(30).assign(color=["red", "blue", "green"] * 10, label=[0, 1, 2] * 10)
    frame.drop(columns=["y"]).to_json(tmp_path / "rows.jsonl", orient="records", lines=True)
    table = build_dataset("hf", path=str(tmp_path / "rows.jsonl"))  # a float column: a table
    assert table.meta.feature_names == ["a", "b", "color=blue", "color=green", "color=red"]
    assert table.meta.class_names == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="Python script"):
        build_dataset("hf", path=str(tmp_path / "loader.py"))


def test_missing_data_columns_and_splits_are_one_line_errors_naming_what_exists(
    tmp_path: Path,
) -> None:
    saved = save_texts(tmp_path)
    check = DATASETS.info("hf").check
    with pytest.raises(ConfigError) as e:
        check(path=str(saved), input_column="body", label_column="stars")
    assert len(e.value.problems) == 2
    assert all("Columns: text (text), label (class_label)" in p for p in e.value.problems)
    with pytest.raises(ConfigError, match=r"no split 'validaton'.*Splits: train, test"):
        check(path=str(saved), val_split="validaton")
    with pytest.raises(ConfigError, match="does not exist"):
        check(path=str(tmp_path / "absent.parquet"))
    with pytest.raises(ConfigError, match="not a folder saved with save_to_disk"):
        check(path=str(tmp_path))
    with pytest.raises(ConfigError, match=r"local HF cache.*save_to_disk"):
        check(path="nobody/no_such_dataset")
    argv = ["dataset=hf", f"dataset.path={saved}", "dataset.label_column=x", "dataset.val_split=v"]
    code, err = invoke(dltrain_main, argv, cwd=tmp_path)  # every mistake, one line each
    assert code != 0 and "Traceback" not in err
    assert "no split 'v'" in err and "no column 'x'" in err
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_the_commands_train_on_a_saved_dataset_and_predict_png_files(tmp_path: Path) -> None:
    saved = save_images(tmp_path)  # the commands inherit the autouse fixture's cache variable
    args = ["dataset=hf", f"dataset.path={saved}", *SMALL_CNN, *FAST, "trainer.epochs=1"]
    done = run_command("dltrain", *args, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "outputs")
    picture("dog", 7).save(tmp_path / "dog.png")
    done = run_command("dltrain-predict", run_dir, f"input={tmp_path / 'dog.png'}", timeout=120)
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(run_dir / "predictions.csv")["file"].tolist() == ["dog.png"]
