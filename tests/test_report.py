"""dltrain.report on real runs: the table, seed means, curves, the CLI, the sweep callback."""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf
from rich.console import Console

from dltrain.jobs import ReportCallback
from dltrain.report import main
from dltrain.report_curves import loss_curves_figure, scalars
from dltrain.runs_table import collect, labels, lower_is_better, override_columns, summarize
from dltrain.train import run

from .helpers import compose_config, dltrain, run_command

TINY = ["dataset=iris", "trainer.epochs=2", "trainer.log_every_n_steps=1", "trainer.device=cpu"]
SETTINGS = [(optimizer, seed) for optimizer in ("sgd", "adam") for seed in (0, 1)]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four finished runs laid out like a Hydra sweep: 2 optimizers x 2 seeds, MLP on iris."""
    root = tmp_path_factory.mktemp("sweep")
    for num, (optimizer, seed) in enumerate(SETTINGS):
        overrides = [f"optimizer={optimizer}", f"trainer.seed={seed}", *TINY]
        run_dir = root / str(num)
        run(compose_config(*overrides), run_dir, Console(quiet=True))
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return root


def metrics_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_collect_gives_one_row_per_run_with_its_overrides_and_metrics(sweep: Path) -> None:
    frame = collect(sweep)
    assert list(frame["run"]) == ["0", "1", "2", "3"]
    keys = ["optimizer", "trainer.seed", *(o.partition("=")[0] for o in TINY)]
    assert override_columns(frame) == keys  # one column per overridden key, in order
    assert list(frame["optimizer"]) == ["sgd", "sgd", "adam", "adam"]
    assert list(frame["trainer.seed"]) == ["0", "1", "0", "1"]
    for _, row in frame.iterrows():
        summary = metrics_json(sweep / row["run"])
        assert row["overrides"].startswith(f"optimizer={row['optimizer']} trainer.seed=")
        assert row["status"] == summary["status"] == "completed"
        for name, value in summary["metrics"].items():  # val/* of the best epoch, test/*
            assert row[name] == pytest.approx(value)
        for name, value in summary.get("last_metrics", {}).items():
            assert row[f"last/{name}"] == pytest.approx(value)
        assert row["best_epoch"] == summary["best_epoch"]
        assert row["epochs"] == summary["epochs_completed"] == 2
        assert row["seed"] == summary["seed"] == int(row["trainer.seed"])
        assert row["wall_time_s"] == summary["wall_time_s"] and pd.isna(row["error"])
    assert {"val/acc", "test/acc", "val/loss", "test/loss"} <= set(frame.columns)


def test_collect_takes_several_dirs_and_lists_unfinished_runs(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(sweep / "0", tmp_path / "a")
    shutil.copytree(sweep / "1", tmp_path / "b")
    summary = metrics_json(tmp_path / "a") | {"last_metrics": {"train/loss": 0.5}}
    (tmp_path / "a" / "metrics.json").write_text(json.dumps(summary))
    (tmp_path / "b" / "metrics.json").unlink()  # interrupted before metrics.json was written

    frame = collect([tmp_path / "a", tmp_path / "b"])
    assert list(frame["run"]) == ["a", "b"]
    assert list(frame["status"]) == ["completed", "unknown"]
    assert frame["last/train/loss"][0] == 0.5 and pd.isna(frame["last/train/loss"][1])
    assert pd.isna(frame["val/acc"][1]) and frame["seed"][1] == 1  # the seed from config.yaml
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path)]) == 0
    assert "unknown" in capsys.readouterr().out


def test_runs_differing_only_in_seeds_form_one_setting(sweep: Path, tmp_path: Path) -> None:
    for num, split_seed in (("0", 0), ("1", 1)):  # the two sgd runs, now with split seeds
        run_dir = shutil.copytree(sweep / num, tmp_path / num)
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        overrides.append(f"dataset.split_seed={split_seed}")
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    frame = collect(tmp_path)
    assert list(frame["dataset.split_seed"]) == ["0", "1"]
    assert list(summarize(frame)["n"]) == [2]
    assert list(summarize(frame, over="trainer.seed")["n"]) == [1, 1]


def test_summarize_gives_mean_std_and_n_over_seeds(sweep: Path) -> None:
    frame = collect(sweep)
    summary = summarize(frame)
    assert list(summary["setting"]) == [
        f"optimizer={opt} {' '.join(TINY)}" for opt in ("sgd", "adam")
    ]
    assert list(summary["n"]) == [2, 2] and list(summary["completed"]) == [2, 2]
    for optimizer, (_, row) in zip(("sgd", "adam"), summary.iterrows(), strict=True):
        dirs = [sweep / str(n) for n, (opt, _) in enumerate(SETTINGS) if opt == optimizer]
        for metric in ("val/acc", "test/loss"):
            values = [metrics_json(d)["metrics"][metric] for d in dirs]
            assert row[f"{metric} mean"] == pytest.approx(statistics.mean(values))
            assert row[f"{metric} std"] == pytest.approx(statistics.stdev(values))
    assert list(summarize(frame, over=[])["n"]) == [1, 1, 1, 1]  # seeds kept apart


@pytest.mark.parametrize(
    ("metric", "ascending"),
    [("val/loss", True), ("test/mse", True), ("val/rmse", True), ("test/mae", True)]
    + [("val/acc", False), ("test/f1", False), ("test/r2", False), ("val/auc", False)],
)
def test_sort_direction_follows_the_metric_name(metric: str, ascending: bool) -> None:
    assert lower_is_better(metric) is ascending


def test_curves_keep_every_point_and_overlay_all_runs(sweep: Path, tmp_path: Path) -> None:
    frame = collect(sweep)
    names = labels(frame)
    assert names == [f"optimizer={o} trainer.seed={s}" for o, s in SETTINGS]
    curves = scalars(sweep / "0", ["train/loss", "val/loss", "no/such"])
    assert set(curves) == {"train/loss", "val/loss"}
    assert len(curves["val/loss"][0]) == 2  # one point per epoch
    assert len(curves["train/loss"][0]) >= 2 and curves["train/loss"][0] == sorted(
        curves["train/loss"][0]
    )
    runs = dict(zip(names, frame["path"], strict=True))
    png = loss_curves_figure(runs, tmp_path / "curves.png", ["train/loss", "val/acc"])
    assert png == tmp_path / "curves.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert loss_curves_figure(runs, tmp_path / "none.png", "no/such") is None


def test_cli_prints_tables_and_writes_csv_md_png(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main([str(sweep), "--sort", "val/acc", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 runs" in printed and "sorted by val/acc (higher is better)" in printed
    assert "mean ± std over seeds" in printed and "optimizer=adam" in printed
    table = pd.read_csv(out / "report.csv")
    assert len(table) == 4 and list(table["val/acc"]) == sorted(table["val/acc"], reverse=True)
    markdown = (out / "report.md").read_text()
    assert "| run | optimizer | trainer.seed | status | val/acc |" in markdown
    assert "| setting | n | val/acc |" in markdown
    image = pytest.importorskip("matplotlib.image").imread(out / "curves.png")
    assert image.shape[1] > 600 and image.std() > 0.01  # two subplots, not blank


@pytest.mark.slow
def test_cli_exits_2_with_one_line_when_there_is_nothing_to_report(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"dltrain-report: no runs (metrics.json) under {tmp_path}\n"
    assert main([str(sweep), "--sort", "test/accc", "--out", str(tmp_path)]) == 2
    assert (
        "no metric 'test/accc' in these runs. Did you mean 'test/acc'?" in capsys.readouterr().err
    )
    result = run_command("dltrain-report", tmp_path, timeout=60)
    assert result.returncode == 2 and "no runs (metrics.json)" in result.stderr


@pytest.mark.slow
def test_a_multirun_ends_with_the_table_and_report_files(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "trainer.epochs=1", "optimizer=sgd,adam", "dataset=iris", "trainer.device=cpu"]
    result = dltrain(tmp_path, *args, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr
    assert "2 runs" in result.stdout and "sorted by val/loss (lower is better)" in result.stdout
    assert "warning" not in result.stderr
    table = pd.read_csv(sweep_dir / "report.csv")
    assert sorted(table["optimizer"]) == ["adam", "sgd"] and set(table["status"]) == {"completed"}
    assert (sweep_dir / "report.md").is_file() and (sweep_dir / "curves.png").stat().st_size > 0


def test_the_callback_only_warns_when_the_report_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "gone")}}})
    ReportCallback().on_multirun_end(config)
    err = capsys.readouterr().err
    assert err.startswith("dltrain: warning: no sweep report") and err.count("\n") == 1


def test_unreadable_files_of_a_run_are_noted_and_the_rest_is_reported(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "MARKER"
    tagged = f'- !!python/object/apply:os.system ["touch {marker}"]\n'.encode()
    bad = {  # run -> (metrics.json, .hydra/overrides.yaml, config.yaml); None: as the sweep left it
        "not_json": (b"{not json", None, None),
        "not_object": (b'["completed"]', None, None),
        "not_utf8": (b'{"status": "\xff"}', None, None),
        "tagged": (None, tagged, tagged),
        "bytes": (None, b"- optimizer=\xff\n", b"trainer: {seed: \xfe}\n"),
    }
    for name, files in bad.items():
        run_dir = shutil.copytree(sweep / "0", tmp_path / name)
        paths = ("metrics.json", ".hydra/overrides.yaml", "config.yaml")
        for path, content in zip(paths, files, strict=True):
            if content is not None:
                (run_dir / path).write_bytes(content)
        if files[0] is None:  # unfinished: the seed would come from config.yaml
            (run_dir / "metrics.json").unlink()
    shutil.copytree(sweep / "1", tmp_path / "good")

    frame = collect(tmp_path).set_index("run")
    assert not marker.exists()  # read as data: nothing ran
    unreadable = dict.fromkeys(["not_json", "not_object", "not_utf8"], "unreadable")
    assert dict(frame["status"]) == {"good": "completed", **unreadable} | {
        "tagged": "unknown",  # unfinished (no metrics.json), as the others could be
        "bytes": "unknown",
    }
    assert frame.loc["good", "val/acc"] == metrics_json(sweep / "1")["metrics"]["val/acc"]
    assert "unreadable metrics.json (not JSON (" in frame.loc["not_json", "error"]
    assert "JSON list, not an object" in frame.loc["not_object", "error"]
    assert "not UTF-8 text" in frame.loc["not_utf8", "error"]
    for name in ("tagged", "bytes"):  # no overrides, no seed, and why
        assert frame.loc[name, "overrides"] == "" and pd.isna(frame.loc[name, "seed"])
        assert "unreadable .hydra/overrides.yaml (" in frame.loc[name, "error"]
        assert "unreadable config.yaml (" in frame.loc[name, "error"]
    assert "python/object/apply" in frame.loc["tagged", "error"]

    assert main([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    captured = capsys.readouterr()
    assert "6 runs" in captured.out and "Traceback" not in captured.err
    assert not marker.exists()


@pytest.mark.slow
def test_an_unwritable_output_folder_is_one_line_and_exit_1(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    in_the_way = tmp_path / "file"
    in_the_way.write_text("not a folder")
    for out in (in_the_way, in_the_way / "report"):
        assert main([str(sweep), "--out", str(out)]) == 1
        captured = capsys.readouterr()
        assert "4 runs" in captured.out  # the tables came first
        assert captured.err.startswith(f"dltrain-report: cannot write {out}: a file is where")
        assert captured.err.count("\n") == 1
    if os.geteuid() != 0:  # root writes into read-only folders
        read_only = tmp_path / "read_only"
        read_only.mkdir(mode=0o555)
        assert main([str(sweep), "--out", str(read_only)]) == 1
        csv = read_only / "report.csv"
        assert capsys.readouterr().err == f"dltrain-report: cannot write {csv}: Permission denied\n"
    result = run_command("dltrain-report", sweep, "--out", in_the_way, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"dltrain-report: cannot write {in_the_way}: ")
