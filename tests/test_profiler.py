"""callbacks=[profiler]: a trace, the top-ops table and the data wait vs compute split of a few
steps, and a profiler that never outlives its run (it ended early or raised)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from dltrain import launch
from dltrain.built_run import BuiltRun, FitState
from dltrain.callback import Callback
from dltrain.callbacks.batch_timing import DATA_WAIT, BatchTimes, TimedBatches
from dltrain.errors import ConfigError
from dltrain.train import run

from .helpers import FAST, compose_config, events

PROFILER = ["callbacks=[profiler]", "callbacks.profiler.wait=2", "callbacks.profiler.warmup=1"]
PROFILER += ["callbacks.profiler.active=3"]  # steps 4-6 are recorded


def profiler_enabled() -> bool:
    """Whether any torch profiler records in this process (one left on slows all that follows)."""
    return torch.autograd._profiler_enabled()


def traces(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "profiler").glob("*.pt.trace.json"))


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short run of the default job with the profiler on (steps 4-6 of 40 recorded)."""
    run_dir = tmp_path_factory.mktemp("profiled")
    run(compose_config(*FAST, *PROFILER), run_dir)
    return run_dir


def test_the_trace_holds_the_recorded_steps_and_the_data_wait(profiled: Path) -> None:
    [trace] = traces(profiled)
    assert trace.name.startswith("rank0.")
    names = {event.get("name") for event in json.loads(trace.read_text())["traceEvents"]}
    assert {"ProfilerStep#3", "ProfilerStep#4", "ProfilerStep#5"} <= names  # counted from 0
    assert "ProfilerStep#2" not in names and "ProfilerStep#6" not in names  # warm-up, after
    assert DATA_WAIT in names and "aten::addmm" in names
    assert not profiler_enabled()


def test_profile_txt_has_the_split_and_the_top_ops(profiled: Path) -> None:
    text = (profiled / "profile.txt").read_text()
    assert "3 steps recorded: optimiser steps 4-6" in text
    assert f"trace: {traces(profiled)[0]}" in text
    assert "data wait vs compute per batch (mean of 3)" in text and "% waiting for data" in text
    assert "Self CPU" in text and "aten::addmm" in text


def test_the_split_and_the_table_are_in_tensorboard(profiled: Path) -> None:
    acc = events(profiled)
    for name in ("data_wait_ms", "compute_ms", "data_wait_pct"):
        [point] = acc.Scalars(f"profile/{name}")
        assert point.step == 6 and point.value >= 0
    assert "profile/top_ops/text_summary" in acc.Tags()["tensors"]


def test_a_run_ending_before_the_recorded_steps_says_so_and_stops_the_profiler(
    tmp_path: Path,
) -> None:
    run(compose_config(*FAST, *PROFILER, "trainer.max_steps=3"), tmp_path)  # 3rd: warm-up
    assert not profiler_enabled() and traces(tmp_path) == []
    assert (
        "nothing recorded: training ended after 3 steps" in (tmp_path / "profile.txt").read_text()
    )
    with torch.profiler.profile() as later:  # the next profiler in this process starts as usual
        torch.ones(2).sum()
    assert any(e.key == "aten::sum" for e in later.key_averages())


def test_a_run_ending_among_the_recorded_steps_keeps_what_was_recorded(tmp_path: Path) -> None:
    run(compose_config(*FAST, *PROFILER, "trainer.max_steps=4"), tmp_path)
    assert not profiler_enabled() and len(traces(tmp_path)) == 1
    text = (tmp_path / "profile.txt").read_text()
    assert "1 of 3 (training ended) steps recorded: optimiser steps 4-4" in text
    assert "mean of 1)" in text


def test_with_accumulated_gradients_the_split_is_per_batch(tmp_path: Path) -> None:
    run(compose_config(*FAST, *PROFILER, "trainer.accumulate_grad_batches=2"), tmp_path)
    text = (tmp_path / "profile.txt").read_text()
    assert "optimiser steps 4-6, 2 batches each" in text and "per batch (mean of 6)" in text


@pytest.mark.slow
def test_each_rank_writes_its_own_trace_and_rank_0_the_report(tmp_path: Path) -> None:
    launch.run(compose_config(*FAST, *PROFILER, "trainer.devices=2"), tmp_path)
    assert [t.name.split(".")[0] for t in traces(tmp_path)] == ["rank0", "rank1"]
    assert "3 steps recorded" in (tmp_path / "profile.txt").read_text()


class FailAtStep(Callback):
    """Raises after optimiser step `step` (a run that fails while being profiled)."""

    def __init__(self, step: int = 5):
        self.step = step

    def on_step_end(self, run: BuiltRun, state: FitState) -> None:
        if state.step == self.step:
            raise RuntimeError(f"failed at step {state.step}")


def test_a_run_that_raises_while_recording_still_stops_the_profiler(tmp_path: Path) -> None:
    failing = ["callbacks=[profiler,target]", f"callbacks.target.target={__name__}:FailAtStep"]
    cfg = compose_config(*FAST, *PROFILER[1:], *failing)
    with pytest.raises(RuntimeError, match="failed at step 5"):
        run(cfg, tmp_path)
    assert not profiler_enabled() and len(traces(tmp_path)) == 1
    assert "2 of 3 (training ended) steps recorded" in (tmp_path / "profile.txt").read_text()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("wait=-1", "callbacks.profiler.wait: must be 0 or more, got -1"),
        ("active=0", "callbacks.profiler.active: must be 1 or more, got 0"),
        ("row_limit=0", "callbacks.profiler.row_limit: must be 1 or more, got 0"),
    ],
)
def test_bad_options_are_one_line_config_errors(tmp_path: Path, option: str, message: str) -> None:
    cfg = compose_config(*FAST, "callbacks=[profiler]", f"callbacks.profiler.{option}")
    with pytest.raises(ConfigError) as raised:
        run(cfg, tmp_path)
    assert raised.value.problems == [message]
    assert not traces(tmp_path) and not profiler_enabled()


def test_a_profiler_running_already_is_left_alone(tmp_path: Path) -> None:
    with torch.profiler.profile() as outer:
        run(compose_config(*FAST, *PROFILER, "trainer.max_steps=8"), tmp_path)
        assert profiler_enabled()
    assert not (tmp_path / "profile.txt").exists() and traces(tmp_path) == []
    assert any(e.key == "aten::addmm" for e in outer.key_averages())


def test_nothing_is_profiled_unless_selected(tmp_path: Path) -> None:
    run(compose_config(*FAST, "trainer.max_steps=2"), tmp_path)
    assert not (tmp_path / "profiler").exists() and not (tmp_path / "profile.txt").exists()


# -- Data wait vs compute ------------------------------------------------------------------------


class SlowBatches:
    """`n` batches, each `delay` seconds in coming (a slow input pipeline when delay > 0)."""

    def __init__(self, n: int, delay: float):
        self.n, self.delay = n, delay

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            if self.delay:
                time.sleep(self.delay)
            yield i


def split(batches: SlowBatches, compute_s: float) -> dict[str, float]:
    """The split of `batches` when each takes `compute_s` to train on."""
    times = BatchTimes()
    timed = TimedBatches(batches, times, timing=lambda: True, done=lambda: False)
    assert len(timed) == len(batches)
    assert list(batches) == [i for i in timed if time.sleep(compute_s) is None]
    times.computed()  # the last step's end
    assert len(times.data) == len(times.compute) == len(batches)
    return times.means_ms()


def test_a_slow_input_pipeline_shows_as_data_wait() -> None:
    fast, slow = (split(SlowBatches(8, delay), compute_s=0.005) for delay in (0.0, 0.03))
    # Sleeps last at least as long as asked: on a loaded machine longer, the shares less sharp.
    assert slow["data_wait_ms"] >= 30 and fast["compute_ms"] >= 5 and slow["compute_ms"] >= 5
    assert slow["data_wait_pct"] > 50 and fast["data_wait_pct"] < 20
    assert "input-bound" in summary_of(slow) and "input-bound" not in summary_of(fast)


def summary_of(means: dict[str, float]) -> str:
    times = BatchTimes([means["data_wait_ms"] / 1e3], [means["compute_ms"] / 1e3])
    return times.summary()


def test_only_the_batches_of_the_recorded_steps_are_timed() -> None:
    times, handed = BatchTimes(), []
    timed = TimedBatches(
        SlowBatches(10, 0.0),
        times,
        timing=lambda: 3 <= len(handed) < 6,
        done=lambda: len(handed) >= 8,
    )
    for batch in timed:
        handed.append(batch)
    assert handed == list(range(10)) and len(times.data) == 3 and len(times.compute) == 3


class Points(Dataset):
    """Points labelled by the sign of their sum, each `delay` seconds in loading."""

    def __init__(self, n: int, delay: float):
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
        self.targets = (self.x.sum(1) > 0).long().tolist()  # so dltrain reads no sample for them
        self.delay = delay

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.delay:
            time.sleep(self.delay)
        return self.x[i], self.targets[i]


def points(n: int = 400, delay: float = 0.0) -> Points:
    return Points(n, delay)


def test_a_slow_dataset_is_seen_waiting_for_data(tmp_path: Path) -> None:
    data = ["dataset=target", f"dataset.target={__name__}:points", "trainer.epochs=1"]
    shares = {}
    for delay in (0.0, 0.001):  # 64 samples a batch: 64 ms or more of waiting
        cfg = compose_config(*FAST, *PROFILER, *data, f"+dataset.delay={delay}")
        run(cfg, tmp_path / str(delay))
        [share] = events(tmp_path / str(delay)).Scalars("profile/data_wait_pct")
        shares[delay] = share.value
    assert shares[0.001] > 2 * shares[0.0] and shares[0.001] > shares[0.0] + 15, shares
