"""The MLflow backend with the real MLflow: its SQLite store beside the runs, a sweep's parent run
made once by parallel jobs, and a tracking server over HTTP (that may die mid-run); what MLflow
holds is read back with MlflowClient and compared with what dltrain wrote."""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from dltrain import train
from dltrain.composition import compose_config
from dltrain.tracking import metrics_log
from dltrain.tracking.backend import RunInfo

from .helpers import FAST, PYTHON, checkout_env, dltrain, job_dir, start_command, stop

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from dltrain.tracking import mlflow_backend, mlflow_sweep  # noqa: E402
from dltrain.tracking.mlflow_backend import MlflowBackend, default_store  # noqa: E402

IRIS = [*FAST, "dataset=iris", "logger=[tensorboard,mlflow]"]


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store with MLflow's tables made (its migrations take seconds), for tests to copy."""
    path = tmp_path_factory.mktemp("mlflow") / "mlruns.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}")
    return path


@pytest.fixture
def outputs(tmp_path: Path, empty_store: Path) -> Path:
    """tmp_path/outputs holding an empty store: where the runs under it log by default."""
    (tmp_path / "outputs").mkdir()
    shutil.copy(empty_store, tmp_path / "outputs" / "mlruns.db")
    return tmp_path / "outputs"


def client_of(folder: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlruns.db'}")


def saved_id(run_dir: Path) -> str:
    return json.loads((run_dir / "loggers.json").read_text())["mlflow"]


def run_info(run_dir: Path, **fields: object) -> RunInfo:
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunInfo(
        **{
            "run_dir": run_dir,
            "name": run_dir.name,
            "config": {},
            "yaml": "",
            "params": {},
            **fields,
        }
    )


def history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric's (step, value) points in the MLflow run, sorted."""
    names = client.get_run(run_id).data.metrics
    return {
        name: sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        for name in names
    }


def logged(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar's (step, value) points in run_dir/metrics.jsonl, sorted."""
    found: dict[str, list[tuple[int, float]]] = {}
    for record in metrics_log.read(run_dir):
        found.setdefault(record["name"], []).append((record["step"], record["value"]))
    return {name: sorted(points) for name, points in found.items()}


def artifacts(client: MlflowClient, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


# -- The backend, called as the Tracker calls it -------------------------------------------------


def test_a_run_in_the_default_store_has_its_params_scalars_and_files(outputs: Path) -> None:
    run_dir = outputs / "2025-01-01" / "12-00-00"
    params = {f"group.key{i}": i for i in range(150)} | {"long": "x" * 7000, "odd key!": None}
    run = run_info(run_dir, params=params, tags=("baseline", "mlflow.runName"), notes="why")
    backend = MlflowBackend(run)
    for step in range(1, 1201):
        backend.scalars({"train/loss": 1 / step, "lr": 0.1}, step, 1)
    client = client_of(outputs)  # the outputs folder above the run dir
    assert client.get_metric_history(backend.run_id, "train/loss") == []  # kept in memory
    backend.flush()
    assert len(client.get_metric_history(backend.run_id, "train/loss")) == 1200
    backend.text("confusion/val", "| a | b |", 3)
    fig = Figure()
    fig.add_subplot().plot([1, 2])
    backend.figure("curves/loss", fig, 3)
    backend.image("samples/train", torch.rand(3, 8, 10), 5)
    (run_dir / "config.yaml").write_text("a: 1\n")
    backend.artifacts([run_dir / "config.yaml"])
    backend.scalars({"best/val/acc": 0.75}, 1200, 1)
    backend.hparams(params, {"best/val/acc": 0.75, "test/acc": 0.5})
    backend.close("completed")

    found = client.get_run(backend.run_id)
    assert saved_id(run_dir) == backend.run_id
    assert found.info.status == "FINISHED"
    assert found.info.run_name == "12-00-00"
    assert found.data.tags["mlflow.note.content"] == "why"
    assert found.data.tags["baseline"] == "true"
    assert found.data.params["group.key149"] == "149"  # 152 params: two batches
    assert found.data.params["long"] == "x" * 6000  # MLflow's longest param value
    assert found.data.params["odd key_"] == "None"
    assert history(client, backend.run_id) == {
        "train/loss": [(s, 1 / s) for s in range(1, 1201)],
        "lr": [(s, 0.1) for s in range(1, 1201)],
        "best/val/acc": [(1200, 0.75)],  # once: hparams adds only what the scalars did not log
        "test/acc": [(1200, 0.5)],
    }
    assert artifacts(client, backend.run_id) == {"config.yaml", "confusion", "curves", "images"}
    assert {a.path for a in client.list_artifacts(backend.run_id, "curves")} == {"curves/loss.png"}
    location = client.get_experiment(found.info.experiment_id).artifact_location
    assert location == (outputs / "mlartifacts").as_uri()


def test_the_run_ends_with_the_status_of_the_training(outputs: Path) -> None:
    statuses = {"completed": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
    for status, expected in statuses.items():
        backend = MlflowBackend(run_info(outputs / status), experiment_name="statuses")
        backend.close(status)
        assert client_of(outputs).get_run(backend.run_id).info.status == expected


def test_a_resumed_run_continues_its_mlflow_run_and_keeps_its_first_params(outputs: Path) -> None:
    run_dir = outputs / "run"
    first = MlflowBackend(run_info(run_dir, params={"trainer.epochs": 2, "lr": 0.1}))
    first.scalars({"loss": 1.0}, 10, 1)
    first.close("interrupted")
    params = {"trainer.epochs": 3, "lr": 0.1, "new": "yes"}
    resumed = MlflowBackend(run_info(run_dir, params=params, resumed_step=10))
    client = client_of(outputs)
    assert resumed.run_id == first.run_id
    assert client.get_run(resumed.run_id).info.status == "RUNNING"
    resumed.scalars({"loss": 0.5}, 20, 2)
    resumed.close("completed")
    found = client.get_run(resumed.run_id)
    assert found.info.status == "FINISHED"
    assert found.data.params == {"trainer.epochs": "2", "lr": "0.1", "new": "yes"}
    assert found.data.tags["dltrain.resumed_with.trainer.epochs"] == "3"
    assert history(client, resumed.run_id) == {"loss": [(10, 1.0), (20, 0.5)]}


def test_a_saved_id_this_store_does_not_hold_starts_a_new_run(
    outputs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = outputs / "run"
    run_dir.mkdir()
    (run_dir / "loggers.json").write_text(json.dumps({"mlflow": "0123456789abcdef"}))
    with caplog.at_level(logging.WARNING, logger=mlflow_backend.__name__):
        backend = MlflowBackend(run_info(run_dir, resumed_step=5))
    assert backend.run_id != "0123456789abcdef"
    assert "not in this tracking store" in caplog.text
    assert saved_id(run_dir) == backend.run_id
    backend.close("completed")


def test_a_sweeps_parent_file_is_not_trusted(tmp_path: Path, empty_store: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    shutil.copy(empty_store, tmp_path / "mlruns.db")  # beside the sweep
    for hostile in ({"run_id": "../../etc", "jobs": ["../x", 3]}, {"run_id": "a" * 32}, [1]):
        (sweep / mlflow_sweep.PARENT_FILE).write_text(json.dumps(hostile))
        backend = MlflowBackend(run_info(sweep / "0", sweep_dir=sweep, job=0))
        saved = json.loads((sweep / mlflow_sweep.PARENT_FILE).read_text())
        assert saved == {"run_id": backend.parent, "jobs": ["0"]}
        assert client_of(tmp_path).get_run(backend.parent).info.run_name == "sweep"
        backend.close("completed")


def test_the_default_store_is_beside_the_runs(tmp_path: Path) -> None:
    nested = tmp_path / "outputs" / "multirun" / "2025-01-01" / "12-00-00"
    assert default_store(run_info(nested / "0", sweep_dir=nested)) == tmp_path / "outputs"
    assert default_store(run_info(tmp_path / "runs" / "a")) == tmp_path / "runs"
    assert default_store(run_info(tmp_path / "s" / "0", sweep_dir=tmp_path / "s")) == tmp_path


def test_importing_dltrain_does_not_import_mlflow() -> None:
    code = (
        "import sys, dltrain.tracking.backends, dltrain.tracking.mlflow_backend\n"
        "from dltrain.registry import LOGGERS\n"
        "info = LOGGERS.info('mlflow')\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
        "print(info.requires, info.extra)\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", code], env=checkout_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["mlflow", "mlflow"]


JOB = """
import sys
from pathlib import Path
from dltrain.tracking.backend import RunInfo
from dltrain.tracking.mlflow_backend import MlflowBackend
sweep, job = Path(sys.argv[1]), sys.argv[2]
run = RunInfo(sweep / job, f"job={job}", {}, "", {"job": job}, sweep_dir=sweep, job=int(job))
backend = MlflowBackend(run)
backend.scalars({"loss": float(job)}, 1, 1)
backend.close("completed")
"""


def waiting_for(lock: Path) -> int:
    """How many processes wait for the flock on `lock` (Linux's /proc/locks: `-> FLOCK ...`)."""
    inode = f":{lock.stat().st_ino} "
    lines = Path("/proc/locks").read_text().splitlines()
    return sum("->" in line and inode in line for line in lines)


@pytest.mark.slow
def test_parallel_jobs_of_a_fresh_sweep_make_one_parent(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for job in range(3):
        (sweep / str(job)).mkdir(parents=True)
    lock = sweep / mlflow_sweep.PARENT_LOCK
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the jobs meet at the lock, then go one at a time
        jobs = [start_command(PYTHON, "-c", JOB, sweep, str(job)) for job in range(3)]
        deadline = time.monotonic() + 120
        while waiting_for(lock) < 3:
            assert all(p.poll() is None for p in jobs), jobs[0].communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the jobs did not all wait for the parent's lock"
            time.sleep(0.1)
        assert not (sweep / mlflow_sweep.PARENT_FILE).exists()
    for process in jobs:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
    client = client_of(tmp_path)  # a fresh store: its tables made once, under a lock too
    runs = client.search_runs([client.get_experiment_by_name("dltrain").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [(p.info.run_name, p.info.status) for p in parents] == [("sweep", "FINISHED")]
    children = {r.info.run_name: r for r in runs if r not in parents}
    assert sorted(children) == ["job=0", "job=1", "job=2"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {
        parents[0].info.run_id
    }
    assert json.loads((sweep / mlflow_sweep.PARENT_FILE).read_text())["jobs"] == []


# -- Through dltrain's runs ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_logs_its_config_every_scalar_and_its_files(outputs: Path) -> None:
    run_dir = outputs / "run"
    summary = train.run(compose_config(*IRIS), run_dir)
    assert summary["status"] == "completed" and summary["not_logged"] == {}
    client = client_of(outputs)
    found = client.get_run(saved_id(run_dir))
    assert found.info.status == "FINISHED"
    assert found.data.params["dataset.name"] == "iris"
    assert found.data.params["trainer.epochs"] == "2"
    assert found.data.params["optimizer.lr"] == str(compose_config(*IRIS).optimizer.lr)
    assert history(client, found.info.run_id) == logged(run_dir)
    assert {"train/epoch_loss", "val/acc", "test/acc"} <= set(logged(run_dir))
    kept = {"config.yaml", "metrics.json", "model.pt", "model.safetensors"}
    assert kept <= artifacts(client, found.info.run_id)


@pytest.mark.slow
def test_a_resumed_run_appends_to_the_same_mlflow_run(outputs: Path) -> None:
    run_dir = outputs / "run"
    train.run(compose_config(*IRIS, "trainer.epochs=1"), run_dir)
    run_id = saved_id(run_dir)
    summary = train.run(compose_config(*IRIS, f"resume={run_dir}", "trainer.epochs=3"), run_dir)
    assert summary["status"] == "completed"
    assert saved_id(run_dir) == run_id
    client = client_of(outputs)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert history(client, run_id) == logged(run_dir)
    assert [value for _, value in history(client, run_id)["epoch"]] == [1, 2, 3]
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1


@pytest.mark.slow
def test_a_sweep_is_one_parent_run_with_a_child_run_per_job(
    tmp_path: Path, empty_store: Path
) -> None:
    shutil.copy(empty_store, tmp_path / "mlruns.db")  # beside the sweep
    sweep = tmp_path / "sweep"
    args = ["optimizer.lr=0.1,0.01", "dataset=iris", "trainer.epochs=1", "trainer.device=cpu"]
    done = dltrain(tmp_path, "-m", *args, "logger=[tensorboard,mlflow]", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    client = client_of(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("dltrain").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [(p.info.run_name, p.info.status) for p in parents] == [("sweep", "FINISHED")]
    children = {r.info.run_name: r for r in runs if r not in parents}
    assert sorted(children) == ["optimizer.lr=0.01", "optimizer.lr=0.1"]
    for job, name in ((0, "optimizer.lr=0.1"), (1, "optimizer.lr=0.01")):
        child = children[name]
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.run_id == saved_id(job_dir(sweep, job))
        assert child.data.params["optimizer.lr"] == name.partition("=")[2]
        assert history(client, child.info.run_id) == logged(job_dir(sweep, job))


# -- A tracking server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path, empty_store: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A tracking server on 127.0.0.1 (artifacts uploaded through it), as `mlflow server` runs
    it: `mlflow server` itself stops at start with SQLAlchemy 1.4 (its trace-rollup check uses
    SQLAlchemy 2's names), which the sweep extra's Optuna pins, so its app is started here."""
    folder = tmp_path / "server"
    folder.mkdir()
    shutil.copy(empty_store, folder / "mlruns.db")
    env = {
        **checkout_env(),
        "_MLFLOW_SERVER_FILE_STORE": f"sqlite:///{folder / 'mlruns.db'}",
        "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
        "_MLFLOW_SERVER_ARTIFACT_ROOT": "mlflow-artifacts:/",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION": str(folder / "artifacts"),
    }
    port = free_port()
    app = ["-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(folder / "server.log", "w") as log:
        process = start_command(
            PYTHON, *app, "mlflow.server.fastapi_app:app", env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not healthy(url):
        assert process.poll() is None, (folder / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the server did not answer /health in 60 s"
        time.sleep(0.2)
    yield url, process
    stop(process)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_a_run_logs_to_a_tracking_server(
    server: tuple[str, subprocess.Popen], tmp_path: Path
) -> None:
    url, _ = server
    run_dir = tmp_path / "run"
    summary = train.run(compose_config(*IRIS, f"logger.mlflow.tracking_uri={url}"), run_dir)
    assert summary["status"] == "completed" and summary["not_logged"] == {}
    client = MlflowClient(tracking_uri=url)
    run_id = saved_id(run_dir)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert history(client, run_id) == logged(run_dir)
    assert {"config.yaml", "metrics.json", "model.pt"} <= artifacts(client, run_id)
    assert not (tmp_path / "mlruns.db").exists()


@pytest.mark.slow
def test_a_server_gone_mid_run_leaves_the_training_to_finish(
    server: tuple[str, subprocess.Popen],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, process = server
    scalars = MlflowBackend.scalars

    def server_dies_in_epoch_2(self: MlflowBackend, values: dict, step: int, epoch: int) -> None:
        if epoch == 2:
            stop(process)
        scalars(self, values, step, epoch)

    monkeypatch.setattr(MlflowBackend, "scalars", server_dies_in_epoch_2)
    run_dir = tmp_path / "run"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        summary = train.run(compose_config(*IRIS, f"logger.mlflow.tracking_uri={url}"), run_dir)
    assert time.monotonic() - started < 60  # a few retries, not MLflow's default minutes
    assert summary["status"] == "completed"
    assert summary["epochs_completed"] == 2
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert list(saved["not_logged"]) == ["mlflow"]
    assert "log-batch" in saved["not_logged"]["mlflow"]
    assert "logger mlflow stops logging" in caplog.text
    assert (run_dir / "model.pt").is_file()
