"""What a run shows as it trains and leaves to read afterwards: the epoch bar, the final table,
dltrain.log (issue 22, item 5)."""

from __future__ import annotations

import json
import math
import os
import re
import select
import shlex
import struct
import subprocess
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.progress import Progress

from dltrain.tracking import metrics_log
from dltrain.tracking.epoch_bar import bar_line, clock

from .helpers import TINY, checkout_env, dltrain, run_command, run_dirs, start_command, stop

NUMBER = r"-?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|nan|inf)"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(working dir, run dir, stdout) of a finished 2-epoch run of the console script."""
    cwd = tmp_path_factory.mktemp("console")
    done = dltrain(cwd, *TINY, "trainer.seed=0", "logger=csv")
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(cwd)
    return cwd, run_dir, done.stdout


def logged_values(line: str) -> dict[str, float]:
    """The `name value` pairs of a log line."""
    return {k: float(v) for k, v in re.findall(rf"([\w/]+) ({NUMBER})(?=\s|$)", line)}


def test_dltrain_log_holds_each_epochs_metrics_and_the_final_results(
    finished: tuple[Path, Path, str],
) -> None:
    _, run_dir, _ = finished
    lines = (run_dir / "dltrain.log").read_text().splitlines()
    records = metrics_log.read(run_dir)
    for epoch in (1, 2):
        (line,) = [line for line in lines if re.search(rf"\] - epoch {epoch}/2\b", line)]
        shown = logged_values(line)
        for record in records:
            if record["epoch"] == epoch and record["name"].startswith("val/"):
                assert math.isclose(shown[record["name"]], record["value"], rel_tol=1e-4), line
        (mean,) = [r for r in records if r["epoch"] == epoch and r["name"] == "train/epoch_loss"]
        assert math.isclose(shown["train/loss"], mean["value"], rel_tol=1e-4), line
    final = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    (line,) = [line for line in lines if "test/acc" in line]
    shown = logged_values(line)
    for name in ("test/loss", "test/acc", "val/loss"):
        assert math.isclose(shown[name], final[name], rel_tol=1e-4), line


def command_in(output: str, start: str) -> list[str]:
    """The command starting with `start` that a line of `output` shows, split as a shell would."""
    (line,) = [line for line in output.splitlines() if start in line]
    return shlex.split(line[line.index(start) :])


def test_the_final_output_names_the_run_dir_and_commands_that_work(
    finished: tuple[Path, Path, str],
) -> None:
    cwd, run_dir, stdout = finished
    assert str(run_dir) in stdout.split("test/acc")[-1]  # after the table
    final = json.loads((run_dir / "metrics.json").read_text())
    program, *args = command_in(stdout, "dltrain-eval ")
    assert program == "dltrain-eval"
    done = run_command(program, *args, "trainer.device=cpu", cwd=cwd)
    assert done.returncode == 0, done.stderr
    acc = re.search(rf"test/acc\D*({NUMBER})", done.stdout)
    assert acc and math.isclose(float(acc[1]), final["metrics"]["test/acc"], abs_tol=1e-4)
    program, *args = command_in(stdout, "dltrain resume=")
    (epochs,) = [int(a.partition("=")[2]) for a in args if a.startswith("trainer.epochs=")]
    assert program == "dltrain" and epochs > 2
    done = run_command(program, *args, "trainer.device=cpu", cwd=cwd)
    assert done.returncode == 0, done.stderr
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["epochs_completed"] == epochs
    assert f"] - epoch {epochs}/{epochs}" in (run_dir / "dltrain.log").read_text()


def run_in_terminal(cwd: Path, *args: str, columns: int = 80) -> str:
    """`dltrain args` under a pseudo-terminal `columns` wide; everything it wrote, raw."""
    import fcntl
    import termios

    main_fd, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in checkout_env().items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    process = start_command(
        "dltrain", *args, cwd=cwd, env=env, stdout=terminal, stderr=terminal, text=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(terminal)
    chunks = []
    try:
        while select.select([main_fd], [], [], 60)[0]:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=30) == 0, b"".join(chunks).decode(errors="replace")
    finally:
        stop(process)
        os.close(main_fd)
    return b"".join(chunks).decode(errors="replace")


def test_the_bar_fits_80_columns_on_one_line_with_run_eta_and_running_loss(
    tmp_path: Path,
) -> None:
    raw = run_in_terminal(
        tmp_path, "dataset=iris", "trainer.epochs=2", "trainer.batch_size=8",
        "trainer.device=cpu", "trainer.seed=0", "logger=csv",
    )  # fmt: skip
    # A redraw taller than one line makes rich move the cursor up to overwrite it.
    assert not re.search(r"\x1b\[\d*A", raw), "the bar took more than one line"
    lines = [ANSI.sub("", line) for line in re.split(r"[\r\n]+", raw)]
    bars = [line.rstrip() for line in lines if re.match(r"epoch \d+/2 ", line)]
    assert bars and all(cell_len(line) <= 80 for line in bars), max(bars, key=cell_len)
    for line in bars:  # the whole bar on one line: the steps come with it
        assert re.search(r" \d+/\d+", line[len("epoch 1/2") :]), line

    def mid_epoch(epoch: int) -> list[str]:
        return [
            line
            for line in bars
            if line.startswith(f"epoch {epoch}/2")
            and (m := re.search(r" (\d+)/(\d+)", line[len("epoch 1/2") :]))
            and 0 < int(m[1]) < int(m[2])
        ]

    first = mid_epoch(1)  # drawn after the first batch of each epoch, then every 0.25 s
    assert first, bars
    assert all(re.search(r"run ETA \d+:\d\d:\d\d", line) for line in first), first
    assert all(re.search(rf"train/loss {NUMBER}", line) for line in first), first
    assert any("val/loss" in line for line in mid_epoch(2)), mid_epoch(2)


def test_the_bar_line_drops_its_least_important_cells_to_fit_any_width() -> None:
    assert clock(0) == "0:00:00" and clock(3725.9) == "1:02:05"
    progress = Progress()
    bar = progress.add_task("epoch 3/10", total=782, completed=391, eta=3725.0, loss=0.25,
                            metrics={"val/loss": 0.5, "val/acc": 0.75, "val/f1": 0.5})  # fmt: skip
    task = progress.tasks[bar]
    wide = bar_line(task, 200).plain
    assert re.fullmatch(
        r"epoch 3/10 ━{40} 391/782 \d:\d\d:\d\d<[-\d:]+ run ETA 1:02:05  train/loss 0\.2500"
        r"  val/loss 0\.5000  val/acc 0\.7500",
        wide,
    ), wide  # two val metrics at most: the log has them all
    shown = {width: bar_line(task, width).plain for width in range(1, 201)}
    assert all(cell_len(line) <= width for width, line in shown.items())
    order = ["val/acc", "<", "val/loss", "train/loss", "run ETA", "391/782", "━"]
    for width, line in shown.items():  # a cell goes only after those less important
        present = [cell in line for cell in order]
        assert present == sorted(present), (width, line)
    assert all(width >= len(line) >= min(width, 10) for width, line in shown.items())
    assert "391/782 run ETA 1:02:05  train/loss 0.2500  val/loss 0.5000" in shown[80]
