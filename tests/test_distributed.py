"""DDP on CPU with gloo and two processes: the ranks dltrain starts, torchrun's, and their data."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path
from subprocess import DEVNULL

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from dltrain import launch
from dltrain import world as ranks
from dltrain.built_run import FitState
from dltrain.checkpoints import load
from dltrain.config import check_config
from dltrain.data.batches import LoaderBatches, TensorBatches, TokenBatches, TokenDataset
from dltrain.errors import ConfigError
from dltrain.launcher_env import first_host, launched
from dltrain.loop import DivergedError, train_one_epoch
from dltrain.signals import GracefulStop
from dltrain.step import StepContext
from dltrain.train import run
from dltrain.world import World, interleave

from .helpers import (
    PYTHON,
    checkout_env,
    compose_config,
    dltrain,
    events,
    make_folder,
    run_command,
    start_command,
)

# 448 training samples: 7 steps of 2 ranks x 32, or of 1 rank x 64.
BLOBS = ["dataset=blobs", "dataset.n_samples=640", "loss=bce", "trainer.device=cpu"]
# float32 in every rank: spawned ranks read this machine's CPU flags, not the tests' (conftest.py)
DETERMINISTIC = [
    "trainer.seed=0",
    "trainer.log_every_n_steps=1",
    "trainer.epochs=2",
    "trainer.precision=32",
]


def ddp_cfg(*overrides: str):
    return compose_config(*BLOBS, *DETERMINISTIC, *overrides)


def run_dirs(root: Path) -> list[Path]:
    return [p.parent for p in root.rglob("config.yaml") if ".hydra" not in p.parts]


@pytest.mark.slow
def test_two_ranks_match_one_rank_with_the_same_global_batch(tmp_path: Path) -> None:
    two = launch.run(ddp_cfg("trainer.devices=2", "trainer.batch_size=32"), tmp_path / "two")
    one = run(ddp_cfg("trainer.batch_size=64"), tmp_path / "one")
    assert two["status"] == one["status"] == "completed" and two["steps"] == one["steps"] == 14
    for key, value in one["metrics"].items():  # val and test metrics: over whole splits
        assert two["metrics"][key] == pytest.approx(value, abs=1e-5), key
    curve_two, curve_one = (events(tmp_path / d).Scalars("train/loss") for d in ("two", "one"))
    assert [e.step for e in curve_two] == [e.step for e in curve_one] == list(range(1, 15))
    assert [e.value for e in curve_two] == pytest.approx([e.value for e in curve_one], abs=1e-5)
    weights_two, weights_one = (load(tmp_path / d / "model.pt") for d in ("two", "one"))
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, atol=1e-5, rtol=1e-5)
    assert len(list((tmp_path / "two" / "tensorboard").iterdir())) == 1  # rank 0 alone writes


@pytest.mark.slow
def test_two_ranks_accumulating_match_one_rank_with_the_window_as_its_batch(
    tmp_path: Path,
) -> None:
    # 480 training samples: 7 windows of 2 ranks x 2 x 16 and a last of one batch per rank,
    # whose gradients are averaged by hand (its batch ran without DDP's all-reduce).
    blobs = ["dataset.n_samples=686", "callbacks=[ema]", "callbacks.ema.decay=0.5"]
    accumulating = [
        "trainer.devices=2",
        "trainer.batch_size=16",
        "trainer.accumulate_grad_batches=2",
    ]
    two = launch.run(ddp_cfg(*blobs, *accumulating), tmp_path / "two")
    one = run(ddp_cfg(*blobs, "trainer.batch_size=64"), tmp_path / "one")
    assert two["steps"] == one["steps"] == 2 * 8
    weights_two, weights_one = (load(tmp_path / d / "model.pt") for d in ("two", "one"))
    for name, tensor in weights_one.items():  # the EMA of the weights, both ways
        torch.testing.assert_close(weights_two[name], tensor, atol=1e-5, rtol=1e-5)
    for key, value in one["metrics"].items():
        assert two["metrics"][key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.slow
def test_one_command_starts_the_ranks_in_one_run_dir(tmp_path: Path) -> None:
    ddp = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.epochs=1"]
    result = dltrain(tmp_path, *BLOBS, *ddp, timeout=180)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert (run_dir / ".hydra").is_dir() and (run_dir / "model.pt").is_file()
    log = (run_dir / "dltrain.log").read_text()
    assert "starting 2 DDP processes" in log and "x 2 ranks (DDP)" in log
    assert len(list((run_dir / "tensorboard").iterdir())) == 1


@pytest.mark.slow
def test_torchrun_gives_one_run_dir(tmp_path: Path) -> None:
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*torchrun, "-m", "dltrain", *BLOBS, "trainer.epochs=1"]
    result = run_command(PYTHON, *command, cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert load(run_dir / "checkpoints" / "last.pt")["world_size"] == 2
    assert len(list((run_dir / "tensorboard").iterdir())) == 1


def start_ranks(envs: list[dict[str, str]], args: list[str], cwd: Path) -> list[tuple[int, str]]:
    """Start `dltrain` once per environment, as srun or a node's shell would."""
    outside = {k: v for k, v in checkout_env().items() if not k.startswith(("SLURM_", "MASTER_"))}
    command = [*BLOBS, "trainer.epochs=1", *args]
    processes = [
        start_command("dltrain", *command, cwd=cwd, env={**outside, **env}, stdout=DEVNULL)
        for env in envs
    ]
    return [(p.wait(timeout=180), p.stderr.read()) for p in processes]


@pytest.mark.slow
def test_an_srun_step_of_two_tasks_trains_as_two_ranks_in_one_run_dir(tmp_path: Path) -> None:
    step = {
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_ID": "0",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_STEP_TASKS_PER_NODE": "2",
        "SLURM_STEP_NODELIST": "localhost",
        "MASTER_PORT": str(launch.free_port()),
    }
    tasks = [{**step, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)} for i in range(2)]
    results = start_ranks(tasks, ["trainer.devices=2"], tmp_path)
    assert [code for code, _ in results] == [0, 0], results
    (run_dir,) = run_dirs(tmp_path)
    assert load(run_dir / "checkpoints" / "last.pt")["world_size"] == 2


@pytest.mark.slow
def test_two_nodes_started_by_hand_train_as_one_run(tmp_path: Path) -> None:
    rendezvous = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(launch.free_port())}
    nodes = [{**rendezvous, "NODE_RANK": str(i)} for i in range(2)]
    args = ["trainer.num_nodes=2", f"hydra.run.dir={tmp_path / 'run'}"]  # a shared file system
    results = start_ranks(nodes, args, tmp_path)
    assert [code for code, _ in results] == [0, 0], results
    checkpoint = load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert checkpoint["world_size"] == 2 and checkpoint["step"] == 4  # 448 samples, 2 x 64


@pytest.mark.slow
def test_an_error_in_one_rank_is_reported_and_every_rank_exits(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "images", ("train", "val", "test"))
    broken = root / "train" / "dog" / "3.bmp"
    broken.write_bytes(b"not an image")  # read by exactly one rank: each file has one owner
    result = dltrain(
        tmp_path, "model=cnn", "dataset=image_folder", "trainer.epochs=1",
        f"dataset.root={root}", "dataset.image_size=16", "trainer.batch_size=2",
        "trainer.device=cpu", "trainer.devices=2", "trainer.seed=0", timeout=180,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"cannot decode image {broken}" in result.stderr and "Traceback" not in result.stderr


def _diverging_rank(rank: int, port: int, steps: dict) -> None:
    """One of two ranks training on data whose sample 9 is infinite (only rank 1 holds it)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    x = torch.randn(64, 3)
    x[9] = float("inf")
    data = TensorDataset(x, torch.randint(0, 2, (64,)))
    batches = TensorBatches(data, 4, shuffle=False, seed=0, rank=rank, world_size=2)
    model = nn.parallel.DistributedDataParallel(nn.Linear(3, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    context = StepContext(device=torch.device("cpu"), world=ranks.current())
    try:
        loss_fn, state = nn.CrossEntropyLoss(), FitState()
        train_one_epoch(model, batches, loss_fn, optimizer, state, context, print)
    except DivergedError as e:
        steps[rank] = e.step
    dist.destroy_process_group()


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step() -> None:
    with mp.Manager() as manager:
        steps = manager.dict()
        mp.spawn(_diverging_rank, args=(launch.free_port(), steps), nprocs=2)
        # Sample 9 is in rank 1's second batch (samples 9, 11, 13, 15): step 2 on both ranks.
        assert dict(steps) == {0: 2, 1: 2}


@pytest.mark.slow
def test_a_ddp_checkpoint_resumes_on_two_ranks_exactly_and_on_one(tmp_path: Path) -> None:
    keep = ["trainer.epochs=3", "trainer.batch_size=32", "trainer.checkpoint_every_n_steps=5"]
    first = launch.run(
        ddp_cfg(*keep, "trainer.devices=2", "trainer.keep_checkpoints=9"), tmp_path / "a"
    )
    assert first["steps"] == 21
    for copy in ("b", "c"):
        shutil.copytree(tmp_path / "a", tmp_path / copy)
    mid_epoch = "checkpoints/step-00000005.pt"  # 5 of the first epoch's 7 steps
    resume_b, resume_c = (f"resume={tmp_path / copy / mid_epoch}" for copy in ("b", "c"))
    again = launch.run(ddp_cfg(*keep, "trainer.devices=2", resume_b), tmp_path / "b")
    assert again["steps"] == 21
    for name, tensor in load(tmp_path / "a" / "model.pt").items():
        torch.testing.assert_close(load(tmp_path / "b" / "model.pt")[name], tensor)
    # One rank with batches of 32 goes on from sample 320 of the same first-epoch order.
    alone = run(ddp_cfg(*keep, resume_c), tmp_path / "c")
    assert alone["status"] == "completed" and alone["steps"] == 5 + 4 + 2 * 14
    assert load(tmp_path / "c" / "checkpoints" / "last.pt")["world_size"] == 1


@pytest.mark.slow
def test_sigint_to_the_command_stops_every_rank_after_a_checkpoint(tmp_path: Path) -> None:
    command = [*BLOBS, "trainer.devices=2", "trainer.epochs=500", "hydra.run.dir=run"]
    process = start_command("dltrain", *command, cwd=tmp_path, stdout=DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "checkpoints" / "last.pt").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)  # to the command only: it passes it on to the ranks
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Continue with: dltrain resume=" in stderr
    assert load(tmp_path / "run" / "checkpoints" / "last.pt")["step"] > 0
    metrics = (tmp_path / "run" / "metrics.json").read_text()
    assert '"status": "interrupted"' in metrics


def test_a_signal_repeated_at_once_by_a_launcher_counts_once() -> None:
    with GracefulStop(same_within=0.5) as stop:
        os.kill(os.getpid(), signal.SIGINT)  # from the terminal
        os.kill(os.getpid(), signal.SIGINT)  # passed on by torchrun or dltrain: the same one
        assert stop.requested == "SIGINT"
        time.sleep(0.6)
        with pytest.raises(KeyboardInterrupt):  # a real second Ctrl-C aborts
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("kind", ["tensors", "loader", "tokens"])
@pytest.mark.parametrize("n", [24, 23])
def test_two_ranks_share_each_step_of_one_rank_with_a_twice_bigger_batch(kind: str, n: int) -> None:
    data = TensorDataset(torch.arange(n).float().unsqueeze(1), torch.arange(n))
    tokens = TokenDataset([torch.ones(1 + i % 5, dtype=torch.long) for i in range(n)], data[:][1])

    def batches(rank: int, world_size: int, size: int, shuffle: bool = True) -> list[list[int]]:
        share = {"rank": rank, "world_size": world_size}
        if kind == "tokens":
            iterator = TokenBatches(tokens, size, shuffle, seed=7, **share)
        elif kind == "loader":
            iterator = LoaderBatches(data, size, shuffle, seed=7, **share)
        else:
            iterator = TensorBatches(data, size, shuffle, seed=7, **share)
        found = [y.tolist() for _, y in iterator]
        assert len(found) == len(iterator)
        return found

    one = batches(0, 1, 8)
    ranks = [batches(r, 2, 4) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)  # padded: the ranks step together
    for step, expected in enumerate(one):
        shared = ranks[0][step] + ranks[1][step]
        assert set(shared) == set(expected) or set(shared) > set(expected)
        assert len(shared) - len(expected) in (0, 1)  # the odd step is padded with one sample
    assert sum(len(batch) for rank in ranks for batch in rank) == n + n % 2
    # Evaluation passes are not padded: each sample once, and interleave() restores the order.
    shares = [torch.tensor(sum(batches(r, 2, 4, shuffle=False), [])) for r in range(2)]
    merged = interleave(shares).tolist()
    assert sorted(merged) == list(range(n))
    if kind != "tokens":  # (bucketing sorts each evaluation pass by length)
        assert merged == list(range(n))


def test_a_mid_pass_position_resumes_on_another_number_of_ranks() -> None:
    data = TensorDataset(torch.arange(40).float(), torch.arange(40))
    order = [int(v) for _, y in TensorBatches(data, 40, True, seed=3) for v in y]
    two = TensorBatches(data, 4, True, seed=3, rank=1, world_size=2)
    iterator = iter(two)
    for _ in range(3):  # 3 steps of 2 ranks x 4: the first 24 samples of the order
        next(iterator)
    state = two.state_dict()
    assert state["position"] == 24
    one = TensorBatches(data, 5, True, seed=99)
    one.load_state_dict(state)
    assert [int(v) for _, y in one for v in y] == order[24:]


def test_launchers_are_read_from_their_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "SLURM_STEP_ID", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert launched() is None
    slurm = {
        "SLURM_STEP_ID": "0",
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
        "SLURM_STEP_NODELIST": "gpu[07-08]",
        "SLURM_JOB_ID": "123456",
    }
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    assert launched() == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(20000 + 123456 % 20000),
    }
    monkeypatch.setenv("RANK", "1")  # torchrun's variables win (srun torchrun ...)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched()["WORLD_SIZE"] == "2" and launched()["LOCAL_RANK"] == "0"
    assert [first_host(n) for n in ("a1,b2", "node[3,5-9]", "x-[10-12],y")] == [
        "a1",
        "node3",
        "x-10",
    ]


def test_ranks_asked_for_must_match_the_launchers(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = compose_config("trainer.devices=4").trainer
    with pytest.raises(ConfigError, match=r"asks for 4 processes but the launcher started 2"):
        ranks.check_world(trainer, World(rank=0, size=2))
    ranks.check_world(compose_config().trainer, World(rank=0, size=2))  # the launcher's
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    cfg = compose_config("trainer.num_nodes=2", "trainer.devices=2")
    with pytest.raises(ConfigError, match="set MASTER_ADDR, MASTER_PORT and NODE_RANK"):
        launch.spawn(dict(cfg), Path("unused"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.devices=0", "trainer.devices: must be at least 1, got 0"),
        ("trainer.num_nodes=-1", "trainer.num_nodes: must be at least 1, got -1"),
        ("trainer.strategy=dpp", "must be one of auto, ddp, got 'dpp'. Did you mean 'ddp'?"),
    ],
)
def test_bad_distributed_options_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(compose_config(override))
