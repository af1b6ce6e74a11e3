"""The console of a run: its progress bar (moved from the training thread) and metric tables."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sized

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Table
from rich.text import Text


def progress_bar(console: Console) -> Progress:
    """A progress bar showing epoch, steps, timing and the latest metrics.

    rich redraws it by itself once a second (through validation too); `track` redraws it as
    training steps go by.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        StepsColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        refresh_per_second=1,
    )


def metrics_table(
    title: str, metrics: dict[str, float], caption: str | None = None, digits: int = 6
) -> Table:
    """Metrics as a two-column table."""
    table = Table(title=title, caption=caption)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.{digits}f}")
    return table


def print_metrics(title: str, metrics: dict[str, float]) -> None:
    """The metrics as a two-column table on stdout."""
    Console().print(metrics_table(title, metrics))


class StepsColumn(ProgressColumn):
    """Steps done of all, time taken and time left in one cell (rich takes ~0.1 ms per cell)."""

    def render(self, task: Task) -> Text:
        taken = task.finished_time if task.finished else task.elapsed
        left = "-:--:--" if task.time_remaining is None else clock(task.time_remaining)
        return Text(f"{task.completed}/{task.total} {clock(taken or 0)} < {left}")


def clock(seconds: float) -> str:
    """Seconds as h:mm:ss."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def track(
    progress: Progress, bar: TaskID, items: Sized, description: str, every: float = 0.25
) -> Iterator:
    """Yield `items`, moving `bar` (restarted at 0, with its own clock) at most every `every` s.

    It moves and redraws from this thread. rich's own Progress.track moves the bar from a second
    thread and rich redraws from a third, ten times a second each: on 2 cores their wake-ups cost
    small training steps 1-2% (benchmarks/overhead.py).
    """
    progress.reset(bar, total=len(items), description=description)
    done, shown = 0, time.monotonic()
    for item in items:
        yield item
        done += 1
        if (now := time.monotonic()) - shown >= every:
            progress.update(bar, completed=done, refresh=True)
            shown = now
    progress.update(bar, completed=done)  # drawn with the epoch's metrics, or within a second
