"""run_dir/metrics.jsonl: every scalar a run logs, one JSON record a line, whatever the loggers.

A record: {"name": "train/loss", "step": 10, "epoch": 1, "wall_time": 1764561234.5, "value": 0.3}
(epoch: the epoch being trained when it was logged, 1-based; 0 before the first). Appended in
batches (about every 5 s and with every checkpoint), so a kill loses at most the last few seconds
and leaves at worst a cut last line, which readers skip. A resumed run first drops the records
after its checkpoint's step, as TensorBoard's purge hides them. dltrain-report reads this file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dltrain import files

FILE = "metrics.jsonl"
HAND_OFF_SECONDS = 5.0


class MetricsLog:
    """Appends scalar records to run_dir/metrics.jsonl."""

    def __init__(self, run_dir: Path, resumed_step: int | None = None):
        self.path = Path(run_dir) / FILE
        self.pending: list[tuple[str, int, int, float, float]] = []  # serialised when written
        self.written = time.monotonic()
        if resumed_step is not None:
            kept = [r for r in read(Path(run_dir)) if r["step"] <= resumed_step]
            files.save_text_atomic("".join(_line(r) for r in kept), self.path)

    def add(self, values: dict[str, float], step: int, epoch: int) -> None:
        now = time.time()
        self.pending.extend((k, step, epoch, now, v) for k, v in values.items())
        if time.monotonic() - self.written >= HAND_OFF_SECONDS:
            self.write()

    def write(self) -> None:
        """Append what is pending (one write call)."""
        pending, self.pending = self.pending, []
        self.written = time.monotonic()
        if pending:
            lines = (
                _line({"name": k, "step": step, "epoch": epoch, "wall_time": t, "value": float(v)})
                for k, step, epoch, t, v in pending
            )
            with open(self.path, "a", encoding="utf-8") as out:
                out.write("".join(lines))


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, allow_nan=True) + "\n"  # NaN / Infinity: a diverged loss, as logged


def read(run_dir: Path) -> list[dict[str, Any]]:
    """The records of run_dir/metrics.jsonl that are well formed (a cut or edited line is
    skipped); [] when there is no such regular file."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if _well_formed(record):
                records.append(record)
    return records


def _well_formed(record: Any) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        return False
    step, epoch, value = record.get("step"), record.get("epoch"), record.get("value")
    counts = all(isinstance(v, int) and not isinstance(v, bool) for v in (step, epoch))
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return counts and number and isinstance(record.get("wall_time"), int | float)


def curves(run_dir: Path, names: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """(steps, values) of each of `names` the run logged, in the order logged."""
    found: dict[str, tuple[list[int], list[float]]] = {}
    for record in read(run_dir):
        if record["name"] in names:
            steps, values = found.setdefault(record["name"], ([], []))
            steps.append(record["step"])
            values.append(float(record["value"]))
    return found
