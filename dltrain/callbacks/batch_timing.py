"""Where a training batch's time goes: waiting for its data (the batch iterator's next()) or
computing on it: from the batch handed out until the next is asked for or its optimiser step
ends, whichever comes first (forward, backward, the step and the callbacks before the
profiler's). The profiler callback reports the split."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from torch.profiler import record_function

DATA_WAIT = "dltrain: next batch"  # the data wait's name in the profiler's trace and table
BOUND_SHARE = 20.0  # % of a batch's time spent waiting for data from which training is input-bound


@dataclass
class BatchTimes:
    """Seconds that each timed batch waited for its data, then computed."""

    data: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    computing_since: float | None = None  # when the batch being computed on was handed out

    def handed_out(self, asked: float, handed: float) -> None:
        """A batch asked for at `asked` came at `handed` (time.perf_counter())."""
        self.data.append(handed - asked)
        self.computing_since = handed

    def computed(self) -> None:
        """The batch handed out last is done (no-op when it is already or none was timed)."""
        if self.computing_since is not None:
            self.compute.append(time.perf_counter() - self.computing_since)
            self.computing_since = None

    def means_ms(self) -> dict[str, float]:
        """Mean data wait and compute per batch (ms) and the data wait's share of both (%)."""
        if not self.data:
            return {}
        data = sum(self.data) / len(self.data)
        compute = sum(self.compute) / len(self.compute) if self.compute else 0.0
        share = 100 * data / (data + compute) if data + compute > 0 else 0.0
        return {"data_wait_ms": 1e3 * data, "compute_ms": 1e3 * compute, "data_wait_pct": share}

    def summary(self) -> str:
        """One line: the mean split per batch and what it suggests."""
        if not (means := self.means_ms()):
            return "data wait vs compute: no batch was timed"
        line = (
            f"data wait vs compute per batch (mean of {len(self.data)}): "
            f"data {means['data_wait_ms']:.3f} ms, compute {means['compute_ms']:.3f} ms, "
            f"{means['data_wait_pct']:.1f}% waiting for data"
        )
        if means["data_wait_pct"] >= BOUND_SHARE:
            line += " (input-bound: try more trainer.num_workers or cheaper transforms)"
        return line


class TimedBatches:
    """An epoch's batches, handed out as they are; while `timing()` is true each one's data wait
    and compute go into `times` (and the wait shows in a running profiler as DATA_WAIT). The
    optimiser step's end is the caller's to mark (times.computed()). Once `done()` the rest of
    the epoch passes through untouched.
    """

    def __init__(
        self,
        batches: Any,
        times: BatchTimes,
        timing: Callable[[], bool],
        done: Callable[[], bool],
    ):
        self.batches, self.times, self.timing, self.done = batches, times, timing, done

    def __len__(self) -> int:  # the loop's progress bar asks
        return len(self.batches)

    def __iter__(self) -> Iterator:
        iterator = iter(self.batches)
        while not self.done():
            self.times.computed()
            if not self.timing():
                if (batch := next(iterator, _END)) is _END:
                    return
                yield batch
                continue
            asked = time.perf_counter()
            with record_function(DATA_WAIT):
                batch = next(iterator, _END)
            if batch is _END:
                return
            self.times.handed_out(asked, time.perf_counter())
            yield batch
        yield from iterator


_END = object()  # the iterator is exhausted
