"""torch.profiler over a few optimiser steps (callbacks=[profiler]), and where a training batch's
time goes: waiting for its data or computing on it.

Every rank writes its trace as run_dir/profiler/rank<r>.<ns>.pt.trace.json (Perfetto and
chrome://tracing open it; so does TensorBoard's PyTorch Profiler tab, given that folder). Rank 0
prints the data wait vs compute split and the top ops by self time, saves them as profile.txt,
and logs the split as profile/* scalars and the table as TensorBoard text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity

from dltrain import files
from dltrain.built_run import BuiltRun, FitState
from dltrain.callback import Callback
from dltrain.callbacks.batch_timing import BatchTimes, TimedBatches
from dltrain.errors import ConfigError
from dltrain.registry import CALLBACKS

log = logging.getLogger(__name__)


@CALLBACKS.register("profiler")
class Profiler(Callback):
    """From the start of fit: `wait` optimiser steps run as usual, `warmup` steps are profiled
    and dropped (the profiler's own start-up), the next `active` steps are recorded; then the
    profiler stops. A batch's data wait and compute are timed over the recorded steps.

    A recorded step that spans an epoch's end includes its validation and checkpoints in the trace
    (not in the split). If training ends first, what was recorded is reported.
    """

    def __init__(
        self,
        wait: int = 5,
        warmup: int = 2,
        active: int = 5,
        record_shapes: bool = False,
        profile_memory: bool = False,
        with_stack: bool = False,
        row_limit: int = 15,
    ):
        lowest = {"wait": 0, "warmup": 0, "active": 1, "row_limit": 1}
        given = {"wait": wait, "warmup": warmup, "active": active, "row_limit": row_limit}
        if problems := [
            f"callbacks.profiler.{name}: must be {lowest[name]} or more, got {value}"
            for name, value in given.items()
            if value < lowest[name]
        ]:
            raise ConfigError(problems)
        self.wait, self.warmup, self.active, self.row_limit = wait, warmup, active, row_limit
        self.recording = {
            "record_shapes": record_shapes,
            "profile_memory": profile_memory,
            "with_stack": with_stack,
        }
        self.steps = 0  # optimiser steps since the profiler started
        self.times = BatchTimes()
        self.trace: Path | str | None = None  # the trace's file, or why it was not written
        self._running: ExitStack | None = None
        self._profiler: torch.profiler.profile | None = None
        self._first_step, self._folder, self._worker = 0, Path(), "rank0"

    @property
    def skipped(self) -> int:
        """Steps before the first recorded one."""
        return self.wait + self.warmup

    def on_fit_start(self, run: BuiltRun, state: FitState) -> None:
        if torch.autograd._profiler_enabled():
            log.warning("callbacks=[profiler]: a torch profiler already runs here; not profiling")
            return
        cuda = run.context.device.type == "cuda"
        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
        schedule = torch.profiler.schedule(
            wait=self.wait, warmup=self.warmup, active=self.active, repeat=1
        )
        self._folder, self._worker = run.run_dir / "profiler", f"rank{run.world.rank}"
        self._first_step = state.step
        self._profiler = torch.profiler.profile(
            activities=activities, schedule=schedule, on_trace_ready=self._export, **self.recording
        )
        self._running = ExitStack()
        self._running.enter_context(self._profiler)

    def wrap_train_batches(self, batches: Iterable) -> Iterable:
        if self._running is None:  # done (or never started): the epochs after cost nothing
            return batches
        return TimedBatches(batches, self.times, self._timing, self._done)

    def _timing(self) -> bool:
        return self._running is not None and self.skipped <= self.steps < self.skipped + self.active

    def _done(self) -> bool:
        return self._running is None

    def on_step_end(self, run: BuiltRun, state: FitState) -> None:
        if self._running is None:
            return
        self.times.computed()  # the step's end, before the profiler's own work (a trace export)
        self.steps += 1
        self._profiler.step()
        if self.steps >= self.skipped + self.active:
            self._finish(run, state)

    def on_train_epoch_end(self, run: BuiltRun, state: FitState) -> None:
        if state.should_stop or state.epoch >= run.trainer.epochs:  # the last validation is not
            self._finish(run, state)  # training: the profile ends with the last training pass

    def on_fit_end(self, run: BuiltRun, state: FitState) -> None:
        self._finish(run, state)  # stopped early after a validation; not the test

    def teardown(self, run: BuiltRun, state: FitState) -> None:
        self._finish(run, state)  # training raised while the profiler ran: stop it all the same

    def _export(self, profiler: torch.profiler.profile) -> None:
        """on_trace_ready: this rank's trace, named as tensorboard_trace_handler names them."""
        if self.steps <= self.skipped:
            return  # stopped at the start of the first recorded step: it holds nothing
        path = self._folder / f"{self._worker}.{time.time_ns()}.pt.trace.json"
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            profiler.export_chrome_trace(str(path))
            self.trace = path
        except (OSError, RuntimeError) as e:  # a full disk costs the trace, not the run
            self.trace = f"not written ({type(e).__name__}: {e})"
            log.error(f"callbacks=[profiler]: the trace {path} was {self.trace}")

    def _finish(self, run: BuiltRun, state: FitState) -> None:
        """Stop the profiler (a step being recorded hands its trace over), then report."""
        if self._running is None:
            return
        self.times.computed()
        running, self._running = self._running, None
        running.close()
        if run.world.main:
            self._report(run, state)
        self._profiler = None  # its recorded events, which can be large

    def _report(self, run: BuiltRun, state: FitState) -> None:
        recorded = min(max(self.steps - self.skipped, 0), self.active)
        if not recorded:
            text = (
                f"profiler: nothing recorded: training ended after {self.steps} steps, before the "
                f"recorded ones (callbacks.profiler.wait={self.wait} + warmup={self.warmup})"
            )
            log.warning(text)
            return self._save(run, text)
        first = self._first_step + self.skipped + 1
        cut = "" if recorded == self.active else f" of {self.active} (training ended)"
        steps = f"{recorded}{cut} steps recorded: optimiser steps {first}-{first + recorded - 1}"
        accumulate = run.context.accumulate
        batches = f", {accumulate} batches each" if accumulate > 1 else ""
        split = self.times.summary()
        table = self._table(run.context.device.type == "cuda")
        text = "\n".join([f"profiler: {steps}{batches}", f"trace: {self.trace}", split, table])
        run.tracker.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
        self._save(run, text)
        split_ms = {f"profile/{name}": value for name, value in self.times.means_ms().items()}
        run.tracker.scalars(split_ms, state.step)
        run.tracker.text("profile/top_ops", "    " + table.replace("\n", "\n    "), state.step)

    def _table(self, cuda: bool) -> str:
        """The ops by self time (the device's on CUDA), most first."""
        averages = self._profiler.key_averages(group_by_input_shape=self.recording["record_shapes"])
        if not averages:
            return "no ops were recorded"
        sort_by = "self_device_time_total" if cuda else "self_cpu_time_total"
        return averages.table(sort_by=sort_by, row_limit=self.row_limit)

    def _save(self, run: BuiltRun, text: str) -> None:
        try:
            files.save_text_atomic(text + "\n", run.run_dir / "profile.txt")
        except files.SaveError as e:
            log.error(f"callbacks=[profiler]: no profile.txt: {e}")
