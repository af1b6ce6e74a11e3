"""The learning-rate schedule, stepped after every optimiser step or after every epoch."""

from __future__ import annotations

from dltrain.built_run import BuiltRun, FitState
from dltrain.callback import Callback
from dltrain.optim import Schedule


class StepSchedule(Callback):
    """Steps a per-step schedule (one-cycle) after every optimiser step."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule

    def on_step_end(self, run: BuiltRun, state: FitState) -> None:
        self.schedule.step()


class EpochSchedule(Callback):
    """Steps a per-epoch schedule after every epoch; a plateau one reads the validated epochs'
    metric (and waits on the others)."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule

    def on_epoch_end(self, run: BuiltRun, state: FitState, metrics: dict[str, float]) -> None:
        self.schedule.step(metrics)


def schedule_stepping(schedule: Schedule) -> Callback:
    """The callback that steps `schedule` at its interval."""
    return StepSchedule(schedule) if schedule.interval == "step" else EpochSchedule(schedule)
