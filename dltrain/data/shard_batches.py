"""One rank's batches of WebDataset shards: made in DataLoader workers (each shard read by one
rank x worker), re-cut to exact batch sizes, with a resumable position (dataset=webdataset)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dltrain.data.shards import (
    SOURCE,
    Shard,
    buffered,
    decode,
    resume_skips,
    shard_samples,
    worker_shards,
    worker_sizes,
)
from dltrain.errors import ConfigError

if TYPE_CHECKING:
    from dltrain.data.webdataset_source import ShardDataset

log = logging.getLogger(__name__)


class _Stream(IterableDataset):
    """One rank's batches, made in the workers; the pass's plan is read from shared memory."""

    def __init__(self, data: ShardDataset, shards: list[Shard], batch_size: int, workers: int):
        self.data, self.shards, self.batch_size = data, shards, batch_size
        self.workers = max(1, workers)
        # [pass seed (-1: in order, no buffer), then each worker's samples to skip]: written by
        # the main process before each pass, seen by persistent workers as well.
        self.plan = torch.zeros(1 + self.workers, dtype=torch.int64).share_memory_()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        seed, skip = int(self.plan[0]), int(self.plan[1 + worker])
        pass_seed = None if seed < 0 else seed
        mine = worker_shards(self.shards, self.workers, worker, pass_seed)
        samples = (s for shard in mine for s in shard_samples(shard))
        rng = None if pass_seed is None else np.random.default_rng([pass_seed, worker])
        images, labels = [], []
        for i, (data, label, where) in enumerate(buffered(samples, self.data.buffer, rng)):
            if i < skip:  # trained on before the resume: not decoded again
                continue
            images.append(decode(data, self.data.size, where))
            labels.append(label)
            if len(images) == self.batch_size:
                yield torch.stack(images), torch.tensor(labels)
                images, labels = [], []
        if images:
            yield torch.stack(images), torch.tensor(labels)


class ShardBatches:
    """The loop's iterator over a rank's shards: length, position and resume as Resumable's."""

    def __init__(self, data, batch_size, shuffle, seed, num_workers, device, rank, world_size):
        if len(data.shards) < world_size:
            raise ConfigError(
                f"{SOURCE}: {len(data.shards)} shards for {world_size} ranks; every rank "
                "needs at least one shard"
            )
        self.batch_size, self.shuffle, self.world_size = batch_size, shuffle, world_size
        self.workers = max(1, num_workers)
        self.stream = _Stream(data, data.shards[rank::world_size], batch_size, num_workers)
        counts = [sum(map(len, data.shards[r::world_size])) for r in range(world_size)]
        # Every rank steps as often in training; evaluation reads each rank's whole share.
        self.full = min(counts) if shuffle else counts[rank]
        if shuffle and (dropped := sum(counts) - self.full * world_size):
            log.warning(
                f"{SOURCE}: the ranks' shards hold {counts} samples; each training pass "
                f"leaves out {dropped} of the larger ranks' samples so that every rank steps "
                "as often"
            )
        self.quota, self.taken, self.skip = self.full, 0, 0
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_start = self.generator.get_state()
        on_cuda = torch.device(device).type == "cuda"
        self.loader = DataLoader(
            self.stream,
            batch_size=None,  # the workers batch
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=on_cuda,
            prefetch_factor=4 if num_workers > 0 else None,
        )

    def limit(self, batches: int | None, pad: bool | None = None) -> None:
        """Cover only the first `batches` steps of every pass (debug subsets)."""
        self.quota = self.full if batches is None else min(self.full, batches * self.batch_size)

    def __len__(self) -> int:
        return -(-self.quota // self.batch_size)

    @property
    def exhausted(self) -> bool:
        return self.taken >= self.quota

    def end_pass(self) -> None:
        self.taken = self.quota

    def state_dict(self) -> dict:
        """As Resumable's: the pass's generator state and its samples handed out on all ranks."""
        if self.exhausted:
            return {"generator": self.generator.get_state(), "position": 0}
        return {"generator": self.epoch_start, "position": self.taken * self.world_size}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.skip = int(state.get("position", 0)) // self.world_size

    def _begin(self) -> None:
        """Draw the pass's seed and tell the workers where to start."""
        self.epoch_start = self.generator.get_state()
        draw = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        seed = draw if self.shuffle else None
        self.taken, self.skip = min(self.skip, self.quota), 0
        sizes = worker_sizes(self.stream.shards, self.workers, seed)
        self.stream.plan[0] = -1 if seed is None else seed
        self.stream.plan[1:] = torch.tensor(resume_skips(sizes, self.batch_size, self.taken))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._begin()
        held: list[tuple[torch.Tensor, torch.Tensor]] = []
        count = 0
        for images, labels in self.loader:  # workers' batches, re-cut into full ones in order
            held.append((images, labels))
            count += len(labels)
            while count >= self.batch_size or (held and count >= self.quota - self.taken):
                yield self._take(held, min(self.batch_size, self.quota - self.taken))
                count = sum(len(y) for _, y in held)
                if self.exhausted:
                    return
        if held and not self.exhausted:
            yield self._take(held, min(count, self.quota - self.taken))

    def _take(self, held: list, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n held samples as one batch (the rest stays held)."""
        images = torch.cat([x for x, _ in held])
        labels = torch.cat([y for _, y in held])
        held[:] = [(images[n:], labels[n:])] if n < len(labels) else []
        self.taken += n
        return images[:n], labels[:n]
