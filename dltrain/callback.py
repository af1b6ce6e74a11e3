"""The callback API: your code at fixed points of training, its state kept in every checkpoint.

Subclass Callback, override the hooks you need and register it like any component:

    from dltrain.callback import Callback
    from dltrain.registry import CALLBACKS

    @CALLBACKS.register("print_lr")
    class PrintLR(Callback):
        def on_epoch_end(self, run, state, metrics):
            print(state.epoch, run.optimizer.param_groups[0]["lr"])

then select it with `callbacks=[print_lr]` (a conf/callbacks/print_lr.yaml holding `print_lr: {}`).
Its keyword options come from that YAML and the command line, checked against its signature.
Every hook gets the run (dltrain.built_run.BuiltRun: model, optimizer, batches, tracker, ...)
and its progress (FitState: epoch, step, best values, should_stop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from dltrain.built_run import BuiltRun, FitState

HOOKS = (
    "on_fit_start",
    "on_step_end",
    "on_train_epoch_end",
    "on_validation_end",
    "on_epoch_end",
    "on_fit_end",
    "on_test_end",
    "teardown",
)


class Callback:
    """Override what you need; the hooks run in the order the callbacks were selected."""

    def on_fit_start(self, run: BuiltRun, state: FitState) -> None:
        """Before the first training step, of a new or a resumed run (state says which epoch)."""

    def on_step_end(self, run: BuiltRun, state: FitState) -> None:
        """After every optimiser step: state.step is the global step, state.progress the epoch's
        sums so far. Set state.should_stop to end training after this step's epoch is wrapped up."""

    def on_train_epoch_end(self, run: BuiltRun, state: FitState) -> None:
        """After an epoch's training pass (state.epoch counts it), before its validation."""

    def on_validation_end(self, run: BuiltRun, state: FitState, metrics: dict[str, float]) -> None:
        """After each epoch whose model was judged: one validated (trainer.val_every_n_epochs), or
        every epoch of a dataset without a val split. `metrics`: train/loss and val/*."""

    def on_epoch_end(self, run: BuiltRun, state: FitState, metrics: dict[str, float]) -> None:
        """After every epoch, validated or not (then `metrics` holds train/loss only)."""

    def on_fit_end(self, run: BuiltRun, state: FitState) -> None:
        """After the last epoch (or an early stop); not when training raised."""

    def on_test_end(self, run: BuiltRun, state: FitState, metrics: dict[str, float]) -> None:
        """At the end: the final metrics (best val/*, test/*) of the weights in model.pt."""

    def teardown(self, run: BuiltRun, state: FitState) -> None:
        """Always last, whether the run completed, stopped or raised: release what you hold
        (open files, threads, a running profiler)."""

    def evaluation_model(self, run: BuiltRun) -> nn.Module | None:
        """The module that validation, best.pt's choice, testing and model.pt use instead of
        run.model (averaged weights); None: run.model."""
        return None

    def wrap_train_batches(self, batches: Iterable) -> Iterable:
        """An epoch's training batches as this callback wants them handed out (e.g. timed)."""
        return batches

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this callback (numbers, strings, tensors, lists, dicts)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take back what state_dict() gave (read from a checkpoint: check what you use)."""


class Callbacks:
    """A run's callbacks by name, in order; each hook is a list of only the overriding methods,
    so a hook nobody overrides costs one loop over an empty list."""

    def __init__(self, named: Mapping[str, Callback] | None = None):
        self.named = dict(named or {})
        self.hooks: dict[str, list[Callable[..., None]]] = {
            hook: [
                getattr(callback, hook)
                for callback in self.named.values()
                if getattr(type(callback), hook) is not getattr(Callback, hook)
            ]
            for hook in HOOKS
        }

    def fire(self, hook: str, *args: Any) -> None:
        """Call `hook` of every callback that has it, in order."""
        for method in self.hooks[hook]:
            method(*args)

    def evaluation_model(self, run: BuiltRun) -> nn.Module:
        """The module evaluated and saved: the last callback's that offers one, else run.model."""
        chosen = run.model
        for callback in self.named.values():
            if (offered := callback.evaluation_model(run)) is not None:
                chosen = offered
        return chosen

    def wrap_train_batches(self, batches: Iterable) -> Iterable:
        for callback in self.named.values():
            batches = callback.wrap_train_batches(batches)
        return batches

    def state_dict(self) -> dict[str, dict[str, Any]]:
        return {name: callback.state_dict() for name, callback in self.named.items()}

    def load_state_dict(self, states: Mapping[str, Any], evaluating_only: bool = False) -> None:
        """Give each callback its saved state; one missing from a checkpoint keeps its own.

        `evaluating_only`: just those that offer an evaluation model (the best epoch's average).
        """
        if not isinstance(states, Mapping):
            raise TypeError(f"the saved callback states are a {type(states).__name__}, not a dict")
        for name, callback in self.named.items():
            offers = type(callback).evaluation_model is not Callback.evaluation_model
            if name in states and (offers or not evaluating_only):
                callback.load_state_dict(states[name])
