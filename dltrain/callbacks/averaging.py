"""Averaged weights on torch.optim.swa_utils: an exponential moving average (callbacks=[ema])
or stochastic weight averaging (callbacks=[swa]).

When on, validation (so best.pt's choice), the test and model.pt use the averaged weights, and
the average is in every checkpoint, so a resumed run goes on with the same one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

from dltrain.built_run import BuiltRun, FitState
from dltrain.callback import Callback
from dltrain.callbacks.schedule import schedule_stepping
from dltrain.data.batches import make_batches
from dltrain.errors import ConfigError
from dltrain.optim import Schedule
from dltrain.registry import CALLBACKS


def averaged_copy(model: nn.Module, use_buffers: bool) -> AveragedModel:
    """An AveragedModel of `model`; a compiled model's copy is compiled afresh, as a deep copy
    would call the original's compiled forward (and so evaluate the original's weights)."""
    averaged = AveragedModel(model, use_buffers=use_buffers)
    if getattr(averaged.module, "_compiled_call_impl", None) is not None:
        averaged.module._compiled_call_impl = None
        averaged.module.compile()
    return averaged


@CALLBACKS.register("ema")
class EMA(Callback):
    """ema <- decay * ema + (1 - decay) * weights after every optimiser step (the first step's
    weights start it); BatchNorm statistics are averaged too. With `warmup` the decay after t
    updates is min(decay, (1 + t) / (10 + t)), so the random start fades out quickly."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False):
        if not 0 <= decay < 1:
            raise ConfigError(f"callbacks.ema.decay: must be in [0, 1), got {decay}")
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.averaged = averaged_copy(model, use_buffers=True)

    def current_decay(self) -> float:
        """The decay of the next update."""
        t = self.updates
        return min(self.decay, (1 + t) / (10 + t)) if self.warmup else self.decay

    def on_step_end(self, run: BuiltRun, state: FitState) -> None:
        self.averaged.multi_avg_fn = get_ema_multi_avg_fn(self.current_decay())
        self.averaged.update_parameters(run.model)
        self.updates += 1

    def evaluation_model(self, run: BuiltRun) -> nn.Module | None:
        return self.averaged.module if self.updates else None

    def state_dict(self) -> dict[str, Any]:
        return {"averaged": self.averaged.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        updates = state["updates"]
        if not isinstance(updates, int) or updates < 0:
            raise ValueError(f"the EMA's update count {updates!r} is not a count")
        self.averaged.load_state_dict(state["averaged"])
        self.updates = updates


@CALLBACKS.register("swa")
class SWA(Callback):
    """Stochastic weight averaging: from epoch `start` (a number, or a fraction of
    trainer.epochs) the learning rate anneals to `lr` over `anneal_epochs` (SWALR; null: the
    lr it has then) and every epoch's final weights join an equal-weight average. The run's own
    schedule steps until then. Before the average is validated or tested, its BatchNorm
    statistics are recomputed over the training data (update_bn, after every averaged epoch;
    models without BatchNorm skip it)."""

    def __init__(
        self,
        model: nn.Module,
        epochs: int,
        start: int | float = 0.75,
        lr: float | None = None,
        anneal_epochs: int = 2,
        anneal_strategy: Literal["cos", "linear"] = "cos",
    ):
        whole, fraction = isinstance(start, int), isinstance(start, float)
        if not (whole and start >= 1 or fraction and 0 < start < 1):
            raise ConfigError(
                f"callbacks.swa.start: an epoch (1, 2, ...) or a fraction in (0, 1), got {start}"
            )
        first = start if isinstance(start, int) else max(1, round(start * epochs))
        if first > epochs:
            raise ConfigError(
                f"callbacks.swa.start: epoch {first} is after the last (trainer.epochs={epochs})"
            )
        if lr is not None and lr <= 0 or anneal_epochs < 0:
            raise ConfigError("callbacks.swa: lr must be > 0 (or null) and anneal_epochs >= 0")
        self.start, self.lr, self.anneal = first, lr, (anneal_epochs, anneal_strategy)
        self.averaged = averaged_copy(model, use_buffers=False)
        self.averages = 0  # epochs averaged
        self.base: Callback | None = None  # steps the run's schedule before the start
        self.swalr: SWALR | None = None
        self._swalr_state: dict[str, Any] | None = None
        self._statistics_fresh = False
        self._statistics_batches: Any = None  # unshuffled training batches, made once

    def take_schedule(self, schedule: Schedule) -> None:
        """The run's schedule steps until the start; SWALR's from then on."""
        self.base = schedule_stepping(schedule)

    def on_fit_start(self, run: BuiltRun, state: FitState) -> None:
        if state.epoch >= self.start - 1:  # resumed at or inside the averaging epochs
            self._start_annealing(run)
        if self.averages and not self._statistics_fresh:  # on every rank: it all-reduces
            self._update_statistics(run)

    def on_step_end(self, run: BuiltRun, state: FitState) -> None:
        if self.base is not None and state.epoch + 1 < self.start:
            self.base.on_step_end(run, state)

    def on_train_epoch_end(self, run: BuiltRun, state: FitState) -> None:
        if state.epoch >= self.start:
            self.averaged.update_parameters(run.model)
            self.averages += 1
            self._update_statistics(run)  # now, on every rank: checkpoints (rank 0) read them

    def on_epoch_end(self, run: BuiltRun, state: FitState, metrics: dict[str, float]) -> None:
        if state.epoch >= self.start:
            self.swalr.step()
            return
        if self.base is not None:
            self.base.on_epoch_end(run, state, metrics)
        if state.epoch == self.start - 1:
            self._start_annealing(run)

    def _start_annealing(self, run: BuiltRun) -> None:
        if self.swalr is not None:
            return
        optimizer = run.optimizer
        lrs = [group["lr"] for group in optimizer.param_groups]
        anneal_epochs, strategy = self.anneal
        self.swalr = SWALR(
            optimizer, self.lr or lrs, anneal_epochs=anneal_epochs, anneal_strategy=strategy
        )
        if self._swalr_state is not None:  # resumed: where its annealing got to
            self.swalr.load_state_dict(self._swalr_state)
            for group, lr in zip(optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr

    def evaluation_model(self, run: BuiltRun) -> nn.Module | None:
        if not self.averages:
            return None
        if not self._statistics_fresh:  # a state just loaded (on every rank: the final test)
            self._update_statistics(run)
        return self.averaged.module

    def _update_statistics(self, run: BuiltRun) -> None:
        """BatchNorm statistics of the averaged weights: one pass over this rank's share of the
        training data (unshuffled), then averaged over the ranks."""
        trainer, world = run.trainer, run.world
        if self._statistics_batches is None:
            self._statistics_batches = make_batches(
                run.data.train, trainer.batch_size, False, 0, trainer.num_workers,
                run.context.device, world.rank, world.size,
            )  # fmt: skip
        inputs = (run.context.inputs(batch[0], train=False) for batch in self._statistics_batches)
        module = self.averaged.module
        norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            self._statistics_fresh = True
            return
        with torch.no_grad():
            update_bn(inputs, module)
        world.average(t for m in norms for t in (m.running_mean, m.running_var) if t is not None)
        self._statistics_fresh = True

    def state_dict(self) -> dict[str, Any]:
        swalr = self.swalr.state_dict() if self.swalr is not None else self._swalr_state
        return {
            "averaged": self.averaged.state_dict(),
            "averages": self.averages,
            "start": self.start,
            "swalr": copy.deepcopy(swalr),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        averages, start, swalr = state["averages"], state["start"], state["swalr"]
        if not (isinstance(averages, int) and isinstance(start, int) and averages >= 0):
            raise ValueError("the SWA state's epoch counts are not counts")
        self.averaged.load_state_dict(state["averaged"])
        self.averages, self.start, self._statistics_fresh = averages, start, False
        self._swalr_state = plain_schedule_state(swalr) if swalr is not None else None
        if self.swalr is not None and self._swalr_state is not None:
            self.swalr.load_state_dict(self._swalr_state)


SCHEDULE_FIELDS = {"anneal_epochs": int, "last_epoch": int, "_step_count": int, "_is_initial": bool}


def plain_schedule_state(state: Any) -> dict[str, Any]:
    """The fields of a saved SWALR state that it needs, each checked (loading one updates the
    scheduler's attributes wholesale: nothing else may come in)."""
    plain: dict[str, Any] = {}
    for key, kind in SCHEDULE_FIELDS.items():
        if not isinstance(state[key], kind):
            raise ValueError(f"the saved SWA schedule's {key} is not a {kind.__name__}")
        plain[key] = state[key]
    for key in ("base_lrs", "_last_lr"):
        if not all(isinstance(v, float) for v in state[key]):
            raise ValueError(f"the saved SWA schedule's {key} are not learning rates")
        plain[key] = list(state[key])
    return plain
