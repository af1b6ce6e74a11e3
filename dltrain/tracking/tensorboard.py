"""The TensorBoard backend: scalars (kept in memory, handed over in batches), text, HPARAMS,
images, figures, embeddings and histograms."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from dltrain.registry import LOGGERS
from dltrain.tracking.backend import Backend, RunInfo

HAND_OFF_SECONDS = 5.0  # about how long scalars wait in memory before the writer gets them


@LOGGERS.register("tensorboard")
class TensorBoardBackend(Backend):
    """Events in run_dir/tensorboard (a sweep job's in a folder named by its overrides, which is
    what TensorBoard shows as the run's name).

    Scalars are kept in memory and handed to the writer in batches: its thread, woken for every
    scalar, slowed small training steps by ~10% on 2 cores (benchmarks/overhead.py).
    """

    def __init__(self, run: RunInfo):
        folder = Path(run.run_dir) / "tensorboard"
        if run.swept:  # `0/tensorboard/optimizer=sgd,optimizer.lr=0.1` in TensorBoard's list
            folder = folder / run.name.replace("/", "_")[:200]
        # purge_step: a resumed run hides what an earlier process logged after its checkpoint;
        # max_queue: a batch of scalars is queued at once, not 10 at a time behind the writer
        purge = None if run.resumed_step is None else run.resumed_step + 1
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge, max_queue=10_000)
        self.pending: list[tuple[str, float, int, float]] = []  # (tag, value, step, wall time)
        self.handed_off = time.monotonic()
        if run.resumed_step is None:
            self.writer.add_text("config", f"```yaml\n{run.yaml}```", 0)

    def scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
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

    def text(self, tag: str, markdown: str, step: int) -> None:
        self.writer.add_text(tag, markdown, step)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """The HPARAMS-tab summary, written into this run (not a sub-run) so runs line up."""
        experiment, session_start, session_end = hparams_summary(params, metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, grid, step)

    def figure(self, tag: str, fig: Any, step: int) -> None:
        self.writer.add_figure(tag, fig, step, close=False)

    def histograms(self, model: nn.Module, step: int) -> None:
        for name, param in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)

    def embedding(
        self, tag: str, codes: Any, metadata: dict[str, list[str]], images: Any | None, step: int
    ) -> None:
        # with a header row (which needs two columns or more), the projector offers each column
        # by name, the label first, to colour and label the points by
        rows = [list(row) for row in zip(*metadata.values(), strict=True)]
        self.writer.add_embedding(
            codes,
            metadata=rows,
            metadata_header=list(metadata),
            label_img=images,
            global_step=step,
            tag=tag,
        )

    def flush(self) -> None:
        self.hand_off()
        self.writer.flush()

    def close(self, status: str) -> None:
        self.hand_off()
        self.writer.close()
