"""The train/val/test split without scikit-learn: seeded, stratified by largest remainders."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dltrain import checkpoints
from dltrain.data.splits import SPLIT_RULE, hold_out, other_split_rule
from dltrain.errors import ConfigError
from dltrain.evaluation import main as eval_main
from dltrain.files import save_torch
from dltrain.train import run

from .helpers import FAST, PYTHON, checkout_env, compose_config, dltrain_main, invoke


@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.2, 0.5, 0.93])
@pytest.mark.parametrize("sizes", [[50, 30, 20], [1, 7, 100, 13], [400, 9]])
def test_each_class_is_held_in_proportion(sizes: list[int], fraction: float) -> None:
    labels = np.repeat(np.arange(len(sizes)), sizes)
    np.random.default_rng(3).shuffle(labels)
    kept, held = hold_out(len(labels), fraction, seed=5, labels=labels)
    assert len(held) == math.ceil(fraction * len(labels))
    assert sorted([*kept, *held]) == list(range(len(labels)))  # every row once
    quotas = len(held) * np.array(sizes) / len(labels)
    counts = np.bincount(labels[held], minlength=len(sizes))
    assert (np.floor(quotas) <= counts).all() and (counts <= np.ceil(quotas)).all()


def test_the_seed_decides_the_rows_and_order_is_shuffled() -> None:
    labels = np.array(["cat", "dog"] * 100)
    first = hold_out(200, 0.25, seed=1, labels=labels)
    again = hold_out(200, 0.25, seed=1, labels=labels)
    other = hold_out(200, 0.25, seed=2, labels=labels)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(np.sort(first[1]), np.sort(other[1]))
    assert not np.array_equal(first[0], np.sort(first[0]))  # not in file order
    plain = hold_out(200, 0.25, seed=1)
    assert len(plain[1]) == 50 and sorted([*plain[0], *plain[1]]) == list(range(200))


def test_too_few_rows_to_hold_out_is_one_line() -> None:
    with pytest.raises(ConfigError, match="3 rows are too few to hold out"):
        hold_out(3, 0.99, seed=0)


def test_the_default_job_splits_digits_without_importing_scikit_learn() -> None:
    code = (
        "import sys\n"
        "from dltrain.config import options\n"
        "from dltrain.composition import compose_config\n"
        "from dltrain.registry import DATASETS\n"
        "cfg = compose_config().dataset\n"
        "data = DATASETS.build(cfg.name, options(cfg))\n"
        "assert cfg.name == 'digits', cfg.name\n"
        "print(len(data.train), len(data.val), len(data.test), 'sklearn' in sys.modules)\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, env=checkout_env(), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1257", "270", "270", "False"]


def test_digits_read_from_its_file_equals_scikit_learns_loader() -> None:
    from sklearn.datasets import load_digits

    from dltrain.data.bundled import digits

    ours, theirs = digits(), load_digits()
    assert np.array_equal(ours.x, theirs.data) and np.array_equal(ours.y, theirs.target)
    assert ours.feature_names == theirs.feature_names
    assert ours.class_names == [str(n) for n in theirs.target_names]


def test_a_run_split_by_an_older_dltrain_is_not_resumed_and_its_eval_warns(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    run(compose_config(*FAST, "dataset=iris", "trainer.epochs=1"), run_dir)
    for name in ("last.pt", "best.pt"):  # as dltrain before hold_out saved them
        saved = checkpoints.load(run_dir / "checkpoints" / name)
        del saved["data_meta"]["split_rule"]
        save_torch(saved, run_dir / "checkpoints" / name)
    before = (run_dir / "metrics.json").read_bytes()
    code, stderr = invoke(dltrain_main, [f"resume={run_dir}", "trainer.epochs=2"], tmp_path)
    assert code == 2 and "drawn by scikit-learn (an older dltrain)" in stderr, stderr
    assert [line for line in stderr.splitlines() if line.startswith("dltrain:")] == [
        stderr.strip().splitlines()[-1]
    ]
    assert (run_dir / "metrics.json").read_bytes() == before
    code, stderr = invoke(eval_main, [str(run_dir)], tmp_path)
    assert code == 0 and "its test metrics may be too good" in stderr, stderr


def test_a_planted_split_rule_is_named_on_one_line() -> None:
    problem = other_split_rule("x\ny" * 100)
    assert problem is not None and "\n" not in problem and len(problem) < 250
    assert other_split_rule(SPLIT_RULE) is None
