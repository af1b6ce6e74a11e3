"""Batch iteration: in-memory tensors are sliced by index; other datasets use a DataLoader.

Every iterator can resume mid-epoch: `state_dict()` holds the shuffling generator's state at the
start of the current epoch and how many batches of it were consumed, so after
`load_state_dict()` the next pass redraws the same order and skips what was already trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset


class Resumable:
    """The seeded shuffling and mid-epoch position shared by every batch iterator."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_start = self.generator.get_state()
        self.consumed = 0  # batches of the current pass handed out (or skipped on resume)
        self.skip = 0  # batches to leave out at the start of the next pass (resume)

    def begin(self, n: int, shuffle: bool) -> tuple[torch.Tensor, int]:
        """This pass's sample order and the first batch to hand out; remembers the pass start."""
        self.epoch_start = self.generator.get_state()
        order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
        first, self.skip = self.skip, 0
        self.consumed = first
        return order, first

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """Where the current pass started and how far it got (a finished pass: the next one)."""
        if self.consumed >= len(self):
            return {"generator": self.generator.get_state(), "consumed": 0}
        return {"generator": self.epoch_start, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        """Make the next pass repeat the saved one from its first unconsumed batch."""
        self.generator.set_state(state["generator"])
        self.skip = int(state["consumed"])


class TensorBatches(Resumable):
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
        super().__init__(seed)
        self.tensors = tuple(t.to(device) for t in dataset.tensors)  # moved once, not per batch
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        order, first = self.begin(n, self.shuffle)
        for start in range(first * self.batch_size, n, self.batch_size):
            self.consumed += 1
            if not self.shuffle:
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


class TokenBatches(Resumable):
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
        super().__init__(seed)
        self.dataset, self.batch_size, self.shuffle, self.pool = dataset, batch_size, shuffle, pool
        self.device = device

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        lengths = self.dataset.lengths
        order, first = self.begin(len(self.dataset), self.shuffle)
        pools = order.split(self.batch_size * self.pool)
        order = torch.cat([p[lengths[p].argsort(descending=True, stable=True)] for p in pools])
        batches = list(order.split(self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator)]
        for index in batches[first:]:
            self.consumed += 1
            ids = pad_sequence([self.dataset.ids[i] for i in index], batch_first=True)
            yield ids.to(self.device), self.dataset.labels[index].to(self.device)


class LoaderBatches(Resumable):
    """A DataLoader (its workers decode the samples) over this pass's seeded order."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool,
        seed: int,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
    ):
        super().__init__(seed)
        self.size, self.batch_size, self.shuffle = len(dataset), batch_size, shuffle
        self.sampler = _Indices()
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=torch.device(device).type == "cuda",
        )

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator:
        order, first = self.begin(self.size, self.shuffle)
        self.sampler.indices = order[first * self.batch_size :].tolist()
        for batch in self.loader:
            self.consumed += 1
            yield batch


class _Indices(Sampler):
    """The sample indices of one pass, set before the pass (the sampler runs in this process)."""

    def __init__(self):
        self.indices: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


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
    return LoaderBatches(dataset, batch_size, shuffle, seed, num_workers, device)


def samples(dataset: Dataset, indices: list[int]) -> torch.Tensor:
    """The inputs at `indices` stacked into one tensor, as stored (e.g. uint8 images)."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0][indices]
    return torch.stack([torch.as_tensor(dataset[i][0]) for i in indices])
