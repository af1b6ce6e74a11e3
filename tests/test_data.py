from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dltrain.config import options
from dltrain.data.arrays import split_arrays
from dltrain.data.batches import TensorBatches, TokenDataset, make_batches
from dltrain.data.splits import SplitOptions
from dltrain.errors import ConfigError
from dltrain.registry import DATASETS, TARGET

from .helpers import compose_config

GENERATED = [
    n for n in DATASETS.names() if not DATASETS.info(n).reads_files and n != TARGET
]  # target: a user's callable (tests/test_plugins.py)


@pytest.mark.parametrize("name", GENERATED)
def test_every_dataset_that_needs_no_files_gives_splits_and_meta(name: str) -> None:
    cfg = compose_config(f"dataset={name}").dataset
    data = DATASETS.build(name, options(cfg))
    sizes = {k: len(getattr(data, k)) for k in ("train", "val", "test")}
    total = sum(sizes.values())
    assert sizes["test"] == pytest.approx(total * cfg.test_fraction, abs=2)
    assert sizes["val"] == pytest.approx(total * cfg.val_fraction, abs=2)
    x, y = data.train.tensors
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == data.meta.input_shape
    if data.meta.task == "regression":
        assert y.dtype == torch.float32 and y.shape == (len(x), data.meta.num_targets)
    else:
        assert y.dtype == torch.int64 and int(y.max()) == data.meta.num_classes - 1
        assert (data.meta.task == "binary") == (data.meta.num_classes == 2)


def test_standardisation_uses_train_statistics_only() -> None:
    data = DATASETS.build("wine", options(compose_config("dataset=wine").dataset))
    train_x, val_x = data.train.tensors[0], data.val.tensors[0]
    assert torch.allclose(train_x.mean(0), torch.zeros(13), atol=1e-5)
    assert not torch.allclose(val_x.mean(0), torch.zeros(13), atol=1e-3)
    assert len(data.meta.preprocessing["standardize"]["mean"]) == 13


def test_stratified_split_keeps_class_ratios() -> None:
    data = DATASETS.build("breast_cancer", options(compose_config("dataset=breast_cancer").dataset))
    ratios = [ds.tensors[1].float().mean().item() for ds in (data.train, data.val, data.test)]
    assert max(ratios) - min(ratios) < 0.02


def test_split_seed_changes_the_split_reproducibly() -> None:
    def test_targets(seed: int) -> torch.Tensor:
        cfg = compose_config("dataset=iris", f"dataset.split_seed={seed}").dataset
        return DATASETS.build("iris", options(cfg)).test.tensors[0]

    assert torch.equal(test_targets(1), test_targets(1))
    assert not torch.equal(test_targets(1), test_targets(2))


def test_line_is_the_reference_line() -> None:
    data = DATASETS.build("line", options(compose_config("dataset=line").dataset))
    x, y = data.train.tensors
    assert torch.allclose(y, 0.3 * x + 0.5, atol=1e-6)


def test_blobs_task_follows_centers_and_bad_fractions_fail() -> None:
    cfg = options(compose_config("dataset=blobs", "dataset.centers=3").dataset)
    assert DATASETS.build("blobs", cfg).meta.task == "multiclass"
    with pytest.raises(ConfigError, match="sum to less than 1"):
        DATASETS.build("blobs", {**cfg, "val_fraction": 0.5, "test_fraction": 0.5})


def test_tensor_batches_cover_every_sample_once_and_reshuffle() -> None:
    ds = torch.utils.data.TensorDataset(torch.arange(10.0)[:, None], torch.arange(10))
    batches = TensorBatches(ds, batch_size=4, shuffle=True, seed=0)
    first = torch.cat([y for _, y in batches])
    second = torch.cat([y for _, y in batches])
    assert len(batches) == 3
    assert sorted(first.tolist()) == list(range(10)) and not torch.equal(first, second)
    again = torch.cat([y for _, y in TensorBatches(ds, 4, True, 0)])
    assert torch.equal(first, again)  # same seed, same order
    ordered = torch.cat([y for _, y in TensorBatches(ds, 4, False, 0)])
    assert ordered.tolist() == list(range(10))


def test_other_datasets_use_a_dataloader() -> None:
    class Squares(Dataset):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.tensor([float(i)]), i * i

    batches = make_batches(Squares(), batch_size=4, shuffle=False, seed=0)
    assert isinstance(batches.loader, DataLoader)
    assert [y.tolist() for _, y in batches] == [[0, 1, 4, 9], [16, 25]]


class Numbers(Dataset):
    def __len__(self) -> int:
        return 23

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([float(i)]), i


@pytest.mark.parametrize("kind", ["tensors", "tokens", "loader"])
def test_batches_resume_mid_epoch_with_the_same_order(kind: str) -> None:
    dataset = {
        "tensors": TensorDataset(torch.arange(23.0)[:, None], torch.arange(23)),
        "tokens": TokenDataset([torch.arange(1, 2 + i % 7) for i in range(23)], torch.arange(23)),
        "loader": Numbers(),
    }[kind]
    labels = lambda batches: [y.tolist() for _, y in batches]  # noqa: E731
    original = make_batches(dataset, batch_size=4, shuffle=True, seed=3)
    first_epoch = iter(original)
    seen = [next(first_epoch)[1].tolist() for _ in range(2)]
    state = original.state_dict()
    rest, second = labels(first_epoch), labels(original)

    resumed = make_batches(dataset, batch_size=4, shuffle=True, seed=99)  # the state decides
    resumed.load_state_dict(state)
    assert labels(resumed) == rest and labels(resumed) == second
    assert sorted(sum(seen + rest, [])) == list(range(23))


def test_noisy_binary_classes_are_separated() -> None:
    cfg = options(compose_config("dataset=noisy_binary").dataset)
    x, y = DATASETS.build("noisy_binary", cfg).train.tensors
    assert x[y == 0].mean() < -0.8 and x[y == 1].mean() > 0.8
    assert np.isclose(y.float().mean().item(), 0.5, atol=0.06)


@pytest.mark.parametrize("standardize", [False, True])
def test_array_features_or_targets_that_are_not_finite_are_named(standardize: bool) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    x[5, 1], x[::2, 2] = np.inf, 1e300  # inf; 1e300 overflows float32 and the std
    split = SplitOptions(val_fraction=0.2, test_fraction=0.2, standardize=standardize)
    with pytest.raises(ConfigError) as err:
        split_arrays(x, y, "binary", split, feature_names=["a", "b", "c"], source="dataset blobs")
    [line] = str(err.value).splitlines()
    assert line.startswith("dataset blobs: feature column(s) 'b', 'c' hold values that are not")
    x[5, 1], x[:, 2] = 0.0, 1.0
    targets = np.ones(40)
    targets[3] = np.inf
    with pytest.raises(ConfigError, match="dataset: 1 regression targets are not finite"):
        split_arrays(x, targets, "regression", replace(split, stratify=False))
