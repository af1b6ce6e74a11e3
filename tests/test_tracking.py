"""The Tracker's TensorBoard scalars (kept in memory, then written), metrics.jsonl, a backend that
fails, and the training bar."""

from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dltrain.tracking import metrics_log, tensorboard
from dltrain.tracking.backend import Backend, RunInfo
from dltrain.tracking.metrics_log import MetricsLog
from dltrain.tracking.tensorboard import TensorBoardBackend
from dltrain.tracking.tracker import Tracker


def run_info(run_dir: Path, resumed_step: int | None = None) -> RunInfo:
    return RunInfo(run_dir, "run", {}, "", {}, resumed_step=resumed_step)


def Tracking(run_dir: Path, console: Console) -> Tracker:  # noqa: N802 (reads as the old class)
    """A Tracker writing TensorBoard and metrics.jsonl into run_dir."""
    backend = TensorBoardBackend(run_info(run_dir))
    return Tracker({"tensorboard": backend}, MetricsLog(run_dir), console)


def logged(run_dir: Path, tag: str) -> list:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events.Scalars(tag) if tag in events.Tags()["scalars"] else []


def test_scalars_reach_tensorboard_on_flush_with_the_time_they_were_logged(tmp_path: Path) -> None:
    tracker = Tracking(tmp_path, Console(file=io.StringIO()))
    before = time.time()
    tracker.scalars({"train/loss": 0.5, "lr": 0.125}, 10)
    tracker.scalars({"train/loss": 0.25}, 20)
    time.sleep(0.05)
    assert logged(tmp_path, "train/loss") == []  # still in memory
    tracker.flush()
    points = logged(tmp_path, "train/loss")
    assert [(p.step, p.value) for p in points] == [(10, 0.5), (20, 0.25)]
    assert all(before <= p.wall_time < before + 0.05 for p in points)  # logged, not flushed, at
    assert [p.value for p in logged(tmp_path, "lr")] == [0.125]
    tracker.scalars({"train/loss": 0.125}, 30)
    tracker.close()  # closing writes what is left
    assert [p.step for p in logged(tmp_path, "train/loss")] == [10, 20, 30]


def test_scalars_go_to_the_writer_once_they_have_waited_long_enough(
    tmp_path: Path, monkeypatch
) -> None:
    tracker = Tracking(tmp_path, Console(file=io.StringIO()))
    backend = tracker.backends["tensorboard"]
    tracker.scalars({"train/loss": 1.0}, 1)
    assert len(backend.pending) == 1
    monkeypatch.setattr(tensorboard, "HAND_OFF_SECONDS", 0.0)
    tracker.scalars({"train/loss": 2.0}, 2)
    assert backend.pending == []
    backend.writer.flush()
    assert [p.value for p in logged(tmp_path, "train/loss")] == [1.0, 2.0]
    tracker.close()


def test_the_bar_restarts_every_epoch_with_its_own_clock(tmp_path: Path) -> None:
    out = io.StringIO()
    tracker = Tracking(tmp_path, Console(file=out, width=120))
    with tracker.progress(2) as bar:
        assert list(bar.track([1, 2, 3], 1)) == [1, 2, 3]
        task = bar.progress.tasks[0]
        assert (task.completed, task.description, task.finished) == (3, "epoch 1/2", True)
        items = bar.track(["a", "b"], 2)
        assert next(items) == "a"
        assert (task.completed, task.total, task.finished) == (0, 2, False)  # a new clock
        assert list(items) == ["b"]
        assert task.completed == 2
        bar.show({"train/loss": 0.1234, "val/loss": 0.5})
    assert "epoch 2/2" in out.getvalue() and (
        "2/2 0:00:00<0:00:00 run ETA 0:00:00  train/loss 0.1234  val/loss 0.5000" in out.getvalue()
    )


def test_metrics_jsonl_holds_every_scalar_and_a_resume_cuts_it_at_its_step(tmp_path: Path) -> None:
    tracker = Tracker({}, MetricsLog(tmp_path), Console(file=io.StringIO()))
    for step in range(1, 7):
        tracker.epoch = (step + 1) // 2
        tracker.scalars({"train/loss": 1 / step, "lr": 0.1}, step)
    tracker.close()
    records = metrics_log.read(tmp_path)
    assert [(r["name"], r["step"], r["epoch"], r["value"]) for r in records][:3] == [
        ("train/loss", 1, 1, 1.0), ("lr", 1, 1, 0.1), ("train/loss", 2, 1, 0.5),
    ]  # fmt: skip
    with open(tmp_path / "metrics.jsonl", "a") as out:
        out.write('{"name": "train/loss", "step": 7, "ep')  # a kill cut the last line
    assert len(metrics_log.read(tmp_path)) == 12
    MetricsLog(tmp_path, resumed_step=4)
    assert max(r["step"] for r in metrics_log.read(tmp_path)) == 4
    assert len(metrics_log.read(tmp_path)) == 8


class Broken(Backend):
    def __init__(self) -> None:
        self.calls = 0

    def scalars(self, values: dict, step: int, epoch: int) -> None:
        self.calls += 1
        if step == 2:
            raise ConnectionError("tracking server down\nmore detail")


def test_a_backend_that_raises_is_dropped_and_the_others_go_on(tmp_path: Path, caplog) -> None:
    broken = Broken()
    tensorboard_backend = TensorBoardBackend(run_info(tmp_path))
    backends = {"broken": broken, "tensorboard": tensorboard_backend}
    tracker = Tracker(backends, MetricsLog(tmp_path), Console(file=io.StringIO()))
    for step in (1, 2, 3):
        tracker.scalars({"train/loss": float(step)}, step)
    tracker.close()
    assert broken.calls == 2 and list(tracker.backends) == ["tensorboard"]
    assert tracker.not_logged == {"broken": "scalars failed: ConnectionError: tracking server down"}
    assert [p.step for p in logged(tmp_path, "train/loss")] == [1, 2, 3]
    assert len(metrics_log.read(tmp_path)) == 3
    assert sum("logger broken stops logging" in r.message for r in caplog.records) == 1
