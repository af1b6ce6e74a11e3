"""The Tracker's TensorBoard scalars (kept in memory, then written) and the training bar."""

from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dltrain.tracking import tensorboard
from dltrain.tracking.console import StepsColumn, clock, track
from dltrain.tracking.tensorboard import Tracker


def logged(run_dir: Path, tag: str) -> list:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events.Scalars(tag) if tag in events.Tags()["scalars"] else []


def test_scalars_reach_tensorboard_on_flush_with_the_time_they_were_logged(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path, Console(file=io.StringIO()))
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
    tracker = Tracker(tmp_path, Console(file=io.StringIO()))
    tracker.scalars({"train/loss": 1.0}, 1)
    assert len(tracker.pending) == 1
    monkeypatch.setattr(tensorboard, "HAND_OFF_SECONDS", 0.0)
    tracker.scalars({"train/loss": 2.0}, 2)
    assert tracker.pending == []
    tracker.writer.flush()
    assert [p.value for p in logged(tmp_path, "train/loss")] == [1.0, 2.0]
    tracker.close()


def test_the_bar_restarts_every_epoch_with_its_own_clock(tmp_path: Path) -> None:
    out = io.StringIO()
    tracker = Tracker(tmp_path, Console(file=out, width=120))
    with tracker.progress() as progress:
        bar = progress.add_task("training", total=3, status="")
        assert list(track(progress, bar, [1, 2, 3], "epoch 1/2")) == [1, 2, 3]
        task = progress.tasks[0]
        assert (task.completed, task.description, task.finished) == (3, "epoch 1/2", True)
        items = track(progress, bar, ["a", "b"], "epoch 2/2")
        assert next(items) == "a"
        assert (task.completed, task.total, task.finished) == (0, 2, False)  # a new clock
        assert list(items) == ["b"]
        assert task.completed == 2
        progress.update(bar, status="train/loss 0.1234")
    assert "epoch 2/2" in out.getvalue() and "2/2 0:00:00 < 0:00:00 train/loss 0.1234" in (
        out.getvalue()
    )


def test_steps_column_shows_steps_time_taken_and_left(tmp_path: Path) -> None:
    assert clock(0) == "0:00:00" and clock(3725.9) == "1:02:05"
    tracker = Tracker(tmp_path, Console(file=io.StringIO(), width=120))
    with tracker.progress() as progress:
        bar = progress.add_task("epoch 1/1", total=782, status="")
        text = StepsColumn().render(progress.tasks[0]).plain
        assert text == "0/782 0:00:00 < -:--:--"  # nothing to estimate from yet
        progress.update(bar, completed=391)
        assert StepsColumn().render(progress.tasks[0]).plain.startswith("391/782 0:00:00 < ")
