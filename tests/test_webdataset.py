"""dataset=webdataset: .tar shards streamed, shared out among ranks and workers, resumed."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dltrain import launch
from dltrain.data.webdataset_source import ShardBatches, webdataset
from dltrain.errors import ConfigError
from dltrain.train import run

from .helpers import compose_config

webdataset_package = pytest.importorskip("webdataset")


def image_bytes(value: int, fmt: str = "PNG") -> bytes:
    """An 8x8 RGB image of one grey level (the sample's id: lossless as PNG)."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def make_shards(folder: Path, sizes: list[int], start: int = 0, ext: str = "png") -> str:
    """Shards of samples whose pixels are their id (ids from `start`); label: id mod 2."""
    folder.mkdir(parents=True, exist_ok=True)
    sample = start
    for s, size in enumerate(sizes):
        with webdataset_package.TarWriter(str(folder / f"shard-{s:06d}.tar")) as sink:
            for _ in range(size):
                fmt = "PNG" if ext == "png" else "JPEG"
                sink.write(
                    {"__key__": f"{sample:05d}", ext: image_bytes(sample, fmt), "cls": sample % 2}
                )
                sample += 1
    return f"{folder}/shard-{{000000..{len(sizes) - 1:06d}}}.tar"


def ids(batches) -> list[int]:
    """The sample ids of a pass (each image's first pixel)."""
    return [int(v) for x, _ in batches for v in x[:, 0, 0, 0]]


def test_every_sample_once_per_pass_on_two_ranks_and_workers(tmp_path: Path) -> None:
    data = webdataset(make_shards(tmp_path, [10, 10, 10, 10]), image_size=8, shuffle_buffer=4)
    ranks = [ShardBatches(data.train, 3, True, 0, 2, "cpu", r, 2) for r in range(2)]
    for _ in range(2):  # two passes: reshuffled, each complete
        seen = [ids(b) for b in ranks]
        assert len(seen[0]) == len(seen[1]) == 20 and len(ranks[0]) == len(ranks[1]) == 7
        assert sorted(seen[0] + seen[1]) == list(range(40))
    assert seen[0] != ids(ShardBatches(data.train, 3, True, 1, 2, "cpu", 0, 2))  # seeded


def test_uneven_shards_train_as_often_on_every_rank_and_evaluate_everything(
    tmp_path: Path,
) -> None:
    data = webdataset(make_shards(tmp_path, [5, 7, 4]), image_size=8)
    train = [ids(ShardBatches(data.train, 4, True, 0, 0, "cpu", r, 2)) for r in range(2)]
    assert len(train[0]) == len(train[1]) == 7 and not set(train[0]) & set(train[1])
    evaluated = [ids(ShardBatches(data.train, 4, False, 0, 1, "cpu", r, 2)) for r in range(2)]
    assert evaluated == [list(range(5)) + list(range(12, 16)), list(range(5, 12))]


@pytest.mark.parametrize("buffer", [0, 8])
def test_a_resume_trains_on_exactly_the_samples_not_yet_seen(tmp_path: Path, buffer: int) -> None:
    data = webdataset(make_shards(tmp_path, [9, 9, 9]), image_size=8, shuffle_buffer=buffer)
    whole = ShardBatches(data.train, 4, True, 0, 2, "cpu", 0, 1)
    ids(whole)  # a first pass
    epoch = whole.state_dict()  # the second pass's start
    order = ids(whole)
    cut = ShardBatches(data.train, 4, True, 0, 2, "cpu", 0, 1)
    cut.load_state_dict(epoch)
    first = []
    for x, _ in cut:
        first += [int(v) for v in x[:, 0, 0, 0]]
        if len(first) == 12:
            break
    state = cut.state_dict()
    assert state["position"] == 12 and first == order[:12]
    resumed = ShardBatches(data.train, 4, True, 0, 2, "cpu", 0, 1)
    resumed.load_state_dict(state)
    rest = ids(resumed)
    assert sorted(first + rest) == list(range(27)) and resumed.exhausted
    assert len(resumed) == 7 and ids(resumed) != order  # the next pass: reshuffled


def test_missing_shards_and_keys_are_one_line_errors(tmp_path: Path) -> None:
    pattern = make_shards(tmp_path / "a", [3, 3])
    with pytest.raises(ConfigError, match=r"1 of 3 shards .* do not exist .*shard-000000.tar"):
        webdataset(pattern.replace("000001", "000002"))
    with pytest.raises(ConfigError, match=r"has no 'jpg' file; .* extensions cls, png") as e:
        webdataset(pattern, image_key="jpg")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"no 'label' file"):
        webdataset(pattern, label_key="label")
    with pytest.raises(ConfigError, match=r"train_shards: required"):
        webdataset()


def test_no_pickle_is_ever_read(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    with webdataset_package.TarWriter(str(folder / "s-0.tar")) as sink:
        sink.write({"__key__": "a", "png": image_bytes(1), "cls": b"\x80\x04K\x01."})
    with pytest.raises(ConfigError, match=r"a.cls holds .* not an integer label"):
        webdataset(f"{folder}/s-0.tar")


def test_shards_train_end_to_end(tmp_path: Path) -> None:
    train = make_shards(tmp_path / "train", [16, 16], ext="jpg")
    val = make_shards(tmp_path / "val", [8], start=32)
    cfg = compose_config(
        "model=cnn", "dataset=webdataset", f"dataset.train_shards='{train}'",
        f"dataset.val_shards='{val}'", f"dataset.test_shards='{val}'", "dataset.image_size=16",
        "loss=bce", "trainer.epochs=2", "trainer.batch_size=8", "trainer.num_workers=2",
        "trainer.device=cpu",
    )  # fmt: skip
    result = run(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["steps"] == 8
    assert "test/loss" in result["metrics"]


@pytest.mark.slow
def test_shards_train_on_two_ddp_ranks(tmp_path: Path) -> None:
    train = make_shards(tmp_path / "train", [8, 8, 8, 8])
    cfg = compose_config(
        "model=cnn", "dataset=webdataset", f"dataset.train_shards='{train}'",
        "dataset.image_size=8", "loss=bce", "trainer.epochs=2", "trainer.batch_size=4",
        "trainer.device=cpu", "trainer.devices=2", "trainer.strategy=ddp",
    )  # fmt: skip
    result = launch.run(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["steps"] == 8  # 16 samples a rank
