"""TensorBoard for a run dir: scalars (kept in memory, handed over in batches), text, HPARAMS,
images, figures, embeddings and histograms; the console (progress bar, tables) rides along."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torchvision.utils import make_grid

from dltrain.tracking import console, figures

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
        self.writer.add_figure(tag, figures.confusion(matrix, labels), step)  # closes it

    def regression_figure(
        self,
        tag: str,
        predicted: torch.Tensor,
        actual: torch.Tensor,
        step: int = 0,
        png: Path | None = None,
    ) -> None:
        """Log predicted and actual values (first target) in split order and as a scatter."""
        self.figure(tag, figures.predicted_vs_actual(predicted, actual), step, png)

    def histograms(self, model: nn.Module, step: int) -> None:
        """Log a histogram of every parameter tensor."""
        for name, param in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)

    def progress(self) -> Progress:
        """A progress bar showing epoch, steps, timing and the latest metrics (console.py)."""
        return console.progress_bar(self.console)

    def table(self, title: str, caption: str, metrics: dict[str, float]) -> None:
        """Print metrics as a two-column table."""
        self.console.print(console.metrics_table(title, metrics, caption=caption, digits=4))

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


class _Discard:
    """Stands in for a SummaryWriter: every method call does nothing (and returns itself)."""

    def __getattr__(self, name: str) -> _Discard:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _Discard:
        return self


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
