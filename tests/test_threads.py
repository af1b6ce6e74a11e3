"""trainer.threads: torch's CPU threads, by default this process's share of the CPUs it may use."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from dltrain import cpu
from dltrain.callback import Callback
from dltrain.config import check_config
from dltrain.errors import ConfigError
from dltrain.train import run

from .helpers import FAST, compose_config

TINY_RUN = [*FAST, "trainer.epochs=1", "model.hidden_sizes=[8]"]


class ThreadsSeen(Callback):
    """Records the torch threads a run trains with."""

    seen: list[int] = []

    def on_fit_start(self, run: Any, state: Any) -> None:
        ThreadsSeen.seen.append(torch.get_num_threads())


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Runs set torch's threads and OMP/MKL_NUM_THREADS: later tests get this process's back."""
    threads = torch.get_num_threads()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)  # restored after the test
    monkeypatch.setattr(cpu, "CGROUP_V2", tmp_path / "no-cpu.max")  # no quota unless a test says
    monkeypatch.setattr(cpu, "CGROUP_V1", tmp_path / "no-v1")
    yield
    torch.set_num_threads(threads)
    cpu.share_with_jobs(1)


def run_seeing_threads(tmp_path: Path, *overrides: str) -> tuple[Any, dict[str, Any]]:
    """(the config, the summary) of a tiny run in tmp_path/run, ThreadsSeen recording torch's
    threads as training starts."""
    target = ["callbacks=[target]", f"callbacks.target.target={__name__}:ThreadsSeen"]
    ThreadsSeen.seen.clear()
    cfg = compose_config(*TINY_RUN, *target, *overrides)
    return cfg, run(cfg, tmp_path / "run")


def affinity(monkeypatch: pytest.MonkeyPatch, cpus: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))


def test_usable_cpus_are_the_affinity_mask_capped_by_the_cgroup_quota(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    affinity(monkeypatch, 8)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's count is not ours
    assert cpu.usable_cpus() == 8
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(cpu, "CGROUP_V2", quota)
    for text, expected in [("max 100000", 8), ("250000 100000", 3), ("50000 100000", 1)]:
        quota.write_text(text + "\n")
        assert cpu.usable_cpus() == expected, text
    v1 = tmp_path / "v1"  # cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    monkeypatch.setattr(cpu, "CGROUP_V2", tmp_path / "absent")
    monkeypatch.setattr(cpu, "CGROUP_V1", v1)
    assert cpu.usable_cpus() == 2


def test_ranks_workers_and_sweep_jobs_share_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    affinity(monkeypatch, 8)
    assert [cpu.default_threads(n) for n in (1, 2, 3, 16)] == [8, 4, 2, 1]
    assert [cpu.default_threads(1, workers) for workers in (0, 2, 8)] == [8, 6, 1]  # 1 each
    assert cpu.default_threads(2, 1) == 3
    cpu.share_with_jobs(2)  # dltrain.sweep: two joblib jobs side by side
    assert [cpu.default_threads(n) for n in (1, 2)] == [4, 2]


def test_the_default_is_the_affinity_count_applied_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    affinity(monkeypatch, 1)
    cfg, summary = run_seeing_threads(tmp_path)
    assert cfg.trainer.threads is None
    assert summary["threads"] == 1 and ThreadsSeen.seen == [1]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["threads"] == 1
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"  # subprocesses


def test_an_explicit_value_is_applied_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    affinity(monkeypatch, 1)
    _, summary = run_seeing_threads(tmp_path, "trainer.threads=3")
    assert summary["status"] == "completed" and ThreadsSeen.seen == [3]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["threads"] == 3


@pytest.mark.parametrize("value", [0, -1])
def test_a_bad_value_is_a_one_line_config_error(value: int) -> None:
    with pytest.raises(ConfigError, match="trainer.threads: must be at least 1 or null") as e:
        check_config(compose_config(f"trainer.threads={value}"))
    assert len(e.value.problems) == 1 and "\n" not in e.value.problems[0]
