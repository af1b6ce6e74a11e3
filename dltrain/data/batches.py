"""Batch iteration: in-memory tensors are sliced by index; other datasets use a DataLoader.

Every iterator shares a pass among the ranks of a distributed run and can resume mid-epoch:
`state_dict()` holds the shuffling generator's state at the start of the current pass and how
many of its samples were handed out (over all ranks), so after `load_state_dict()` the next pass
redraws the same order and skips what was already trained on, on any number of ranks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset


class Resumable:
    """The seeded order, each rank's share of it and the position reached in the current pass.

    Every rank draws the same order (same seed); rank r of W takes its positions r, r + W, ...
    Shuffled (training) passes are padded by wrapping around so every rank takes the same number
    of steps, as DistributedSampler does; unshuffled (evaluation) passes are not, so each sample
    counts once. With W ranks and per-rank batches of B, step k covers samples [kBW, (k+1)BW) of
    the order: the same samples as one rank with batches of BW.
    """

    def __init__(
        self, n: int, batch_size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1
    ):
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.pad = shuffle  # training passes are padded so that every rank steps as often
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_start = self.generator.get_state()
        self.position = 0  # samples of the current pass handed out on all ranks (or skipped)
        self.skip = 0  # samples to leave out at the start of the next pass (resume)
        self.end = n  # samples of the order a pass covers (fewer with a limit)

    def limit(self, batches: int | None, pad: bool | None = None) -> None:
        """Cover only the first `batches` steps of every pass (debug subsets); `pad`: pad the
        ranks' shares as training does (an unshuffled pass to overfit)."""
        if pad is not None:
            self.pad = pad
        steps = self.batch_size * self.world_size
        self.end = self.n if batches is None else min(self.n, batches * steps)

    def __len__(self) -> int:
        """Batches in a whole pass on this rank."""
        n = self.end
        per_rank = -(-n // self.world_size) if self.pad else self._unpadded(n)
        return -(-per_rank // self.batch_size)

    def _unpadded(self, n: int) -> int:
        return len(range(self.rank, n, self.world_size))

    @property
    def exhausted(self) -> bool:
        """Whether the current pass has handed out all its samples."""
        return self.position >= self.end

    def end_pass(self) -> None:
        """Count the current pass as done (training stopped inside it)."""
        self.position = self.end

    def begin(self) -> torch.Tensor:
        """This pass's sample order (the same on every rank); remembers the pass start."""
        self.epoch_start = self.generator.get_state()
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else None
        self.position, self.skip = self.skip, 0
        return torch.arange(self.n) if order is None else order

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's share of `order` (padded by wrapping around when shuffled)."""
        size = self.world_size
        if size == 1:
            return order
        if self.pad and len(order) % size:
            order = torch.cat([order, order[torch.arange(size - len(order) % size) % len(order)]])
        return order[self.rank :: size]

    def advance(self) -> None:
        """One step of every rank was handed out."""
        self.position = min(self.end, self.position + self.batch_size * self.world_size)

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """Where the current pass started and how far it got (a finished pass: the next one)."""
        if self.exhausted:
            return {"generator": self.generator.get_state(), "position": 0}
        return {"generator": self.epoch_start, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Make the next pass repeat the saved one from its first sample not yet trained on."""
        self.generator.set_state(state["generator"])
        if "position" in state:
            self.skip = int(state["position"])
        else:  # checkpoints of dltrain 0.1 counted batches of one rank
            self.skip = int(state["consumed"]) * self.batch_size


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
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(len(dataset), batch_size, shuffle, seed, rank, world_size)
        self.tensors = tuple(t.to(device) for t in dataset.tensors)  # moved once, not per batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.begin()
        if not self.shuffle and self.world_size == 1:  # slices: no copy
            for start in range(self.position, self.end, self.batch_size):
                self.advance()
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)
            return
        # The order is drawn on the CPU (the same on every device) and copied over once per pass:
        # a copy per batch would make the GPU wait on the host at every step.
        shard = self.shard(order[self.position : self.end]).to(self.tensors[0].device)
        for index in shard.split(self.batch_size):
            self.advance()
            yield tuple([t.index_select(0, index) for t in self.tensors])  # half of t[index]'s cost


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

    Each pool of `pool` steps' worth of shuffled samples is sorted by length before it is cut
    into steps (one batch per rank each), so little padding is computed; the steps are then
    shuffled. A resume on another number of ranks starts at the step nearest the saved position.
    """

    def __init__(
        self,
        dataset: TokenDataset,
        batch_size: int,
        shuffle: bool,
        seed: int,
        device: torch.device | str = "cpu",
        pool: int = 50,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(len(dataset), batch_size, shuffle, seed, rank, world_size)
        self.dataset, self.pool, self.device = dataset, pool, device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        lengths = self.dataset.lengths
        order = self.begin()
        per_step = self.batch_size * self.world_size
        pools = order.split(per_step * self.pool)
        order = torch.cat([p[lengths[p].argsort(descending=True, stable=True)] for p in pools])
        steps = list(order.split(per_step))
        if self.shuffle:
            steps = [steps[i] for i in torch.randperm(len(steps), generator=self.generator)]
        first = -(-self.position // per_step)
        self.position = min(self.end, first * per_step)
        for index in steps[first : -(-self.end // per_step)]:
            self.advance()
            index = self.shard(index)
            if len(index):  # an evaluation pass's last step may leave a rank nothing
                ids = pad_sequence([self.dataset.ids[i] for i in index], batch_first=True)
                yield ids.to(self.device), self.dataset.labels[index].to(self.device)


class LoaderBatches(Resumable):
    """A DataLoader (its workers decode the samples) over this rank's share of the pass's order."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool,
        seed: int,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(len(dataset), batch_size, shuffle, seed, rank, world_size)
        self.sampler = _Indices()
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=torch.device(device).type == "cuda",
        )

    def __iter__(self) -> Iterator:
        order = self.begin()
        self.sampler.indices = self.shard(order[self.position : self.end]).tolist()
        for batch in self.loader:
            self.advance()
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
    rank: int = 0,
    world_size: int = 1,
) -> Iterable:
    """The fastest batch iterator that fits the dataset (in-memory tensors live on `device`).

    With several ranks each iterator yields this rank's batches of its share of every pass.
    """
    share = {"rank": rank, "world_size": world_size}
    if isinstance(dataset, TensorDataset):
        return TensorBatches(dataset, batch_size, shuffle, seed, device, **share)
    if isinstance(dataset, TokenDataset):
        return TokenBatches(dataset, batch_size, shuffle, seed, device, **share)
    if callable(getattr(dataset, "batches", None)):  # streams its own (webdataset shards)
        return dataset.batches(batch_size, shuffle, seed, num_workers, device, **share)
    return LoaderBatches(dataset, batch_size, shuffle, seed, num_workers, device, **share)


def samples(dataset: Dataset, indices: list[int]) -> torch.Tensor:
    """The inputs at `indices` stacked into one tensor, as stored (e.g. uint8 images)."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0][indices]
    return torch.stack([torch.as_tensor(dataset[i][0]) for i in indices])
