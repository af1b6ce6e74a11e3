"""Where a run reports: TensorBoard event files and the rich console."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Table
from rich.text import Text
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torchvision.utils import make_grid

HAND_OFF_SECONDS = 5.0  # about how long scalars wait in memory before the writer gets them


class Tracker:
    """TensorBoard writer for the run dir plus console output (progress bar, tables).

    Scalars are kept in memory and handed to the writer in batches: its thread, woken for every
    scalar, slowed small training steps by ~10% on 2 cores (benchmarks/overhead.py).
    """

    def __init__(
        self, run_dir: Path, console: Console | None = None, purge_step: int | None = None
    ):
        # purge_step: a resumed run hides what an earlier process logged at or after that step;
        # max_queue: a batch of scalars is queued at once, not 10 at a time behind the writer
        self.writer = SummaryWriter(
            log_dir=str(Path(run_dir) / "tensorboard"), purge_step=purge_step, max_queue=10_000
        )
        self.console = console or Console()
        self.pending: list[tuple[str, float, int, float]] = []  # (tag, value, step, wall time)
        self.handed_off = time.monotonic()

    @classmethod
    def silent(cls) -> Tracker:
        """A tracker that writes and prints nothing (ranks other than 0 of a distributed run)."""
        tracker = cls.__new__(cls)
        tracker.writer = _Discard()
        tracker.console = Console(quiet=True)
        tracker.pending, tracker.handed_off = [], time.monotonic()
        return tracker

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log slash-namespaced scalars (`train/loss`, `val/acc`, `lr`) at a global step."""
        now = time.time()
        self.pending.extend((tag, value, step, now) for tag, value in values.items())
        if time.monotonic() - self.handed_off >= HAND_OFF_SECONDS:
            self.hand_off()

    def hand_off(self) -> None:
        """Hand the scalars kept in memory to the writer, with the times they were logged at."""
        pending, self.pending = self.pending, []
        for tag, value, step, wall_time in pending:
            self.writer.add_scalar(tag, value, step, walltime=wall_time)
        self.handed_off = time.monotonic()

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        """Log markdown text (the config, a confusion matrix)."""
        self.writer.add_text(tag, markdown, step)

    def hparams(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        """Write the HPARAMS-tab summary into this run (not a sub-run) so runs line up."""
        experiment, session_start, session_end = hparams_summary(flatten(config), metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)

    def images(
        self, tag: str, images: torch.Tensor, step: int = 0, nrow: int | None = None
    ) -> None:
        """Log a batch of images (N, C, H, W; uint8 or float in [0, 1]) as one grid."""
        images = images.float() / 255 if images.dtype == torch.uint8 else images.float().clamp(0, 1)
        nrow = nrow or int(len(images) ** 0.5 + 0.999)
        grid = make_grid(images.cpu(), nrow=nrow, padding=2, pad_value=1.0)
        self.writer.add_image(tag, grid, step)

    def figure(self, tag: str, fig: Any, step: int = 0, png: Path | None = None) -> None:
        """Log a matplotlib figure (and save it as `png` when given); closes the figure."""
        if png is not None:
            fig.savefig(png, dpi=120)
        self.writer.add_figure(tag, fig, step)

    def embedding(
        self,
        tag: str,
        codes: torch.Tensor,
        labels: list[str],
        images: torch.Tensor | None,
        step: int,
    ) -> None:
        """Codes with their labels (and image thumbnails) for TensorBoard's embedding projector."""
        if images is not None:
            scale = 255 if images.dtype == torch.uint8 else 1
            images = (images.float() / scale).clamp(0, 1)
        self.writer.add_embedding(
            codes, metadata=labels, label_img=images, global_step=step, tag=tag
        )

    def confusion_figure(
        self, tag: str, matrix: list[list[int]], labels: list[str], step: int = 0
    ) -> None:
        """Log a confusion matrix as a heat-map figure (rows true, columns predicted)."""
        plt = pyplot()

        size = min(2 + 0.5 * len(labels), 12)
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(matrix, cmap="Blues")
        ax.set(
            xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true"
        )
        ax.set_xticklabels(labels, rotation=90)
        ax.set_yticklabels(labels)
        if len(labels) <= 20:
            top = max(max(row) for row in matrix) or 1
            for i, row in enumerate(matrix):
                for j, count in enumerate(row):
                    color = "white" if count > top / 2 else "black"
                    ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
        fig.tight_layout()
        self.writer.add_figure(tag, fig, step)  # closes the figure

    def regression_figure(
        self,
        tag: str,
        predicted: torch.Tensor,
        actual: torch.Tensor,
        step: int = 0,
        png: Path | None = None,
    ) -> None:
        """Log predicted and actual values (first target) in split order and as a scatter."""
        plt = pyplot()
        pred, true = predicted[:, 0].float().numpy(), actual[:, 0].float().numpy()
        fig, (series, scatter) = plt.subplots(1, 2, figsize=(10, 4))
        series.plot(true, label="actual")
        series.plot(pred, label="predicted", linestyle="--")
        series.set(xlabel="sample (split order)", ylabel="target")
        series.legend()
        scatter.scatter(true, pred, s=6)
        low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        scatter.plot([low, high], [low, high], color="grey", linewidth=1)
        scatter.set(xlabel="actual", ylabel="predicted")
        fig.tight_layout()
        self.figure(tag, fig, step, png)

    def histograms(self, model: nn.Module, step: int) -> None:
        """Log a histogram of every parameter tensor."""
        for name, param in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)

    def progress(self) -> Progress:
        """A progress bar showing epoch, steps, timing and the latest metrics.

        rich redraws it by itself once a second (through validation too); `track` redraws it as
        training steps go by.
        """
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            StepsColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            refresh_per_second=1,
        )

    def table(self, title: str, caption: str, metrics: dict[str, float]) -> None:
        """Print metrics as a two-column table."""
        table = Table(title=title, caption=caption)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name, value in metrics.items():
            table.add_row(name, f"{value:.4f}")
        self.console.print(table)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Write pending events to disk."""
        self.hand_off()
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.hand_off()
        self.writer.close()


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


class _Discard:
    """Stands in for a SummaryWriter: every method call does nothing (and returns itself)."""

    def __getattr__(self, name: str) -> _Discard:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _Discard:
        return self


def markdown_matrix(matrix: list[list[int]], labels: list[str]) -> str:
    """A confusion matrix as a markdown table (rows true, columns predicted)."""
    head = "| true \\ pred | " + " | ".join(labels) + " |"
    rule = "|---" * (len(labels) + 1) + "|"
    pairs = zip(labels, matrix, strict=True)
    rows = [f"| {label} | " + " | ".join(map(str, row)) + " |" for label, row in pairs]
    return "\n".join([head, rule, *rows])


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as `group.key` scalars (lists and nulls as text), as HPARAMS wants them."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value if isinstance(value, bool | int | float | str) else str(value)
    return flat


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot
