"""The W&B backend with the real wandb, offline: what it wrote is read back from the run's .wandb
file (W&B's record log, which `wandb sync` uploads) and compared with what dltrain logged."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch

from dltrain.errors import ConfigError
from dltrain.tracking import metrics_log
from dltrain.tracking.backend import RunInfo
from dltrain.tracking.wandb_backend import STEP, WandbBackend, choose_mode
from dltrain.train import run

from .helpers import (
    BIN,
    FAST,
    checkout_env,
    compose_config,
    dltrain,
    dltrain_main,
    invoke,
    job_dir,
)

wandb = pytest.importorskip("wandb")  # dltrain[wandb]
from wandb.proto.wandb_internal_pb2 import Record  # noqa: E402

IRIS = [*FAST, "dataset=iris", "trainer.log_every_n_steps=1", "logger=[tensorboard,wandb]"]

# -- Reading an offline run back -----------------------------------------------------------------

HEADER = b":W&B\xe1\xbe\x00"  # magic, the key 0xBEE1 (little-endian), version 0
BLOCK = 32 * 1024  # records are cut into chunks that never cross a block's end
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(wandb_file: Path) -> list[Record]:
    """The records of a .wandb file, each chunk's checksum checked."""
    data = wandb_file.read_bytes()
    assert data[: len(HEADER)] == HEADER, f"not a W&B record log: {wandb_file}"
    found, body, pos = [], b"", len(HEADER)
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # too little room left for a chunk header: padding
            pos += BLOCK - pos % BLOCK
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        assert kind in (FULL, FIRST, MIDDLE, LAST), f"chunk kind {kind} at {pos}"
        assert checksum == zlib.crc32(chunk, zlib.crc32(bytes([kind]))), f"checksum at {pos}"
        body, pos = body + chunk, pos + 7 + length
        if kind in (FULL, LAST):
            record = Record()
            record.ParseFromString(body)
            found.append(record)
            body = b""
    return found


def value(item: Any) -> Any:
    return json.loads(item.value_json)


def name(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


class OfflineRun:
    """One offline-run-* folder: its run record's config, history rows, summary, exit code."""

    def __init__(self, folder: Path):
        self.folder = folder
        (wandb_file,) = folder.glob("run-*.wandb")
        self.records = records(wandb_file)
        (run,) = [r.run for r in self.records if r.HasField("run")]
        self.id, self.name, self.group = run.run_id, run.display_name, run.run_group
        self.tags, self.notes, self.resume = list(run.tags), run.notes, run.resume
        self.config = {name(i): value(i) for i in run.config.update}
        self.history = [
            {name(i): value(i) for i in r.history.item}
            for r in self.records
            if r.HasField("history")
        ]
        self.summary = {
            name(i): value(i)
            for r in self.records
            if r.HasField("summary")
            for i in r.summary.update
        }
        (self.exit_code,) = [r.exit.exit_code for r in self.records if r.HasField("exit")]

    def points(self, metric: str) -> list[tuple[int, float]]:
        """(dltrain's step, value) of every row that holds `metric`."""
        return [(row[STEP], row[metric]) for row in self.history if metric in row]


def offline_runs(run_dir: Path) -> list[OfflineRun]:
    """The run's offline W&B runs, read once W&B has written them: finish() returns before its
    service has written the .wandb file (it flushes it every 15 s and when the run's stream
    closes), and tearing the session down waits for the service to end."""
    wandb.teardown()
    return [OfflineRun(f) for f in sorted(run_dir.glob("wandb/offline-run-*"))]


# -- No key, no network --------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Stands in for W&B's server: remembers any request at all."""

    requests: list[str] = []

    def do_GET(self) -> None:
        self.requests.append(f"GET {self.path}")
        self.send_error(503)

    def do_POST(self) -> None:
        self.requests.append(f"POST {self.path}")
        self.send_error(503)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module", autouse=True)
def offline_wandb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """No API key, no netrc, no WANDB_MODE (so the default is offline), W&B's files in a temporary
    folder, its server a local one that records what reaches it. W&B reads its environment once
    per process, so its session is torn down before and after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home = tmp_path_factory.mktemp("wandb_home")
    with pytest.MonkeyPatch.context() as env:
        for variable in (
            "WANDB_API_KEY",
            "WANDB_MODE",
            "WANDB_IDENTITY_TOKEN_FILE",
            "WANDB_DIR",
            "WANDB_ERROR_REPORTING",  # the backend sets it: restored after
        ):
            env.delenv(variable, raising=False)
        env.setenv("NETRC", str(home / "netrc"))  # absent
        env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_port}")
        for variable in ("CONFIG", "CACHE", "DATA", "ARTIFACT"):
            env.setenv(f"WANDB_{variable}_DIR", str(home / variable.lower()))
        wandb.teardown()
        try:
            yield Recorder.requests
        finally:
            wandb.teardown()
            server.shutdown()


def run_info(run_dir: Path, **fields: Any) -> RunInfo:
    config = {"optimizer": {"name": "adam", "lr": 0.01}, "trainer": {"epochs": 2}}
    defaults = {"name": run_dir.name, "config": config, "yaml": "", "params": {}}
    return RunInfo(run_dir=run_dir, **(defaults | fields))


# -- The backend, called directly ----------------------------------------------------------------


def test_an_offline_run_holds_the_config_every_scalar_at_its_step_and_the_media(
    tmp_path: Path, offline_wandb: list[str]
) -> None:
    info = run_info(tmp_path, tags=("baseline", "x" * 80), notes="why this run")
    backend = WandbBackend(info)
    backend.scalars({"train/loss": 0.9, "lr": 0.1}, 10, 1)
    backend.scalars({"train/loss": 0.7}, 20, 1)
    backend.scalars({"epoch": 1, "val/loss": 0.8}, 20, 2)  # the same step again: kept
    backend.scalars({"test/acc": 0.75}, 20, 2)
    backend.text("confusion", "| a | <b> |\n|---|---|", 20)
    backend.image("samples", torch.rand(1, 6, 4), 20)
    (tmp_path / "config.yaml").write_text("a: 1\n")
    (tmp_path / "best[1].pt").write_bytes(b"weights")
    backend.artifacts([tmp_path / "config.yaml", tmp_path / "best[1].pt"])
    backend.hparams({"optimizer.lr": 0.01}, {"best/val_loss": 0.8})
    backend.flush()
    backend.close("completed")

    (run,) = offline_runs(tmp_path)
    assert run.id == json.loads((tmp_path / "loggers.json").read_text())["wandb"]
    assert run.config["optimizer"] == {"name": "adam", "lr": 0.01}
    assert (run.name, run.notes) == (tmp_path.name, "why this run")
    assert run.tags == ["baseline", "x" * 64]
    assert run.points("train/loss") == [(10, 0.9), (20, 0.7)]
    assert run.points("val/loss") == [(20, 0.8)]
    assert run.points("test/acc") == [(20, 0.75)]
    assert [row["epoch"] for row in run.history if "train/loss" in row] == [1, 1]
    assert [row["epoch"] for row in run.history if "val/loss" in row] == [1]  # the value logged
    assert run.summary["best/val_loss"] == 0.8
    assert run.exit_code == 0
    files = run.folder / "files"
    (html,) = files.glob("media/html/confusion_*.html")
    assert "&lt;b&gt;" in html.read_text()
    (png,) = files.glob("media/images/samples_*.png")
    assert png.read_bytes().startswith(b"\x89PNG")
    assert (files / "config.yaml").read_text() == "a: 1\n"
    assert (files / "best[1].pt").read_bytes() == b"weights"
    assert offline_wandb == []


def test_a_figure_is_an_image_and_the_figure_stays_open(tmp_path: Path) -> None:
    from dltrain.tracking import figures

    plt = figures.pyplot()
    fig, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    backend = WandbBackend(run_info(tmp_path))
    backend.figure("curves", fig, 5)
    backend.close("failed")
    assert plt.fignum_exists(fig.number)
    plt.close(fig)
    (run,) = offline_runs(tmp_path)
    (row,) = [row for row in run.history if "curves._type" in row]  # a media entry's fields
    assert row[STEP] == 5 and row["curves._type"] == "image-file"
    assert (run.folder / "files" / row["curves.path"]).read_bytes().startswith(b"\x89PNG")
    assert run.exit_code == 1  # not completed


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path: Path) -> None:
    first = WandbBackend(run_info(tmp_path))
    first.scalars({"train/loss": 0.5}, 10, 1)
    first.scalars({"train/loss": 0.4}, 20, 2)  # after the checkpoint: logged again on resume
    first.close("interrupted")
    resumed = WandbBackend(run_info(tmp_path, resumed_step=10))
    resumed.scalars({"train/loss": 0.3}, 20, 2)
    resumed.close("completed")
    before, after = sorted(offline_runs(tmp_path), key=lambda r: r.exit_code, reverse=True)
    assert before.id == after.id and after.resume
    assert (before.points("train/loss"), after.points("train/loss")) == (
        [(10, 0.5), (20, 0.4)],
        [(20, 0.3)],
    )


def test_an_unusable_saved_id_starts_a_new_run(tmp_path: Path) -> None:
    (tmp_path / "loggers.json").write_text(json.dumps({"wandb": "a:b"}))  # W&B refuses ':'
    WandbBackend(run_info(tmp_path, resumed_step=10)).close("completed")
    (run,) = offline_runs(tmp_path)
    assert run.id != "a:b"
    assert json.loads((tmp_path / "loggers.json").read_text())["wandb"] == run.id


def test_a_sweep_job_is_grouped_with_its_sweep(tmp_path: Path) -> None:
    def group_of(sweep: Path, job: int, **options: Any) -> str:
        run_dir = sweep / str(job)
        run_dir.mkdir(parents=True)
        info = run_info(run_dir, name=f"optimizer.lr={job}", sweep_dir=sweep, job=job)
        WandbBackend(info, **options).close("completed")
        (run,) = offline_runs(run_dir)
        return run.group

    sweep, namesake = tmp_path / "a" / "2026-01-01", tmp_path / "b" / "2026-01-01"
    group = group_of(sweep, 0)
    assert group.startswith("2026-01-01-") and group_of(sweep, 1) == group
    assert group_of(namesake, 0) not in ("", group)  # another sweep of the same name
    assert group_of(namesake, 1, group="mine") == "mine"


# -- Through a run -------------------------------------------------------------------------------


def logged(run_dir: Path) -> set[tuple[str, int, float]]:
    """Every scalar of metrics.jsonl: (name, step, value)."""
    return {(r["name"], r["step"], r["value"]) for r in metrics_log.read(run_dir)}


def in_wandb(runs: list[OfflineRun]) -> set[tuple[str, int, float]]:
    """Every scalar of the W&B history rows: (name, step, value)."""
    return {
        (key, row[STEP], value)
        for run in runs
        for row in run.history
        for key, value in row.items()
        if key != STEP and not key.startswith("_") and isinstance(value, int | float)
    }


@pytest.mark.slow
def test_a_run_and_its_resume_are_one_wandb_run_holding_every_scalar_at_its_step(
    tmp_path: Path, offline_wandb: list[str]
) -> None:
    run(compose_config(*IRIS), tmp_path)
    (first,) = offline_runs(tmp_path)
    assert first.config["optimizer"]["lr"] == 0.001 and first.config["dataset"]["name"] == "iris"
    assert first.name == tmp_path.name and first.exit_code == 0
    assert {"train/loss", "val/loss", "test/acc", "best/val/loss"} <= {
        n for n, _, _ in logged(tmp_path)
    }
    assert logged(tmp_path) <= in_wandb([first])
    assert first.points("train/loss") == [
        (r["step"], r["value"]) for r in metrics_log.read(tmp_path) if r["name"] == "train/loss"
    ]

    run(compose_config(*IRIS, f"resume={tmp_path}", "trainer.epochs=3"), tmp_path)
    runs = offline_runs(tmp_path)
    assert len(runs) == 2 and {r.id for r in runs} == {first.id}  # `wandb sync` merges them
    assert max(step for _, step, _ in logged(tmp_path)) > max(s for _, s, _ in in_wandb([first]))
    assert logged(tmp_path) <= in_wandb(runs)  # metrics.jsonl, cut at the checkpoint, then on
    folders = sorted(tmp_path.glob("wandb/offline-run-*"))
    sync = subprocess.run(
        [BIN / "wandb", "sync", "--dry-run", *folders], capture_output=True, text=True, timeout=60
    )
    assert sync.returncode == 0 and "Would sync 2 run(s)" in sync.stderr + sync.stdout
    assert offline_wandb == []


@pytest.mark.slow
def test_a_sweeps_jobs_share_a_group_each_named_by_its_overrides(
    tmp_path: Path, offline_wandb: list[str]
) -> None:
    args = ["optimizer.lr=0.1,0.01", "dataset=iris", "trainer.epochs=1", "trainer.device=cpu"]
    done = dltrain(tmp_path, "-m", *args, "logger=[wandb]", "hydra.sweep.dir=sweep")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wandb" not in done.stderr.lower() and "wandb:" not in done.stdout
    jobs = [offline_runs(job_dir(tmp_path / "sweep", job)) for job in (0, 1)]
    assert [[(r.name, r.config["optimizer"]["lr"]) for r in job] for job in jobs] == [
        [("optimizer.lr=0.1", 0.1)],
        [("optimizer.lr=0.01", 0.01)],
    ]
    (group,) = {r.group for job in jobs for r in job}
    assert group.startswith("sweep-")
    assert offline_wandb == []


# -- The mode ------------------------------------------------------------------------------------


def test_the_mode_defaults_to_offline_without_a_key_and_online_with_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert choose_mode(None) == "offline"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert choose_mode(None) == "offline"  # a key for another host than WANDB_BASE_URL's
    monkeypatch.delenv("WANDB_BASE_URL")
    assert choose_mode(None) == "online"  # `wandb login` on W&B's own server
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert choose_mode(None) == "online"
    assert choose_mode("offline") == "offline" and choose_mode("disabled") == "disabled"
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert choose_mode(None) is None  # W&B reads WANDB_MODE itself


def test_an_unknown_mode_is_one_line_before_any_run_dir(tmp_path: Path) -> None:
    code, err = invoke(dltrain_main, ["logger=[wandb]", "logger.wandb.mode=offlne"], cwd=tmp_path)
    (line,) = err.splitlines()
    assert code == 2 and "logger.wandb.mode:" in line and "Did you mean 'offline'?" in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("mode", ["offlne", "dryrun", "shared"])
def test_the_backend_refuses_an_unknown_mode_in_one_line(tmp_path: Path, mode: str) -> None:
    with pytest.raises(ConfigError) as error:
        WandbBackend(run_info(tmp_path), mode=mode)
    assert str(error.value) == (
        f"logger.wandb.mode: '{mode}' is not one of online, offline, disabled"
    )
    assert not (tmp_path / "wandb").exists()


def test_online_without_a_key_is_refused_rather_than_asking_for_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        WandbBackend(run_info(tmp_path), mode="online")
    assert "\n" not in str(error.value) and "WANDB_API_KEY" in str(error.value)


def test_a_project_name_wandb_refuses_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        WandbBackend(run_info(tmp_path), project="team/project")
    assert str(error.value).startswith("logger.wandb: Invalid project name 'team/project'")
    assert "\n" not in str(error.value)


def test_disabled_writes_nothing(tmp_path: Path) -> None:
    backend = WandbBackend(run_info(tmp_path), mode="disabled")
    (tmp_path / "config.yaml").write_text("a: 1\n")
    backend.scalars({"train/loss": 1.0}, 1, 1)
    backend.text("notes", "text", 1)
    backend.artifacts([tmp_path / "config.yaml"])
    backend.close("completed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "loggers.json"]
    assert not Path(backend.run.dir).exists()


# -- A whole process ------------------------------------------------------------------------------

CHILD = """
import json, os, subprocess, sys
from pathlib import Path
import dltrain.tracking.backends
from dltrain.tracking.backend import RunInfo
from dltrain.tracking.wandb_backend import WandbBackend

assert "wandb" not in sys.modules, "imported with dltrain's backends: slows every start"
info = RunInfo(run_dir=Path(sys.argv[1]), name="r", config={}, yaml="", params={})
backend = WandbBackend(info)
backend.scalars({"train/loss": 1.0}, 1, 1)
found = subprocess.run(["pgrep", "-P", str(os.getpid()), "wandb"], capture_output=True, text=True)
print(json.dumps(found.stdout.split()))
backend.close("completed")
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; its new parent reaps it


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_process_logging_offline_reaches_no_server_prints_nothing_and_leaves_no_service(
    tmp_path: Path, offline_wandb: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path)],
        # without WANDB_SERVICE, which would join this process's service rather than start one
        env={k: v for k, v in checkout_env().items() if k != "WANDB_SERVICE"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not a line from wandb
    assert offline_wandb == []  # W&B's host (WANDB_BASE_URL) heard nothing, even at exit
    services = [int(pid) for pid in json.loads(done.stdout.strip().splitlines()[-1])]
    assert services, "the run started no wandb-core: nothing was checked"
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in services) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in services)
    (run,) = offline_runs(tmp_path)
    assert run.points("train/loss") == [(1, 1.0)]
