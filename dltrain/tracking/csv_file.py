"""The CSV backend: run_dir/metrics.csv, wide: a row per step (step, epoch, then a column per
scalar, sorted; a value logged twice at one step: the last), written whole with every flush and
at the end, so it always reads with pandas."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from dltrain import files
from dltrain.registry import LOGGERS
from dltrain.tracking import metrics_log
from dltrain.tracking.backend import Backend, RunInfo

FILE = "metrics.csv"


@LOGGERS.register("csv")
class CsvBackend(Backend):
    def __init__(self, run: RunInfo):
        self.path = Path(run.run_dir) / FILE
        self.rows: dict[int, dict[str, float]] = {}  # step -> name -> value (the last logged)
        self.epochs: dict[int, int] = {}
        if run.resumed_step is not None:  # metrics.jsonl, cut at the checkpoint, has the rest
            for record in metrics_log.read(run.run_dir):
                self._add(record["name"], record["value"], record["step"], record["epoch"])

    def _add(self, name: str, value: float, step: int, epoch: int) -> None:
        row = self.rows.setdefault(step, {})
        if name != "epoch":  # the scalar `epoch` is the epoch column's value at that step
            row[name] = float(value)
        self.epochs[step] = max(self.epochs.get(step, 0), epoch)

    def scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        for name, value in values.items():
            self._add(name, value, step, epoch)

    def flush(self) -> None:
        names = sorted({name for row in self.rows.values() for name in row})
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["step", "epoch", *names])
        for step in sorted(self.rows):
            row = self.rows[step]
            writer.writerow([step, self.epochs[step], *(row.get(n, "") for n in names)])
        files.save_text_atomic(out.getvalue(), self.path)

    def close(self, status: str) -> None:
        self.flush()
