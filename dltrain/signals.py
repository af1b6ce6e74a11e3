"""Stopping on request: SIGINT / SIGTERM end training after the current step, not inside it."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after a step; a checkpoint was written."""

    def __init__(self, signal_name: str, step: int):
        super().__init__(f"stopped by {signal_name} after step {step}")
        self.signal_name, self.step = signal_name, step


class GracefulStop:
    """While active, a first SIGINT/SIGTERM stops training after the step; a second aborts."""

    def __init__(self) -> None:
        self.requested: str | None = None
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
            raise KeyboardInterrupt  # the second one: abort at once
        self.requested = signal.Signals(signum).name
        log.warning(
            f"{self.requested}: finishing the current step, then saving a checkpoint "
            "(send it again to abort at once)"
        )
