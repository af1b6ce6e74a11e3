"""A command's output whose reader may go away (`dltrain ... | head -1`, a pager quit early): the
run goes on and saves everything, and only stops printing."""

from __future__ import annotations

import os
import sys
from typing import Any


class QuietWhenClosed:
    """Stands in for sys.stdout / sys.stderr: once a write finds the pipe closed, the stream's
    file descriptor points at /dev/null and every later write succeeds there."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self) -> None:
        self.reader_gone = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())  # the buffer left over drains there at exit
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self.stream, name)


def guard_output() -> None:
    """Make stdout and stderr survive their reader going away (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, QuietWhenClosed):
            setattr(sys, name, QuietWhenClosed(stream))
