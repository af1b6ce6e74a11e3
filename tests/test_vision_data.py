"""Image datasets on tiny fixtures in the real on-disk formats, and on the real shared data."""

from __future__ import annotations

import pickle
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from dltrain.data.files import data_root
from dltrain.data.vision import STATS
from dltrain.errors import ConfigError
from dltrain.train import run

from .helpers import (
    FAST,
    SHARED,
    compose_config,
    make_folder,
    make_mnist,
    py2_dumps,
    py3_dumps,
    write_cifar,
    write_idx,
)
from .helpers import build_dataset as build

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning"
)
IDX_STEMS = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    )


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_idx_files_give_uint8_splits(tmp_path: Path, compress: bool) -> None:
    data = build("mnist", data_dir=str(make_mnist(tmp_path, compress=compress)), val_fraction=0.2)
    x, y = data.train.tensors
    assert x.dtype == torch.uint8 and x.shape == (80, 1, 28, 28) and y.dtype == torch.int64
    assert sorted(data.val.tensors[1].tolist()) == sorted(list(range(10)) * 2)  # stratified
    assert data.test.tensors[0].shape == (33, 1, 28, 28)
    assert data.test.tensors[1].tolist() == [i % 10 for i in range(33)]  # official order kept
    assert torch.equal(x[y == 3][:, 0, 6:10].unique(), torch.tensor([250], dtype=torch.uint8))
    meta = data.meta
    assert (meta.task, meta.input_shape, meta.num_classes) == ("multiclass", (1, 28, 28), 10)
    assert meta.class_names == [str(i) for i in range(10)]
    assert meta.preprocessing == {
        "normalize": {"mean": [0.1307], "std": [0.3081]},
        "augment": {"crop_padding": 0, "hflip": False},
    }
    assert build("mnist", data_dir=str(tmp_path), val_fraction=0).val is None


def test_env_var_and_home_give_the_default_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_mnist(tmp_path / "env", folder="FashionMNIST")
    monkeypatch.setenv("DLTRAIN_DATA_DIR", str(tmp_path / "env"))
    data = build("fashion_mnist")
    assert data.meta.class_names[-1] == "Ankle boot" and len(data.train) == 90
    monkeypatch.delenv("DLTRAIN_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root(None) == tmp_path / "home" / ".cache" / "dltrain"
    assert data_root(str(tmp_path)) == tmp_path


def test_missing_files_are_one_line_naming_the_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build("mnist", data_dir=str(tmp_path))
    [line] = str(err.value).splitlines()
    for stem in ["t10k-labels-idx1-ubyte", *IDX_STEMS]:
        assert f"{tmp_path}/MNIST/raw/{stem}(.gz)" in line
    assert "dataset.download=true" in line and "DLTRAIN_DATA_DIR" in line
    with pytest.raises(ConfigError, match=re.escape(f"missing {tmp_path}/cifar-10-batches-py/")):
        build("cifar10", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-100], "truncated"),
        (lambda b: b"\0\0\x08\x01" + b[4:], "not an IDX file"),  # a labels header on images
        (lambda b: b[:10], "truncated IDX header"),
        (lambda b: b + b"\0", "has trailing bytes"),
    ],
)
def test_corrupt_idx_files_are_named(
    tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    path = make_mnist(tmp_path, compress=False) / "MNIST" / "raw" / IDX_STEMS[0]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        build("mnist", data_dir=str(tmp_path))


def test_broken_gzip_and_label_count_mismatch_are_named(tmp_path: Path) -> None:
    raw = make_mnist(tmp_path) / "MNIST" / "raw"
    labels = raw / f"{IDX_STEMS[1]}.gz"
    write_idx(raw / IDX_STEMS[1], np.zeros(7), compress=True)
    with pytest.raises(ConfigError, match=re.escape(f"{labels} (7,) labels")):
        build("mnist", data_dir=str(tmp_path))
    images = raw / f"{IDX_STEMS[0]}.gz"
    images.write_bytes(images.read_bytes()[:-50])
    with pytest.raises(ConfigError, match=re.escape(f"{images}: cannot be read")):
        build("mnist", data_dir=str(tmp_path))


def test_impossible_options_name_their_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build("cifar10", data_dir=str(tmp_path), val_fraction=1.0, random_crop_padding=-1)
    assert [p.split(":")[0] for p in err.value.problems] == [
        "dataset.val_fraction",
        "dataset.random_crop_padding",
    ]


def test_download_calls_torchvision_into_data_dir_only_when_files_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_mnist(root: str, train: bool, download: bool) -> None:
        calls.append((root, train, download))
        if not (Path(root) / "MNIST").exists():
            make_mnist(Path(root))

    monkeypatch.setattr("torchvision.datasets.MNIST", fake_mnist)
    data = build("mnist", data_dir=str(tmp_path), download=True)
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    assert len(data.test) == 33
    build("mnist", data_dir=str(tmp_path), download=True)
    assert len(calls) == 2  # files present: no download

    def offline(**_: object) -> None:
        raise OSError("offline")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(ConfigError, match=re.escape(f"download into {tmp_path} failed: offline")):
        build("cifar10", data_dir=str(tmp_path), download=True)


def test_a_read_only_folder_is_read_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_mnist(tmp_path)
    monkeypatch.setattr("torchvision.datasets.MNIST", lambda **_: pytest.fail("downloaded"))
    paths = sorted(tmp_path.rglob("*"), reverse=True)  # files before their folders
    before = snapshot(tmp_path)
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        data = build("mnist", data_dir=str(tmp_path), download=True)
    finally:
        for path in reversed(paths):
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert snapshot(tmp_path) == before and len(data.train) == 90


@pytest.mark.parametrize("dumps", [py2_dumps, py3_dumps])
@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_python_batches(
    tmp_path: Path, archive: bool, dumps: Callable[[object], bytes]
) -> None:
    folder = write_cifar(tmp_path, dumps=dumps)
    first = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="bytes")[b"data"][0]
    if dumps is py2_dumps:  # the official files' global, as Python 2's numpy named it
        assert b"cnumpy.core.multiarray\n_reconstruct\n" in (folder / "test_batch").read_bytes()
    if archive:  # the official cifar-10-python.tar.gz, read without extracting
        with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname="cifar-10-batches-py")
        shutil.rmtree(folder)
    data = build("cifar10", data_dir=str(tmp_path), val_fraction=0)
    x, y = data.train.tensors
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert torch.equal(x[0], torch.from_numpy(first).reshape(3, 32, 32))  # channel-first rows
    assert len(data.test) == 20 and data.meta.input_shape == (3, 32, 32)
    assert data.meta.class_names[:2] == ["airplane", "automobile"]
    assert data.meta.preprocessing == {
        "normalize": {"mean": STATS["cifar10"][0], "std": STATS["cifar10"][1]},
        "augment": {"crop_padding": 4, "hflip": True},
    }
    assert sorted(build("cifar10", data_dir=str(tmp_path)).val.tensors[1].tolist()) == list(
        range(10)
    )
    assert not (tmp_path / "cifar-10-batches-py").exists() or not archive


def test_a_corrupt_cifar_batch_is_named(tmp_path: Path) -> None:
    (write_cifar(tmp_path) / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="data_batch_3 is not a CIFAR-10 batch"):
        build("cifar10", data_dir=str(tmp_path))
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()  # now only the archive counts
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(ConfigError, match="cifar-10-python.tar.gz: lacks .*/test_batch"):
        build("cifar10", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")]
)
def test_real_shared_data(name: str, folder: str) -> None:
    if not (SHARED / folder).is_dir():
        pytest.skip(f"{SHARED / folder} is absent (the real data lives outside the repo)")
    data = build(name, data_dir=str(SHARED / folder), val_fraction=0)
    x, y = data.train.tensors
    assert x.shape == (60000, 1, 28, 28) and len(data.test) == 10000
    counts = torch.bincount(y).tolist(), torch.bincount(data.test.tensors[1]).tolist()
    if name == "mnist":  # class counts from shared/data/mnist/SOURCE.md
        assert counts[0] == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        assert counts[1] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    else:
        assert counts == ([6000] * 10, [1000] * 10)
    histogram = torch.bincount(x.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = float((histogram * values).sum() / histogram.sum())
    std = float(((histogram * values**2).sum() / histogram.sum() - mean**2) ** 0.5)
    assert (mean, std) == pytest.approx((STATS[name][0][0], STATS[name][1][0]), abs=1e-4)


@pytest.mark.parametrize("layout", ["root/train/<class>", "root/<class>"])
def test_image_folder_splits_train_without_val_or_test(tmp_path: Path, layout: str) -> None:
    make_folder(tmp_path, ("train",))
    root = tmp_path if layout == "root/train/<class>" else tmp_path / "train"
    sizes = {"image_size": 16, "val_fraction": 0.25, "test_fraction": 0.25}
    data = build("image_folder", root=str(root), **sizes)
    assert (len(data.train), len(data.val), len(data.test)) == (8, 4, 4)
    assert sorted(data.val[i][1] for i in range(4)) == [0, 0, 1, 1]  # stratified
    images = torch.stack([data.train[i][0] for i in range(8)])
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 16, 16)
    meta = data.meta
    assert (meta.task, meta.num_classes, meta.class_names) == ("binary", 2, ["cat", "dog"])
    assert meta.input_shape == (3, 16, 16)
    pixels = images.double().div(255).transpose(0, 1).flatten(1)
    assert meta.preprocessing["normalize"] == {
        "mean": pytest.approx(pixels.mean(1).tolist()),
        "std": pytest.approx(pixels.std(1, correction=0).tolist()),
    }
    assert meta.preprocessing["augment"] == {"crop_padding": 0, "hflip": False}


def test_image_folder_uses_given_val_and_test_and_checks_classes(tmp_path: Path) -> None:
    root = make_folder(tmp_path, ("train", "val", "test"), classes=("a", "b", "c"), per_class=3)
    (root / "val" / "c").rename(root / "val" / "zebra")
    with pytest.raises(
        ConfigError, match=re.escape(f"{root / 'val'} has classes zebra that the train")
    ):
        build("image_folder", root=str(root))
    shutil.rmtree(root / "val")
    data = build(
        "image_folder", root=str(root), image_size=8, val_fraction=1 / 3, horizontal_flip=True
    )
    assert (len(data.train), len(data.val), len(data.test)) == (6, 3, 9)  # val split from train
    assert data.meta.task == "multiclass" and data.meta.preprocessing["augment"]["hflip"]
    shutil.rmtree(root / "train")
    with pytest.raises(ConfigError, match="has test/ but no train/ folder"):
        build("image_folder", root=str(root))


def test_image_folder_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset.root: required"):
        build("image_folder")
    with pytest.raises(ConfigError) as err:
        build("image_folder", root=str(tmp_path), image_size=0, random_crop_padding=-2)
    assert [p.split(":")[0] for p in err.value.problems] == [
        "dataset.random_crop_padding",
        "dataset.image_size",
    ]
    with pytest.raises(ConfigError, match="dataset.val_fraction=1.0"):
        build("image_folder", root=str(tmp_path), val_fraction=1.0)
    (tmp_path / "cat").mkdir()
    with pytest.raises(ConfigError, match="no images"):
        build("image_folder", root=str(tmp_path))


@pytest.mark.parametrize("dataset", ["mnist", "image_folder"])
def test_a_cnn_learns_from_the_files_end_to_end(tmp_path: Path, dataset: str) -> None:
    if dataset == "mnist":  # in-memory uint8 tensors
        root = make_mnist(tmp_path / "data", n=300)
        extra = ["model=cnn", f"dataset.data_dir={root}", "dataset.random_crop_padding=1"]
    else:  # decoded per sample by a DataLoader
        root = make_folder(tmp_path / "data", ("train",), per_class=20)
        extra = ["model=cnn_large", "loss=bce", f"dataset.root={root}", "dataset.image_size=32"]
        extra += ["dataset.horizontal_flip=true"]
    cfg = compose_config(*FAST, f"dataset={dataset}", *extra, "trainer.batch_size=16")
    assert run(cfg, tmp_path / "run")["metrics"]["test/acc"] > 0.9


def test_image_folder_decodes_as_pillow_did(tmp_path: Path) -> None:
    """torchvision.io gives Pillow's pixels: PNG exactly, JPEG within rounding of the IDCT."""
    from PIL import Image as PILImage
    from torchvision.transforms.v2.functional import pil_to_tensor, resize

    from dltrain.data.image_folder import load_image

    root = make_folder(tmp_path, ("train",), per_class=5)
    for path, tolerance in ((root / "train/cat/0.png", 0), (root / "train/cat/1.JPG", 1.0)):
        with PILImage.open(path) as pil:
            before = resize(pil_to_tensor(pil.convert("RGB")), [16, 16], antialias=True)
        after = load_image(path, (3, 16, 16))
        assert after.dtype == torch.uint8 and after.shape == before.shape
        assert (after.int() - before.int()).abs().float().mean() <= tolerance, path
