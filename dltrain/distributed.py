"""Several processes training one model (DDP): where the ranks come from, and what they share.

A run trains on `trainer.devices` processes on each of `trainer.num_nodes` machines. Ranks come
from a launcher that sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT (torchrun),
from an srun step with one task per rank (SLURM_PROCID, SLURM_STEP_NUM_TASKS, ...), or from
dltrain itself: `trainer.devices=N` starts N processes here and hands each those variables as
torchrun would. Every rank builds the same run and computes the same (gathered) metrics, so every
decision agrees: best epoch, early stopping, divergence, stopping on a signal. Only rank 0 writes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dltrain.registry import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (one rank, rank 0, when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

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

    def broadcast_state(self, module: nn.Module) -> None:
        """Give every rank rank 0's weights and buffers (in place)."""
        if self.size > 1:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model`: gradients averaged over the ranks every step."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


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
    )


RENDEZVOUS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> dict[str, str] | None:
    """The rendezvous variables a launcher gave this process (torchrun, srun), if several ranks."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        found = {key: env.get(key, "") for key in RENDEZVOUS}
        found["LOCAL_RANK"] = found["LOCAL_RANK"] or "0"
    elif "SLURM_STEP_ID" in env and "SLURM_STEP_NUM_TASKS" in env:  # inside an srun step
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "localhost")
        found = {
            "RANK": env["SLURM_PROCID"],
            "WORLD_SIZE": env["SLURM_STEP_NUM_TASKS"],
            "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
            "LOCAL_WORLD_SIZE": env.get("SLURM_STEP_TASKS_PER_NODE", "1").split("(")[0],
            "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodes),
            "MASTER_PORT": env.get("MASTER_PORT")
            or str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000),
        }
    else:
        return None
    return found if int(found["WORLD_SIZE"]) > 1 else None


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: 'gpu[03-05,9],cpu1' -> 'gpu03'."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ConfigError(f"cannot read the Slurm node list '{nodelist}'; set MASTER_ADDR")
    prefix, ranges = match.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")


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
def joined() -> Iterator[World]:
    """This process's World; joins (and later leaves) the group its launcher described."""
    env = launched()
    if env is None or dist.is_initialized():
        yield current()
        return
    world = init(env)
    try:
        yield world
        dist.barrier()  # after a clean run, as in finish(): all are done before any leaves
    finally:
        leave()


def processes(trainer: Any) -> int:
    """How many ranks the trainer options ask for."""
    return int(trainer.get("devices", 1)) * int(trainer.get("num_nodes", 1))


def check_world(trainer: Any, world: World) -> None:
    """A launcher's number of ranks must be the one the trainer options ask for (if they ask)."""
    wanted = processes(trainer)
    if wanted > 1 and world.size > 1 and wanted != world.size:
        raise ConfigError(
            f"trainer.devices={trainer.devices} x trainer.num_nodes={trainer.num_nodes} asks for "
            f"{wanted} processes but the launcher started {world.size}; make them agree (or "
            "leave trainer.devices=1 and trainer.num_nodes=1 to take the launcher's number)"
        )


def should_spawn(trainer: Any) -> bool:
    """Whether dltrain must start the ranks itself (no launcher did, and more than one is asked)."""
    return processes(trainer) > 1 and launched() is None and not trainer.get("dry_run")


def spawn(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train `cfg` on trainer.devices processes here; returns rank 0's summary.

    The first rank to fail is the one reported; the others are stopped. SIGINT / SIGTERM sent to
    this process reach the ranks, which stop together and save a checkpoint.
    """
    import torch.multiprocessing as mp

    trainer = cfg["trainer"]
    devices, nodes = int(trainer["devices"]), int(trainer["num_nodes"])
    node_rank = int(os.environ.get("NODE_RANK", os.environ.get("SLURM_NODEID", 0)))
    if nodes > 1 and not {"MASTER_ADDR", "MASTER_PORT"} <= set(os.environ):
        raise ConfigError(
            f"trainer.num_nodes={nodes}: set MASTER_ADDR, MASTER_PORT and NODE_RANK on every "
            "node (or start the ranks with torchrun or srun; see the README)"
        )
    rendezvous = {
        "WORLD_SIZE": str(devices * nodes),
        "LOCAL_WORLD_SIZE": str(devices),
        "MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "MASTER_PORT": os.environ.get("MASTER_PORT") or str(free_port()),
    }
    reports = mp.get_context("spawn").SimpleQueue()
    first = node_rank * devices
    ranks = f"ranks {first}-{first + devices - 1} of {nodes * devices}"
    log.info(f"starting {devices} DDP processes: {ranks}")
    try:
        context = mp.start_processes(
            _worker,
            args=(first, rendezvous, cfg, str(run_dir), reports),
            nprocs=devices,
            join=False,
            start_method="spawn",
        )
    except KeyboardInterrupt:  # Ctrl-C while the ranks start: none is left running
        for child in multiprocessing.active_children():
            child.terminate()
        raise
    received: list[tuple[float, int, Any]] = []
    failure = None
    with _forwarding_signals(context.processes):
        try:
            while not context.join(timeout=0.5):
                _drain(reports, received)
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
            failure = e  # a rank died; join() has stopped the others
    _drain(reports, received)
    errors = sorted((t, rank, e) for t, rank, e in received if isinstance(e, BaseException))
    if errors:
        raise errors[0][2]  # the first to fail; the others usually failed because it did
    if failure is not None:
        raise RuntimeError(f"a training process died: {failure}")
    return next(summary for _, rank, summary in received if rank == first)


def _worker(
    local_rank: int,
    first_rank: int,
    rendezvous: dict[str, str],
    cfg: dict[str, Any],
    run_dir: str,
    reports: Any,
) -> None:
    """One spawned rank: torchrun's variables, its own log lines, a share of the cores, train."""
    from omegaconf import OmegaConf

    from dltrain.loop import DivergedError
    from dltrain.train import run

    rank = first_rank + local_rank
    os.environ.update(rendezvous, RANK=str(rank), LOCAL_RANK=str(local_rank))
    configure_logging(rank, Path(run_dir))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(rendezvous["LOCAL_WORLD_SIZE"])))
    try:
        summary = run(OmegaConf.create(cfg), Path(run_dir))
    except BaseException as e:
        reports.put((time.time(), rank, portable(e)))
        if not isinstance(e, ConfigError | DivergedError | KeyboardInterrupt):
            log.exception(f"rank {rank} failed")
        sys.exit(1)
    if rank == first_rank:
        reports.put((time.time(), rank, summary))


def follow() -> int:
    """Ranks > 0 under a launcher: run each job rank 0 announces; rank 0 alone runs Hydra.

    Returns the exit code. A job that fails ends the process: its peers may be mid-collective,
    so only a divergence (which every rank detects at the same step) lets a sweep go on.
    """
    from omegaconf import OmegaConf

    from dltrain.loop import DivergedError
    from dltrain.signals import Interrupted
    from dltrain.train import run

    world, code = current(), 0
    while isinstance(job := world.broadcast_object(None), tuple | list):
        cfg, run_dir = job
        configure_logging(world.rank, Path(run_dir))
        try:
            run(OmegaConf.create(cfg), Path(run_dir))
        except DivergedError:
            code = 1
        except Interrupted as e:
            return 130 if e.signal_name == "SIGINT" else 143
        except ConfigError as e:
            log.error(f"rank {world.rank}: {e}")
            return 2
        except Exception:
            log.exception(f"rank {world.rank} failed")
            return 1
    if job == "end, meet":
        dist.barrier()  # see finish()
    return code


def announce(job: tuple[dict[str, Any], str]) -> None:
    """Rank 0 under a launcher: send the next job (config, run dir) to the others."""
    current().broadcast_object(job)


def finish(clean: bool) -> None:
    """Rank 0 under a launcher: no more jobs, the other ranks exit.

    After a clean run all ranks meet at a barrier before any leaves the group: a rank that tore
    its side down while rank 0 was still finishing the last broadcast made rank 0 abort at exit
    now and then. After a failure a peer may be stuck mid-job, so nobody waits for it.
    """
    current().broadcast_object("end, meet" if clean else "end")
    if clean:
        dist.barrier()


def configure_logging(rank: int, run_dir: Path) -> None:
    """Log lines of a rank outside Hydra: stderr and the run's dltrain.log; rank 0 at INFO."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "dltrain_rank", False)]:
        root.removeHandler(handler)
        handler.close()
    tag = f"[rank {rank}]" if rank else ""
    formatter = logging.Formatter(f"[%(asctime)s]{tag}[%(name)s][%(levelname)s] - %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if run_dir.is_dir():
        handlers.append(logging.FileHandler(run_dir / "dltrain.log"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.dltrain_rank = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def portable(error: BaseException) -> BaseException:
    """The error itself if it survives pickling to the parent, else its text as a RuntimeError."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def free_port() -> int:
    """A TCP port nobody listens on now (for the rendezvous of ranks dltrain starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drain(queue: Any, into: list) -> None:
    while not queue.empty():
        into.append(queue.get())


@contextmanager
def _forwarding_signals(processes: list) -> Iterator[None]:
    """While the ranks run, SIGINT / SIGTERM to this process are passed on to them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: object) -> None:
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
