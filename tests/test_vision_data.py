"""Image datasets on tiny fixtures in the real on-disk formats, and on the real shared data."""

from __future__ import annotations

import gzip
import pickle
import shutil
import stat
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dltrain.data.vision import STATS
from dltrain.registry import DATASETS, ConfigError
from dltrain.train import run

from .conftest import FAST, compose_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_mnist(root: Path, folder: str = "MNIST", n: int = 100, compress: bool = True) -> Path:
    """An MNIST-layout folder whose images encode their label (learnable in a few steps)."""
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


def options(name: str, **extra: object) -> dict:
    cfg = compose_config(f"dataset={name}").dataset
    return {**{k: v for k, v in cfg.items() if k != "name"}, **extra}


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_idx_files_give_uint8_splits(tmp_path: Path, compress: bool) -> None:
    root = str(make_mnist(tmp_path, compress=compress))
    data = DATASETS.build("mnist", options("mnist", data_dir=root, val_fraction=0.2))
    x, y = data.train.tensors
    assert x.dtype == torch.uint8 and x.shape == (80, 1, 28, 28) and y.dtype == torch.int64
    assert len(data.val) == 20 and len(data.test) == 33
    assert sorted(data.val.tensors[1].tolist()) == sorted(list(range(10)) * 2)  # stratified
    meta = data.meta
    assert meta.input_shape == (1, 28, 28) and meta.num_classes == 10 and meta.task == "multiclass"
    assert meta.preprocessing["normalize"] == {"mean": [0.1307], "std": [0.3081]}


def test_fashion_mnist_reads_its_own_folder_and_env_var_sets_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_mnist(tmp_path, folder="FashionMNIST")
    monkeypatch.setenv("DLTRAIN_DATA_DIR", str(tmp_path))
    data = DATASETS.build("fashion_mnist", options("fashion_mnist"))
    assert data.meta.class_names[-1] == "Ankle boot" and len(data.train) == 90


def test_missing_files_name_the_paths_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        DATASETS.build("mnist", options("mnist", data_dir=str(tmp_path)))
    [line] = str(err.value).splitlines()
    assert f"{tmp_path}/MNIST/raw/train-images-idx3-ubyte(.gz)" in line
    assert "dataset.download=true" in line and "DLTRAIN_DATA_DIR" in line


def test_truncated_idx_file_is_reported(tmp_path: Path) -> None:
    make_mnist(tmp_path, compress=False)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ConfigError, match=f"{path} is truncated"):
        DATASETS.build("mnist", options("mnist", data_dir=str(tmp_path)))


def test_download_uses_torchvision_into_data_dir(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def fake_mnist(root: str, train: bool, download: bool) -> None:
        calls.append((root, train, download))
        if not (Path(root) / "MNIST").exists():
            make_mnist(Path(root))

    monkeypatch.setattr("torchvision.datasets.MNIST", fake_mnist)
    data = DATASETS.build("mnist", options("mnist", data_dir=str(tmp_path), download=True))
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    assert len(data.test) == 33


def test_a_read_only_folder_is_read_in_place(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for path in tmp_path.rglob("*"):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        DATASETS.build("mnist", options("mnist", data_dir=str(tmp_path)))
    finally:
        for path in tmp_path.rglob("*"):
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_python_batches(tmp_path: Path, archive: bool) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
            b"labels": [i % 10 for i in range(20)],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    if archive:  # the official cifar-10-python.tar.gz, read without extracting
        with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname="cifar-10-batches-py")
        shutil.rmtree(folder)
    data = DATASETS.build("cifar10", options("cifar10", data_dir=str(tmp_path)))
    assert data.train.tensors[0].shape == (90, 3, 32, 32) and len(data.val) == 10
    assert not folder.exists() or not archive
    assert len(data.test) == 20 and data.meta.preprocessing["augment"] == {
        "crop_padding": 4,
        "hflip": True,
    }
    assert data.meta.preprocessing["normalize"]["mean"] == STATS["cifar10"][0]


def make_folder(root: Path, splits: tuple[str, ...], classes=("cat", "dog"), per_class=10) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 60, (20, 24, 3)) + 150 * label
                ext = ".png" if i % 2 else ".JPG"
                Image.fromarray(pixels.astype(np.uint8)).save(
                    root / split / name / f"{i}{ext}", format="PNG" if i % 2 else "JPEG"
                )
    return root


def test_image_folder_splits_train_when_there_is_no_val_or_test(tmp_path: Path) -> None:
    root = make_folder(tmp_path, ("train",))
    data = DATASETS.build(
        "image_folder",
        options("image_folder", root=str(root), image_size=16, val_fraction=0.2, test_fraction=0.2),
    )
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)
    image, label = data.train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and label in (0, 1)
    meta = data.meta
    assert meta.task == "binary" and meta.class_names == ["cat", "dog"]
    assert len(meta.preprocessing["normalize"]["mean"]) == 3


def test_image_folder_uses_given_val_and_test_and_checks_classes(tmp_path: Path) -> None:
    root = make_folder(tmp_path, ("train", "val", "test"), classes=("a", "b", "c"), per_class=3)
    data = DATASETS.build("image_folder", options("image_folder", root=str(root), image_size=8))
    assert (len(data.train), len(data.val), len(data.test)) == (9, 9, 9)
    assert data.meta.task == "multiclass"
    (root / "test" / "zebra").mkdir()
    with pytest.raises(ConfigError, match="classes zebra that the train folder lacks"):
        DATASETS.build("image_folder", options("image_folder", root=str(root)))


def test_image_folder_needs_a_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset.root"):
        DATASETS.build("image_folder", options("image_folder"))


def test_cnn_trains_end_to_end_on_mnist_files_with_image_logging(tmp_path: Path) -> None:
    root = make_mnist(tmp_path / "data", n=200)
    cfg = compose_config(
        *FAST,
        "model=cnn",
        "dataset=mnist",
        f"dataset.data_dir={root}",
        "dataset.random_crop_padding=2",
        "trainer.epochs=3",
        "trainer.precision=bf16-mixed",
        "trainer.channels_last=true",
        "trainer.histogram_every_n_epochs=1",
        "optimizer.lr=0.01",
    )
    summary = run(cfg, tmp_path / "run")
    assert summary["metrics"]["test/acc"] > 0.5
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    images = set(events.Tags()["images"])
    assert {"train/samples", "test/confusion_matrix_plot"} <= images
    assert len(events.Tags()["histograms"]) > 0


def test_image_folder_trains_with_a_dataloader(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", ("train",), per_class=12)
    cfg = compose_config(
        *FAST,
        "model=cnn_large",
        "dataset=image_folder",
        "loss=bce",
        f"dataset.root={root}",
        "dataset.image_size=32",
        "trainer.batch_size=8",
    )
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and "test/auc" in summary["metrics"]


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")]
)
def test_real_shared_data(name: str, folder: str) -> None:
    if not (SHARED / folder).is_dir():
        pytest.skip(f"{SHARED / folder} is absent (the real data lives outside the repo)")
    data = DATASETS.build(name, options(name, data_dir=str(SHARED / folder), val_fraction=0))
    assert len(data.train) == 60000 and len(data.test) == 10000
    counts = torch.bincount(data.test.tensors[1]).tolist()
    if name == "mnist":  # class counts from shared/data/mnist/SOURCE.md
        assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    else:
        assert counts == [1000] * 10


def test_one_epoch_of_the_reference_recipe_on_real_mnist(tmp_path: Path) -> None:
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"{SHARED / 'mnist'} is absent (the real data lives outside the repo)")
    cfg = compose_config(
        "experiment=mnist_cnn",
        f"dataset.data_dir={SHARED / 'mnist'}",
        "trainer.epochs=1",
        "trainer.device=cpu",
    )
    summary = run(cfg, tmp_path)
    assert summary["metrics"]["test/acc"] > 0.97
