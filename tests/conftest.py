"""Fixtures shared by the test modules. Plain helpers (running the commands, making data files)
are in tests/helpers.py; `pytest -m "not slow"` leaves out the end-to-end tests (README)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dltrain import cpu

from .helpers import STARTED, stop


@pytest.fixture(autouse=True)
def cpu_without_bf16(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """trainer.precision=auto picks float32 in this process's runs, whatever this machine's CPU:
    tests that compare numbers exactly (eval vs the run's test, accumulation) hold everywhere.
    Tests of auto fake the flags they need (tests/test_precision.py)."""
    cpuinfo = Path(tmp_path_factory.getbasetemp()) / "cpuinfo-without-bf16"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2\n")
    monkeypatch.setattr(cpu, "CPUINFO", cpuinfo)


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    """Commands a test started with start_command and left running (it failed, or timed out)
    are killed after it, with what they started: a hang fails one test, not the whole run."""
    yield
    while STARTED:
        stop(STARTED.pop())
