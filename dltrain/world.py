"""The ranks of a run: this process's place among them and what they share (collectives).

Every rank builds the same run and computes the same (gathered) metrics, so every decision
agrees: best epoch, early stopping, divergence, stopping on a signal. Only rank 0 writes. Starting
the ranks is dltrain.launch's; joining the group a launcher described is here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dltrain.errors import ConfigError
from dltrain.launcher_env import launched


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (one rank, rank 0, when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    distributed: bool = False  # in a process group (also of one rank: trainer.strategy=ddp)

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files, TensorBoard and the console."""
        return self.rank == 0

    def mean_loss(self, loss: torch.Tensor, n: int) -> tuple[float, int]:
        """(mean loss, samples) of a step over every rank's batch: one all-reduce (one sync)."""
        if self.size == 1:
            return loss.item(), n
        stats = torch.stack([loss.detach() * n, torch.tensor(float(n), device=loss.device)])
        dist.all_reduce(stats)
        total, count = stats.tolist()
        return total / count, int(count)

    def any(self, flag: bool) -> bool:
        """Whether `flag` is true on any rank."""
        if self.size == 1:
            return bool(flag)
        value = torch.tensor([float(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Each tensor concatenated over the ranks (CPU), rank r's rows at r, r + size, ...

        Evaluation passes give rank r the samples r, r + size, ..., so this restores the order.
        """
        if self.size == 1:
            return list(tensors)
        parts: list[Any] = [None] * self.size
        dist.all_gather_object(parts, [t.cpu() for t in tensors])
        return [interleave([p[i] for p in parts]) for i in range(len(tensors))]

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def average(self, tensors: Iterable[torch.Tensor]) -> None:
        """Each tensor averaged over the ranks (in place)."""
        if self.size > 1:
            for tensor in tensors:
                dist.all_reduce(tensor)
                tensor.div_(self.size)

    def average_gradients(self, params: Iterable[torch.Tensor]) -> None:
        """The gradients averaged over the ranks, as DDP's all-reduce does."""
        self.average(p.grad for p in params if p.grad is not None)

    def broadcast_state(self, module: nn.Module) -> None:
        """Give every rank rank 0's weights and buffers (in place)."""
        if self.size > 1:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)


def interleave(parts: list[torch.Tensor]) -> torch.Tensor:
    """Rows of parts[r] at positions r, r + len(parts), ...: the inverse of sharding by rank."""
    total = sum(len(p) for p in parts)
    merged = parts[0].new_empty((total, *parts[0].shape[1:]))
    for rank, part in enumerate(parts):
        merged[rank :: len(parts)] = part
    return merged


def current() -> World:
    """The World of the process group this process is in (a single rank if none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(
        rank=dist.get_rank(),
        size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        distributed=True,
    )


def init(env: dict[str, str]) -> World:
    """Join the process group the launcher's variables describe; gloo for CPU, nccl for CUDA."""
    os.environ.update({k: v for k, v in env.items() if v})
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]))
    return current()


def leave() -> None:
    """Leave the process group (at the end of a launched command)."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def joined(one_rank: bool = False) -> Iterator[World]:
    """This process's World; joins (and later leaves) the group its launcher described.

    `one_rank`: join a group of one rank too (trainer.strategy=ddp on one device).
    """
    env = launched(one_rank)
    if env is None or dist.is_initialized():
        yield current()
        return
    world = init(env)
    try:
        yield world
        dist.barrier()  # after a clean run, as in launch.end_jobs(): all done before any leaves
    finally:
        leave()


def processes(trainer: Any) -> int:
    """How many ranks the trainer options ask for."""
    return int(trainer.get("devices", 1)) * int(trainer.get("num_nodes", 1))


def wants_ddp(trainer: Any) -> bool:
    """Whether the run trains under DDP: several ranks, or trainer.strategy=ddp (even one)."""
    return processes(trainer) > 1 or trainer.get("strategy") == "ddp"


def backend() -> str | None:
    """The process group's backend (gloo, nccl, or both by device), None outside one."""
    return str(dist.get_backend()) if dist.is_available() and dist.is_initialized() else None


def check_world(trainer: Any, world: World) -> None:
    """A launcher's number of ranks must be the one the trainer options ask for (if they ask)."""
    wanted = processes(trainer)
    if wanted > 1 and world.size > 1 and wanted != world.size:
        raise ConfigError(
            f"trainer.devices={trainer.devices} x trainer.num_nodes={trainer.num_nodes} asks for "
            f"{wanted} processes but the launcher started {world.size}; make them agree (or "
            "leave trainer.devices=1 and trainer.num_nodes=1 to take the launcher's number)"
        )
