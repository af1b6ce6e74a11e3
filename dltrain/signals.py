"""Stopping on request: SIGINT / SIGTERM end training after the current step, not inside it."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after a step; a checkpoint was written."""

    def __init__(self, signal_name: str, step: int):
        super().__init__(f"stopped by {signal_name} after step {step}")
        self.signal_name, self.step = signal_name, step

    def __reduce__(self) -> tuple:  # pickled to a parent process as itself (distributed runs)
        return (type(self), (self.signal_name, self.step))


class GracefulStop:
    """While active, a first SIGINT/SIGTERM stops training after the step; a second aborts.

    `same_within` seconds after the first, another signal counts as the same one: a launcher
    (torchrun, dltrain's own spawning) passes on the Ctrl-C its ranks already got from the terminal.
    """

    def __init__(self, same_within: float = 0.0) -> None:
        self.requested: str | None = None
        self.same_within = same_within
        self._first = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # only there can it listen
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            if time.monotonic() - self._first < self.same_within:
                return
            raise KeyboardInterrupt  # the second one: abort at once
        self.requested, self._first = signal.Signals(signum).name, time.monotonic()
        log.warning(
            f"{self.requested}: finishing the current step, then saving a checkpoint "
            "(send it again to abort at once)"
        )
