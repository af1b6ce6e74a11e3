"""Bad places to write: what the user sees, and that nothing saved before is lost."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dltrain.checkpoints import load

from .helpers import dltrain, dltrain_main, invoke

pytestmark = pytest.mark.slow  # commands, and 1,000 command lines

WIDE_MLP = ["model.hidden_sizes=[256,256]", "trainer.seed=0", "trainer.device=cpu"]


def test_a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    first = dltrain(tmp_path, *WIDE_MLP, "trainer.epochs=1", "hydra.run.dir=run")
    assert first.returncode == 0, first.stderr
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    assert len(before) > 500_000
    # Go on with files limited to 200 kB: the next checkpoint cannot be written.
    result = dltrain(tmp_path, "resume=run", "trainer.epochs=2", file_size_limit=200_000)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("dltrain:")]
    assert len(error) == 1 and "Traceback" not in result.stderr
    assert "cannot write" in error[0] and "File too large" in error[0]
    assert "the previous one is kept" in error[0]
    assert last.read_bytes() == before and load(last)["epoch"] == 1
    assert not list((tmp_path / "run").rglob("*.tmp"))  # no half-written file left behind
    assert '"status": "failed"' in (tmp_path / "run" / "metrics.json").read_text()


def test_a_run_dir_that_cannot_be_made_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    result = dltrain(tmp_path, "trainer.epochs=1", f"hydra.run.dir={tmp_path}/a_file/run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"hydra.run.dir: cannot create {tmp_path}/a_file/run" in result.stderr
    assert "is a file, not a folder. Give a writable folder: hydra.run.dir=<folder>" in (
        result.stderr
    )


# Pieces of command lines that are wrong wherever they appear, and what the message must name.
BAD = [
    (["trainer.epochs=-1"], r"trainer\.epochs: must be at least 1, got -1"),
    (["trainer.epochs=abc"], r"trainer\.epochs: must be int, got 'abc'"),
    (["trainer.batch_size=0"], r"trainer\.batch_size: must be at least 1, got 0"),
    (["optimizer.lr=fast"], r"optimizer\.lr: must be float, got 'fast'"),
    (["optimizer.lr=-1"], r"optimizer \(\w+\): Invalid learning rate: -1"),
    (["model.activation=relux"], r"model\.activation: must be one of .*Did you mean 'relu'"),
    (["model=cnnn"], r"model=cnnn: no such model option\. Did you mean 'cnn'\? Available:"),
    (["trainer.epoch=3"], r"trainer\.epoch: no such key .*Did you mean 'trainer\.epochs'"),
    (["trainer.device=tpu"], r"trainer\.device: must be one of auto, cpu, cuda, mps"),
    (["trainer.precision=fp8"], r"trainer\.precision: must be one of 32, bf16-mixed, 16-mixed"),
    (["regularization=l3"], r"regularization=l3: no such regularization option.*Available:"),
    (["loss=mse"], r"loss=mse: does not fit dataset .* Choose one of:"),
    (["trainer.seed=100000000000000000000000"], r"trainer\.seed: must be in \[0, 2\*\*32 - 1\]"),
    (["trainer.devices=64"], r"trainer\.devices: 64 processes on this machine, but this"),
    (["trainer.divergence_threshold=-1"], r"trainer\.divergence_threshold: must be >= 0"),
    ([f"{'k' * 300}=1"], r"k{300}: no such key at the top level"),
    (["plugins=[no_such_plugin]"], r"plugins: no module named 'no_such_plugin'"),
    (["model=target", "model.target=nowhere.nets:Net"], r"model\.target: cannot import 'nowhere"),
    (["--config-dir=nowhere"], r"--config-dir: .*nowhere is not a folder"),
    (
        ["dataset.val_fraction=0.6", "dataset.test_fraction=0.5"],
        # (or, for a dataset without a test_fraction: that there is none)
        r"dataset\.val_fraction=0\.6 and dataset\.test_fraction=0\.5 must .* sum to less than 1"
        r"|dataset\.test_fraction: no such key in dataset",
    ),
]
EXISTING = "outputs/2020-01-01/00-00-00"  # a finished run (the fixture makes it)
# Wrong data (at most one of these per command line: each picks a dataset).
CSV = ["dataset=csv", "dataset.target=y"]
BAD_DATA = [
    ([*CSV, "dataset.path=missing.csv"], r"dataset\.path: no such file"),
    (["dataset=csv", "dataset.path=table.csv", "dataset.target=z"], r"dataset\.target: no col"),
    (["dataset=mnist", "dataset.data_dir=nowhere"], r"dataset mnist: missing .*nowhere"),
    ([*CSV, f"dataset.path={'p' * 300}.csv"], r"dataset\.path: .*\(File name too long\)"),
    ([f"hydra.run.dir={EXISTING}"], r"hydra\.run\.dir: .* already holds a run \(config\.yaml\)"),
]
# Right anywhere, and touching no key a wrong piece sets.
GOOD = [
    "trainer.monitor_mode=min",
    "trainer.log_every_n_steps=5",
    "trainer.deterministic=true",
    "trainer.num_workers=0",
    "optimizer=sgd",
    "scheduler=step",
    "model.dropout=0.1",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a finished run in outputs/ and a small CSV table."""
    root = tmp_path_factory.mktemp("bad_input")
    (root / "table.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    done = dltrain(root, "trainer.epochs=1", "trainer.device=cpu", f"hydra.run.dir={EXISTING}")
    assert done.returncode == 0, done.stderr
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@st.composite
def bad_command_lines(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """(arguments, patterns their message may match): valid and wrong pieces, shuffled."""
    wrong = draw(st.lists(st.sampled_from(BAD), max_size=3, unique_by=str))
    if not wrong or draw(st.booleans()):
        wrong.append(draw(st.sampled_from(BAD_DATA)))
    args = [a for pieces, _ in wrong for a in pieces]
    args += draw(st.lists(st.sampled_from(GOOD), max_size=4, unique=True))
    patterns = [p for _, p in wrong]
    if draw(st.booleans()):  # continuing the finished run: its model, data, ... cannot change
        args.append(f"resume={EXISTING}")
        patterns += [r"a resumed run keeps its", r"a resumed run takes only key=value"]
    return list(draw(st.permutations(args))), patterns


@pytest.mark.timeout(600)
@settings(max_examples=1000, deadline=None, database=None, derandomize=True)
@given(case=bad_command_lines())
def test_random_bad_command_lines_fail_cleanly(case, workdir: Path) -> None:
    args, patterns = case
    before = snapshot(workdir / EXISTING)
    # In this process: a subprocess each would take minutes.
    code, stderr = invoke(dltrain_main, args, cwd=workdir)
    assert code not in (0, None), stderr
    assert "Traceback" not in stderr and stderr.startswith("dltrain: "), stderr
    # A wrong piece is named with what is allowed (one may hide another: behind a missing data
    # file nothing about the data is known).
    assert any(re.search(p, stderr) for p in patterns), stderr
    assert snapshot(workdir / EXISTING) == before
