"""Fixtures shared by the test modules. Plain helpers (running the commands, making data files)
are in tests/helpers.py; `pytest -m "not slow"` leaves out the end-to-end tests (README)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import STARTED, stop


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    """Commands a test started with start_command and left running (it failed, or timed out)
    are killed after it, with what they started: a hang fails one test, not the whole run."""
    yield
    while STARTED:
        stop(STARTED.pop())
