"""The epoch bar: one line laid out to the terminal's width, its least important cells dropped
(never wrapped) when they do not fit, with the whole run's ETA and the running train loss."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sized
from types import TracebackType

from rich.console import Console
from rich.progress import Progress, ProgressColumn, Task
from rich.table import Column
from rich.text import Text

BAR_WIDTH = (8, 40)  # the bar's narrowest and widest; the cells around it come first
SHOWN_METRICS = 2  # of an epoch's val metrics (all of them go to dltrain.log)


class EpochBar:
    """A run's epoch bar, moved from the training thread (see `track`)."""

    def __init__(self, console: Console, epochs: int, every: float = 0.25):
        self.progress = Progress(LineColumn(console), console=console, refresh_per_second=1)
        self.epochs, self.every = epochs, every
        self.bar = self.progress.add_task(
            "training", total=None, visible=False, eta=None, loss=None, metrics={}
        )
        self.started: float | None = None  # at the first batch this process trains
        self.done = 0  # batches this process trained in the epochs before this one
        self.per_epoch: int | None = None  # batches of a whole epoch (a resumed one has fewer)

    def __enter__(self) -> EpochBar:
        self.progress.start()
        return self

    def __exit__(self, kind: type | None, error: object, trace: TracebackType | None) -> None:
        self.progress.stop()

    def track(
        self, items: Sized, epoch: int, loss: Callable[[], float | None] | None = None
    ) -> Iterator:
        """Yield `items`, moving the bar (restarted at 0, with its own clock) after the first
        and then at most every `every` s, with `loss()`: the epoch's running train loss.

        It moves and redraws from this thread. rich's own Progress.track moves the bar from a
        second thread and rich redraws from a third, ten times a second each: on 2 cores their
        wake-ups cost small training steps 1-2% (benchmarks/overhead.py).
        """
        total = len(items)
        self.per_epoch = max(self.per_epoch or 0, total)
        description = f"epoch {epoch}/{self.epochs}"
        self.progress.reset(self.bar, total=total, description=description, visible=True)
        self.started = self.started or time.monotonic()
        later = (self.epochs - epoch) * self.per_epoch  # batches of the epochs after this one
        done, shown = 0, 0.0
        for item in items:
            yield item
            done += 1
            if (now := time.monotonic()) - shown >= self.every:
                value = loss() if loss is not None else None
                eta = self.eta(done, total - done + later)
                self.progress.update(self.bar, completed=done, eta=eta, loss=value, refresh=True)
                shown = now
        self.progress.update(self.bar, completed=done, eta=self.eta(done, later))
        self.done += done  # drawn with the epoch's metrics, or within a second

    def eta(self, done: int, left: int) -> float:
        """Seconds until the run's last batch, at this process's pace so far (`done` batches
        into this epoch, `left` to go in all)."""
        elapsed = time.monotonic() - (self.started or time.monotonic())
        return elapsed / max(self.done + done, 1) * left

    def show(self, metrics: dict[str, float]) -> None:
        """An epoch's metrics: its mean train loss and its val metrics (if it validated)."""
        val = {k: v for k, v in metrics.items() if k != "train/loss"}
        self.progress.update(self.bar, loss=metrics.get("train/loss"), metrics=val)


class LineColumn(ProgressColumn):
    """The whole line in one cell, so that it is laid out here to the console's width."""

    def __init__(self, console: Console):
        super().__init__(table_column=Column(no_wrap=True, overflow="crop"))
        self.console = console

    def render(self, task: Task) -> Text:
        return bar_line(task, self.console.width)


def bar_line(task: Task, width: int) -> Text:
    """The bar of `task` in at most `width` cells; the cells most needed first: description,
    bar, steps, run ETA, train loss, first val metric, epoch clock, second val metric."""
    taken = (task.finished_time if task.finished else task.elapsed) or 0
    left = "-:--:--" if task.time_remaining is None else clock(task.time_remaining)
    eta, loss = task.fields["eta"], task.fields["loss"]
    metrics = list(task.fields["metrics"].items())[:SHOWN_METRICS]
    cells = [  # (rank, text) in the order shown: the highest ranks are dropped first
        (1, f" {task.completed:.0f}/{task.total or 0:.0f}"),
        (5, f" {clock(taken)}<{left}"),
        (2, f" run ETA {clock(eta)}" if eta is not None else ""),
        (3, f"  train/loss {loss:.4f}" if loss is not None else ""),
        *((4 + 2 * i, f"  {name} {value:.4f}") for i, (name, value) in enumerate(metrics)),
    ]
    room = width - len(task.description) - BAR_WIDTH[0] - 1
    kept = set()
    for rank, text in sorted(cells):
        if len(text) > room:
            break
        kept.add(rank)
        room -= len(text)
    line = Text(task.description, style="bold")
    if room >= 0:  # else not even the narrowest bar fits: the description alone
        line.append(" ")
        line.append_text(bar_text(task, min(BAR_WIDTH[1], BAR_WIDTH[0] + room)))
    for rank, text in cells:
        if rank in kept:
            line.append(text)
    line.truncate(width)
    return line


def bar_text(task: Task, width: int) -> Text:
    """The bar itself: its done part and the rest, `width` cells."""
    done = int(width * task.percentage / 100) if task.total else 0
    style = "bar.finished" if task.finished else "bar.complete"
    return Text.assemble(("━" * done, style), ("━" * (width - done), "bar.back"))


def clock(seconds: float) -> str:
    """Seconds as h:mm:ss."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
