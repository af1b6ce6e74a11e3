"""The Tracker: what a run logs goes to metrics.jsonl and to every selected backend; the console
(progress bar, tables) rides along.

A backend that raises is dropped for the rest of the run with one warning: training goes on,
the others keep logging, and `not_logged` (which metrics.json records) says what was lost.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from dltrain.log_files import log_to_files
from dltrain.tracking import console, figures
from dltrain.tracking.backend import Backend
from dltrain.tracking.epoch_bar import EpochBar
from dltrain.tracking.metrics_log import MetricsLog

log = logging.getLogger(__name__)
record_log = logging.getLogger("dltrain")  # what dltrain.log keeps of the console's output


class Tracker:
    """Rank 0's logging: metrics.jsonl, the backends (by name), the console."""

    def __init__(
        self,
        backends: dict[str, Backend] | None = None,
        metrics: MetricsLog | None = None,
        console: Console | None = None,
        params: dict[str, Any] | None = None,
    ):
        self.backends = dict(backends or {})
        self.metrics = metrics
        self.console = console or Console()
        self.params = params or {}  # the flattened config, swept keys first (for hparams)
        self.epoch = 0  # the epoch being trained (1-based), stamped on each scalar
        self.not_logged: dict[str, str] = {}  # backend -> why it stopped logging
        self.closed = False
        self.records = True  # the console's metrics go to the log files too

    @classmethod
    def silent(cls) -> Tracker:
        """A tracker that writes and prints nothing (ranks other than 0 of a distributed run)."""
        tracker = cls(console=Console(quiet=True))
        tracker.records = False
        return tracker

    def _each(self, method: str, *args: Any) -> None:
        """Call `method` of every backend still logging; drop the one that raises."""
        for name, backend in list(self.backends.items()):
            try:
                getattr(backend, method)(*args)
            except Exception as e:  # its service down, its disk full: not the training's end
                del self.backends[name]
                first_line = (str(e).splitlines() or [""])[0]
                why = f"{method} failed: {type(e).__name__}: {first_line}"
                self.not_logged[name] = why
                log.warning(f"logger {name} stops logging for this run ({why}); the others go on")

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log slash-namespaced scalars (`train/loss`, `val/acc`, `lr`) at a global step."""
        if self.metrics is not None:
            self.metrics.add(values, step, self.epoch)
        self._each("scalars", values, step, self.epoch)

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        self._each("text", tag, markdown, step)

    def hparams(self, metrics: dict[str, float]) -> None:
        """The run's flattened config and its final metrics (TensorBoard's HPARAMS tab)."""
        self._each("hparams", self.params, metrics)

    def images(
        self, tag: str, images: torch.Tensor, step: int = 0, nrow: int | None = None
    ) -> None:
        """Log a batch of images (N, C, H, W; uint8 or float in [0, 1]) as one grid."""
        if not self.backends:
            return
        from torchvision.utils import make_grid

        nrow = nrow or int(len(images) ** 0.5 + 0.999)
        grid = make_grid(unit_range(images).cpu(), nrow=nrow, padding=2, pad_value=1.0)
        self._each("image", tag, grid, step)

    def labelled_images(
        self, tag: str, images: torch.Tensor, captions: list[str], step: int = 0
    ) -> None:
        """Log images (N, C, H, W; uint8 or float in [0, 1]) as one figure, each titled."""
        if self.backends:
            pictures = unit_range(images).cpu()
            self.figure(tag, figures.labelled_pictures(pictures, captions), step)

    def figure(
        self, tag: str, fig: Any, step: int = 0, png: Path | None = None, dpi: int = 120
    ) -> None:
        """Log a matplotlib figure (and save it as `png` at `dpi` when given); closes the figure."""
        try:
            if png is not None:
                fig.savefig(png, dpi=dpi)
            self._each("figure", tag, fig, step)
        finally:
            figures.pyplot().close(fig)

    def confusion_figure(
        self, tag: str, matrix: list[list[int]], labels: list[str], step: int = 0
    ) -> None:
        """A confusion matrix as a heat-map figure (rows true, columns predicted)."""
        if self.backends:
            self.figure(tag, figures.confusion(matrix, labels), step)

    def regression_figure(
        self,
        tag: str,
        predicted: torch.Tensor,
        actual: torch.Tensor,
        step: int = 0,
        png: Path | None = None,
    ) -> None:
        """Predicted and actual values (first target) in split order and as a scatter."""
        self.figure(tag, figures.predicted_vs_actual(predicted, actual), step, png)

    def histograms(self, model: nn.Module, step: int) -> None:
        self._each("histograms", model, step)

    def embedding(
        self,
        tag: str,
        codes: torch.Tensor,
        metadata: dict[str, list[str]],
        images: torch.Tensor | None,
        step: int,
    ) -> None:
        """Codes with metadata columns by name, the label first (and image thumbnails), for an
        embedding projector."""
        if images is not None:
            images = unit_range(images)
        self._each("embedding", tag, codes, metadata, images, step)

    def artifacts(self, paths: list[Path]) -> None:
        """The run's files worth keeping beside its records (those that exist)."""
        self._each("artifacts", [p for p in paths if p.is_file()])

    def progress(self, epochs: int) -> EpochBar:
        """The epoch bar of a run of `epochs` epochs (epoch_bar.py)."""
        return EpochBar(self.console, epochs)

    def record(self, message: str) -> None:
        """A line for the log files (dltrain.log) alone: the console shows it its own way."""
        if self.records:
            log_to_files(record_log, message)

    def results(
        self, title: str, caption: str, metrics: dict[str, float], notes: dict[str, str]
    ) -> None:
        """The final metrics as a table, then `notes` (where the run is, what to run next);
        both to dltrain.log too."""
        self.console.print(console.metrics_table(title, metrics, caption=caption, digits=4))
        console.print_notes(self.console, notes)
        self.record(f"{title}, {caption}: {console.metrics_line(metrics)}")
        for label, text in notes.items():
            self.record(f"{label}: {text}")

    def flush(self) -> None:
        """Make what was logged durable (with every checkpoint)."""
        if self.metrics is not None:
            self.metrics.write()
        self._each("flush")

    def close(self, status: str = "completed") -> None:
        """Flush and close every backend, once."""
        if self.closed:
            return
        self.closed = True
        if self.metrics is not None:
            self.metrics.write()
        self._each("close", status)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.close("completed" if exc_type is None else "failed")


def unit_range(images: torch.Tensor) -> torch.Tensor:
    """Pictures as floats in [0, 1] (uint8 ones scaled down)."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float().clamp(0, 1)
