"""Batch iteration: in-memory tensors are sliced by index; other datasets use a DataLoader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, TensorDataset


class TensorBatches:
    """Batches of a TensorDataset by index, reshuffled each epoch from a seeded generator.

    No per-sample Python work and no worker processes: for data that fits in memory this is
    much faster than a DataLoader.
    """

    def __init__(
        self,
        dataset: TensorDataset,
        batch_size: int,
        shuffle: bool,
        seed: int,
        device: torch.device | str = "cpu",
    ):
        self.tensors = tuple(t.to(device) for t in dataset.tensors)  # moved once, not per batch
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                index = order[start : start + self.batch_size].to(self.tensors[0].device)
                yield tuple(t[index] for t in self.tensors)


class TokenDataset(Dataset):
    """Token id sequences of varying length (int64, 0 is padding) and their labels."""

    def __init__(self, ids: list[torch.Tensor], labels: torch.Tensor):
        self.ids, self.labels = ids, labels
        self.lengths = torch.tensor([len(t) for t in ids])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[i], self.labels[i]


class TokenBatches:
    """Padded batches of similar-length sequences (bucketing), reshuffled each epoch.

    Each pool of `pool` batches' worth of shuffled samples is sorted by length before it is cut
    into batches, so little padding is computed; the batches are then shuffled.
    """

    def __init__(
        self,
        dataset: TokenDataset,
        batch_size: int,
        shuffle: bool,
        seed: int,
        device: torch.device | str = "cpu",
        pool: int = 50,
    ):
        self.dataset, self.batch_size, self.shuffle, self.pool = dataset, batch_size, shuffle, pool
        self.generator = torch.Generator().manual_seed(seed)
        self.device = device

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, lengths = len(self.dataset), self.dataset.lengths
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        pools = order.split(self.batch_size * self.pool)
        order = torch.cat([p[lengths[p].argsort(descending=True, stable=True)] for p in pools])
        batches = list(order.split(self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator)]
        for index in batches:
            ids = pad_sequence([self.dataset.ids[i] for i in index], batch_first=True)
            yield ids.to(self.device), self.dataset.labels[index].to(self.device)


def make_batches(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
) -> Iterable:
    """The fastest batch iterator that fits the dataset (in-memory tensors live on `device`)."""
    if isinstance(dataset, TensorDataset):
        return TensorBatches(dataset, batch_size, shuffle, seed, device)
    if isinstance(dataset, TokenDataset):
        return TokenBatches(dataset, batch_size, shuffle, seed, device)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
        pin_memory=torch.device(device).type == "cuda",
    )


def samples(dataset: Dataset, indices: list[int]) -> torch.Tensor:
    """The inputs at `indices` stacked into one tensor, as stored (e.g. uint8 images)."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0][indices]
    return torch.stack([torch.as_tensor(dataset[i][0]) for i in indices])
