"""Starting the ranks of a run (DDP) and running it: `trainer.devices` processes per node.

Ranks come from a launcher (torchrun, an srun step with one task per rank: see launcher_env), or
from dltrain itself: `trainer.devices=N` starts N processes here and hands each the variables
torchrun would. Under a launcher only rank 0 runs Hydra; it announces each job (config, run dir)
to the other ranks, which follow.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from dltrain.errors import ConfigError
from dltrain.launcher_env import launched, node_rank
from dltrain.signals import Interrupted
from dltrain.step import DivergedError
from dltrain.train import run as train
from dltrain.world import current, wants_ddp

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train and test one configuration in `run_dir`; returns (rank 0's) metrics.json dict.

    With trainer.devices (x num_nodes) > 1 and no launcher, the ranks are started here; under a
    launcher (torchrun, srun) this process is one of them.
    """
    if should_spawn(cfg.trainer):
        return spawn(OmegaConf.to_container(cfg, resolve=True), Path(run_dir))
    return train(cfg, Path(run_dir))


def should_spawn(trainer: Any) -> bool:
    """Whether dltrain must start the ranks itself: no launcher did, and DDP is asked for.

    trainer.strategy=ddp with one device starts one rank too, in a process group of one (on one
    GPU: NCCL and the DDP wrapper, as on several).
    """
    return wants_ddp(trainer) and launched() is None and not trainer.get("dry_run")


def spawn(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train `cfg` on trainer.devices processes here; returns rank 0's summary.

    The first rank to fail is the one reported; the others are stopped. SIGINT / SIGTERM sent to
    this process reach the ranks, which stop together and save a checkpoint.
    """
    import torch.multiprocessing as mp

    trainer = cfg["trainer"]
    devices, nodes = int(trainer["devices"]), int(trainer["num_nodes"])
    rendezvous = rendezvous_for(devices, nodes)
    reports = mp.get_context("spawn").SimpleQueue()
    first = node_rank() * devices
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


def rendezvous_for(devices: int, nodes: int) -> dict[str, str]:
    """torchrun's variables for the ranks started here (several nodes: the user's own)."""
    if nodes > 1 and not {"MASTER_ADDR", "MASTER_PORT"} <= set(os.environ):
        raise ConfigError(
            f"trainer.num_nodes={nodes}: set MASTER_ADDR, MASTER_PORT and NODE_RANK on every "
            "node (or start the ranks with torchrun or srun; see the README)"
        )
    return {
        "WORLD_SIZE": str(devices * nodes),
        "LOCAL_WORLD_SIZE": str(devices),
        "MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "MASTER_PORT": os.environ.get("MASTER_PORT") or str(free_port()),
    }


def _worker(
    local_rank: int,
    first_rank: int,
    rendezvous: dict[str, str],
    cfg: dict[str, Any],
    run_dir: str,
    reports: Any,
) -> None:
    """One spawned rank: torchrun's variables, its own log lines, a share of the cores, train."""
    rank = first_rank + local_rank
    os.environ.update(rendezvous, RANK=str(rank), LOCAL_RANK=str(local_rank))
    configure_logging(rank, Path(run_dir))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(rendezvous["LOCAL_WORLD_SIZE"])))
    try:
        summary = train(OmegaConf.create(cfg), Path(run_dir))
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
    world, code = current(), 0
    while isinstance(job := world.broadcast_object(None), tuple | list):
        cfg, run_dir = job
        configure_logging(world.rank, Path(run_dir))
        try:
            train(OmegaConf.create(cfg), Path(run_dir))
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
        dist.barrier()  # see end_jobs()
    return code


def announce(job: tuple[dict[str, Any], str]) -> None:
    """Rank 0 under a launcher: send the next job (config, run dir) to the others."""
    current().broadcast_object(job)


def end_jobs(clean: bool) -> None:
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
