"""A run dir from someone else: nothing in it may run code, read a file the user did not name,
or end in a traceback.

Each case plants something in a copy of a tiny trained run, runs the command a user would, and
checks that no marker file appeared, that the failure is one line per problem on stderr with a
non-zero exit, and that it names what is wrong.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from dltrain import checkpoints, files, run_dirs, safetensors_files
from dltrain.errors import ConfigError
from dltrain.evaluation import main as eval_main
from dltrain.export import main as export_main
from dltrain.files import save_torch
from dltrain.predict import main as predict_main
from dltrain.train import run

from .helpers import (
    FAST,
    PYTHON,
    TINY,
    compose_config,
    crafted_batch,
    dltrain_main,
    invoke,
    start_command,
    write_cifar,
)

Plant = Callable[[Path, Path], list[str]]  # (run dir, marker) -> the command's arguments


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch digits run with mid-epoch step checkpoints."""
    run_dir = tmp_path_factory.mktemp("hostile") / "run"
    recipe = ["trainer.checkpoint_every_n_steps=5", "trainer.keep_checkpoints=3"]
    run(compose_config(*FAST, "trainer.epochs=1", *recipe), run_dir)
    return run_dir


@pytest.fixture
def victim(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the trained run (a run dir someone sent), with an empty data root."""
    monkeypatch.setenv("DLTRAIN_DATA_DIR", str(tmp_path / "data_root"))
    copy = tmp_path / "sent" / "run"
    shutil.copytree(trained, copy, symlinks=True)
    (copy / ".dltrain.lock").unlink(missing_ok=True)
    return copy


def edit(path: Path, change: Callable[[dict], object]) -> None:
    """Change a checkpoint's dict and save it properly sealed: only its content is hostile."""
    saved = checkpoints.load(path)
    change(saved)
    save_torch(saved, path)


def flip(relative: str, where: float) -> Plant:
    """Flip one bit of a file at a fraction of its length (negative: from the end)."""

    def plant(run_dir: Path, marker: Path) -> list[str]:
        path = run_dir / relative
        data = bytearray(path.read_bytes())
        data[int(len(data) * where)] ^= 0x10
        path.write_bytes(bytes(data))
        return [str(run_dir)]

    return plant


def config_value(key: str, value: object) -> Plant:
    """Set `key` (dotted) in the saved config of best.pt."""

    def plant(run_dir: Path, marker: Path) -> list[str]:
        def change(saved: dict) -> None:
            *parents, leaf = key.split(".")
            node = saved["config"]
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value

        edit(run_dir / "checkpoints" / "best.pt", change)
        return [str(run_dir)]

    return plant


def traversal_csv(run_dir: Path, marker: Path) -> list[str]:
    """The run's data as a CSV at ../../../../etc/passwd (relative to where it runs)."""
    config_value("dataset", {"name": "csv", "path": "../../../../../../etc/passwd", "target": "x"})(
        run_dir, marker
    )
    return [str(run_dir)]


def crafted_cifar(given: bool) -> Plant:
    """A CIFAR-10 run whose data folder holds a batch that runs code when unpickled."""

    def plant(run_dir: Path, marker: Path) -> list[str]:
        folder = write_cifar(run_dir.parent / "crafted")
        (folder / "data_batch_1").write_bytes(crafted_batch(marker, "os.system"))
        dataset = {"name": "cifar10", "data_dir": str(folder.parent)}
        config_value("dataset", dataset)(run_dir, marker)
        return [str(run_dir), *([f"dataset.data_dir={folder.parent}"] if given else [])]

    return plant


def replace_best(make: Callable[[Path, Path], None]) -> Plant:
    def plant(run_dir: Path, marker: Path) -> list[str]:
        best = run_dir / "checkpoints" / "best.pt"
        best.unlink()
        make(best, run_dir)
        return [str(run_dir)]

    return plant


def nan_weights(saved: dict) -> None:
    first = next(iter(saved["model"]))
    saved["model"][first] = torch.full_like(saved["model"][first], float("nan"))


def changed(change: Callable[[dict], object]) -> Plant:
    def plant(run_dir: Path, marker: Path) -> list[str]:
        edit(run_dir / "checkpoints" / "best.pt", change)
        return [str(run_dir)]

    return plant


# (what is planted, the command run on the run dir, what its one-line error must say)
EVAL_CASES = {
    "bit flip in the middle": (flip("checkpoints/best.pt", 0.5), r"corrupted: its SHA-256"),
    "bit flip at the start": (flip("checkpoints/best.pt", 0.0), r"corrupted: its SHA-256"),
    "bit flip in the seal": (flip("checkpoints/best.pt", -0.001), r"corrupted|not a PyTorch"),
    "truncated": (
        replace_best(lambda best, d: best.write_bytes((d / "model.pt").read_bytes()[:999])),
        r"truncated, corrupted or not a PyTorch weights file",
    ),
    "a symlink to a text file": (
        replace_best(lambda best, d: best.symlink_to(d / "config.yaml")),
        r"best\.pt is a symbolic link",
    ),
    "a FIFO": (replace_best(lambda best, d: os.mkfifo(best)), r"is a FIFO \(named pipe\)"),
    "a list": (replace_best(lambda best, d: save_torch([1, 2], best)), r"holds a list, not a"),
    "interpolation in the config": (
        config_value("trainer.monitor", "${oc.env:HOME}"),
        r"cannot monitor '\$\{oc\.env:HOME\}'",
    ),
    "path traversal": (traversal_csv, r"dataset\.path \(\.\./.*/etc/passwd\) is not read from"),
    "crafted CIFAR pickles, named by the checkpoint": (
        crafted_cifar(given=False),
        r"dataset\.data_dir \(.*\) is not read from its checkpoint",
    ),
    "crafted CIFAR pickles, named by the user": (
        crafted_cifar(given=True),
        r"asks for posix\.system, which a CIFAR-10 batch never needs",
    ),
    "NaN weights": (changed(nan_weights), r"holds NaN or infinite values"),
    "a model too big to allocate": (
        config_value("model.hidden_sizes", [4_000_000_000]),
        r"cannot allocate what these options ask for",
    ),
    "a huge input shape": (
        changed(lambda s: s["data_meta"].update(input_shape=[10**12])),
        r"input_shape \[1000000000000\] is not 1 to 4 positive sizes",
    ),
    "a _target_ in the config": (
        config_value("model._target_", "os.system"),
        r"_target_.*holds no instantiation",
    ),
    "a hydra node in the config": (
        config_value("hydra.callbacks.x", {"_target_": "builtins.open", "_args_": ["x", "w"]}),
        r"config key hydra",
    ),
    "a tensor in the config": (config_value("trainer.seed", torch.ones(2)), r"not plain data"),
}


@pytest.mark.parametrize("case", EVAL_CASES)
def test_eval_of_a_hostile_run_dir_fails_in_one_line(case: str, victim: Path) -> None:
    plant, expected = EVAL_CASES[case]
    marker = victim.parent / "MARKER"
    args = plant(victim, marker)
    code, stderr = invoke(eval_main, args, cwd=victim.parent)
    assert code == 2, stderr
    assert not marker.exists()
    assert_one_line_each("dltrain-eval", stderr, expected)
    assert os.environ["HOME"] not in stderr.replace("${oc.env:HOME}", "")
    assert "root:" not in stderr  # nothing of /etc/passwd


def assert_one_line_each(prog: str, stderr: str, expected: str) -> None:
    lines = stderr.strip().splitlines()
    assert lines and all(line.startswith(f"{prog}: ") for line in lines), stderr
    assert "Traceback" not in stderr and re.search(expected, stderr), stderr


@pytest.mark.parametrize("main", [predict_main, export_main], ids=["predict", "export"])
def test_predict_and_export_check_the_checkpoint_as_eval_does(main, victim: Path) -> None:
    flip("checkpoints/best.pt", 0.5)(victim, victim)
    extra = ["input=x.csv"] if main is predict_main else ["format=safetensors"]
    code, stderr = invoke(main, [str(victim), *extra], cwd=victim.parent)
    assert code == 2 and "corrupted: its SHA-256" in stderr and len(stderr.splitlines()) == 1


def test_predict_refuses_a_fifo_as_input_at_once(victim: Path) -> None:
    fifo = victim.parent / "input.csv"
    os.mkfifo(fifo)
    code, stderr = invoke(predict_main, [str(victim), f"input={fifo}"], cwd=victim.parent)
    assert code == 2 and "is a FIFO" in stderr, stderr


def test_eval_output_that_cannot_be_written_is_one_line(victim: Path) -> None:
    code, stderr = invoke(eval_main, [str(victim), "out=/proc/dltrain.json"], cwd=victim.parent)
    assert code == 1 and stderr.startswith("dltrain-eval: cannot write /proc/dltrain.json")
    assert len(stderr.splitlines()) == 1


def hostile_overrides(run_dir: Path, marker: Path) -> None:
    """overrides.yaml lines that made Hydra instantiate a callable when they were replayed."""
    callback = f"+hydra.callbacks.x={{_target_: builtins.open, _args_: ['{marker}', w]}}"
    overrides = [callback, f"hydra.run.dir={marker.parent}/elsewhere", "optimizer.lr=1e9"]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        hostile_overrides,
        lambda run_dir, marker: (run_dir / ".hydra" / "overrides.yaml").write_text(
            f"- !!python/object/apply:os.system ['touch {marker}']\n"
        ),
        lambda run_dir, marker: (run_dir / ".hydra" / "overrides.yaml").write_bytes(b"\xff\xfe-"),
    ],
    ids=["hydra callback", "python tag", "not UTF-8"],
)
def test_resume_never_replays_the_run_dirs_overrides(overrides, victim: Path) -> None:
    marker = victim.parent / "MARKER"
    (victim / ".hydra").mkdir(exist_ok=True)  # as the console script leaves it
    overrides(victim, marker)
    code, stderr = invoke(dltrain_main, [f"resume={victim}", "trainer.epochs=2"], victim.parent)
    assert code == 0, stderr
    assert not marker.exists() and not (victim.parent / "elsewhere").exists()
    assert checkpoints.load(victim / "checkpoints" / "last.pt")["epoch"] == 2
    assert checkpoints.load(victim / "checkpoints" / "last.pt")["config"]["optimizer"]["lr"] == 1e-3


def test_a_damaged_last_checkpoint_names_the_newest_intact_one(victim: Path) -> None:
    last = victim / "checkpoints" / "last.pt"
    shutil.copy(last, victim / "copy")
    os.replace(victim / "copy", last)  # no longer the same file as the newest step-*.pt
    flip("checkpoints/last.pt", 0.5)(victim, victim)
    steps = sorted((victim / "checkpoints").glob("step-*.pt"))
    os.utime(steps[-1], ns=(2**62, 2**62))  # the newest on disk, though last.pt came later
    code, stderr = invoke(dltrain_main, [f"resume={victim}"], victim.parent)
    assert code == 2
    assert_one_line_each("dltrain", stderr, "corrupted: its SHA-256")
    assert f"the newest intact checkpoint is {steps[-1]}: dltrain resume={steps[-1]}" in stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.update(model={"nope": torch.zeros(1)}), r"does not fit the run its config"),
        (lambda s: s.update(epoch="one"), r"'epoch' should be a int, not a str"),
        (lambda s: s.update(optimizer=[1]), r"'optimizer' should be a dict, not a list"),
        (lambda s: s.pop("rng"), r"'rng' missing"),
    ],
    ids=["wrong model", "epoch as text", "optimizer as a list", "no rng"],
)
def test_resume_of_a_wrong_training_state_is_one_line(change, expected, victim: Path) -> None:
    edit(victim / "checkpoints" / "last.pt", change)
    code, stderr = invoke(dltrain_main, [f"resume={victim}", "trainer.epochs=2"], victim.parent)
    assert code == 2 and "Traceback" not in stderr and re.search(expected, stderr), stderr


def test_resume_does_not_follow_a_linked_checkpoint_elsewhere(victim: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "yours" / "checkpoints"
    elsewhere.mkdir(parents=True)
    (victim / "checkpoints" / "last.pt").rename(elsewhere / "last.pt")
    (victim / "checkpoints" / "last.pt").symlink_to(elsewhere / "last.pt")
    code, stderr = invoke(dltrain_main, [f"resume={victim}", "trainer.epochs=2"], victim.parent)
    assert code == 2 and "last.pt is a symbolic link" in stderr
    assert sorted(p.name for p in (tmp_path / "yours").rglob("*")) == ["checkpoints", "last.pt"]


def test_resume_clears_the_temp_files_of_killed_writes(victim: Path) -> None:
    orphans = [victim / ".metrics.json.abc123.tmp", victim / "checkpoints" / ".last.pt.x1.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a file")
    code, stderr = invoke(dltrain_main, [f"resume={victim}", "trainer.epochs=2"], victim.parent)
    assert code == 0, stderr
    assert not any(p.exists() for p in orphans)


def test_no_config_value_from_a_checkpoint_is_resolved(victim: Path) -> None:
    values = ["${oc.env:HOME}", "a\\${x}", "${now:%Y}", "\\\\${oc.env:HOME}", "$${x}"]
    edit(victim / "checkpoints" / "best.pt", lambda s: s["config"].update(notes=values))
    saved = checkpoints.load(victim / "checkpoints" / "best.pt")["config"]
    loaded = checkpoints.saved_config(saved, victim)
    assert list(loaded.notes) == values
    assert list(checkpoints.saved_config({"k": values}, victim).k) == values


@pytest.mark.slow
def test_a_second_process_cannot_take_a_locked_run_dir(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    holder = start_command(PYTHON, "-c", HOLD_LOCK, folder, stderr=None)
    try:
        assert holder.stdout.readline().strip() == "locked"
        taken = rf"in use by another dltrain process \(pid {holder.pid}\)"
        with pytest.raises(ConfigError, match=taken):
            run_dirs.lock(folder)
    finally:
        holder.kill()  # as kill -9 would: the kernel drops the lock, none is left stale
        holder.wait()
    run_dirs.lock(folder)
    run_dirs.release(folder)


HOLD_LOCK = """
import sys, time
from pathlib import Path
from dltrain import run_dirs
run_dirs.lock(Path(sys.argv[1]).resolve())
print("locked", flush=True)
time.sleep(60)
"""


def test_default_names_taken_in_the_same_second_get_a_suffix(tmp_path: Path) -> None:
    target = tmp_path / "outputs" / "2026-11-30" / "12-00-00"
    first, second = run_dirs.claim_fresh(target), run_dirs.claim_fresh(target)
    assert (first, second) == (target, target.with_name("12-00-00_2"))


def start(cwd: Path, *args: str) -> subprocess.Popen:
    return start_command("dltrain", *TINY, *args, cwd=cwd)


@pytest.mark.slow
def test_two_runs_started_together_never_share_a_run_dir(tmp_path: Path) -> None:
    processes = [start(tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    assert [code for code, _ in results] == [0, 0], results
    dirs = sorted(p.parent for p in (tmp_path / "outputs").rglob("metrics.json"))
    assert len(dirs) == 2
    for run_dir in dirs:
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
        assert len(list((run_dir / "tensorboard").glob("events.*"))) == 1


@pytest.mark.slow
def test_two_runs_aimed_at_one_named_dir_one_is_refused(tmp_path: Path) -> None:
    named = f"hydra.run.dir={tmp_path / 'run'}"
    processes = [start(tmp_path, named, f"trainer.seed={seed}") for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refusal = next(err for code, err in results if code == 2)
    assert re.search(r"in use by another dltrain process|already holds a run", refusal), refusal
    assert len(refusal.strip().splitlines()) == 1
    winner = 1 + [code for code, _ in results].index(0)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["seed"] == winner
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.*"))) == 1


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors"])
def test_a_bit_flip_anywhere_in_a_model_file_is_detected(name: str, trained: Path) -> None:
    data = (trained / name).read_bytes()
    load = files.verified_zip if name.endswith(".pt") else None
    missed = []
    for at in range(len(data)):
        flipped = bytearray(data)
        flipped[at] ^= 1 << (at % 8)
        try:
            if load:
                load(Path(name), bytes(flipped))
            else:
                safetensors_files.load_safetensors_bytes(bytes(flipped), Path(name))
        except files.UnreadableFile:
            continue
        missed.append(at)
    assert missed == [], f"{len(missed)} of {len(data)} flipped bytes went unnoticed"


def test_files_written_before_checksums_are_checked_by_their_zip_crcs(tmp_path: Path) -> None:
    legacy = tmp_path / "old.pt"
    torch.save({"w": torch.arange(1000.0)}, legacy)  # as dltrain 0.1 wrote them: no seal
    assert torch.equal(checkpoints.load(legacy)["w"], torch.arange(1000.0))
    data = bytearray(legacy.read_bytes())
    data[data.index(torch.arange(1000.0).numpy().tobytes()[:64]) + 100] ^= 1
    legacy.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"corrupted: the CRC of .* does not match"):
        checkpoints.load(legacy)
