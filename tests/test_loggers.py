"""The logger group: metrics.jsonl against TensorBoard and CSV, a resume cutting it, a backend
that fails mid-run, tags and notes in metrics.json and dltrain-report, a sweep's named runs,
and a missing package caught before any run dir."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from dltrain import report
from dltrain.tracking import metrics_log
from dltrain.tracking.backend import Backend
from dltrain.train import run

from .helpers import FAST, compose_config, dltrain, dltrain_main, events, invoke, job_dir

IRIS = [*FAST, "dataset=iris", "trainer.log_every_n_steps=1"]


def jsonl_points(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    points: dict[str, list[tuple[int, float]]] = {}
    for record in metrics_log.read(run_dir):
        points.setdefault(record["name"], []).append((record["step"], record["value"]))
    return points


def tensorboard_points(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    logged = events(run_dir)
    return {
        tag: [(e.step, e.value) for e in logged.Scalars(tag)] for tag in logged.Tags()["scalars"]
    }


def assert_same_points(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs)
    for tag, points in ours.items():
        assert [s for s, _ in points] == [s for s, _ in theirs[tag]], tag
        for (_, mine), (_, other) in zip(points, theirs[tag], strict=True):
            assert math.isclose(mine, other, rel_tol=1e-6), tag  # TensorBoard keeps float32


def test_metrics_jsonl_holds_what_tensorboard_holds_and_csv_the_same(tmp_path: Path) -> None:
    run(compose_config(*IRIS, "logger=[tensorboard,csv]"), tmp_path)
    points = jsonl_points(tmp_path)
    assert {"train/loss", "val/loss", "test/acc", "best/val/loss", "lr", "epoch"} <= set(points)
    assert_same_points(points, tensorboard_points(tmp_path))
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    by_step = {int(row["step"]): row for row in rows}
    for record in metrics_log.read(tmp_path):
        row = by_step[record["step"]]
        assert int(row["epoch"]) == record["epoch"]
        column = "epoch" if record["name"] == "epoch" else record["name"]
        assert float(row[column]) == record["value"]  # CSV holds full precision
    assert [int(row["step"]) for row in rows] == sorted(by_step)


def test_a_resume_continues_metrics_jsonl_as_tensorboard_does(tmp_path: Path) -> None:
    run(compose_config(*IRIS, "trainer.epochs=3", "logger=[tensorboard,csv]"), tmp_path / "whole")
    first = compose_config(*IRIS, "logger=[tensorboard,csv]")
    run(first, tmp_path / "resumed")
    with open(tmp_path / "resumed" / metrics_log.FILE, "a") as out:  # logged after the checkpoint
        out.write(json.dumps({"name": "train/loss", "step": 5, "epoch": 3, "wall_time": 0.0,
                              "value": 9.0}) + "\n")  # fmt: skip
    resumed = tmp_path / "resumed"
    run(compose_config(*IRIS, f"resume={resumed}", "trainer.epochs=3"), resumed)
    whole, again = jsonl_points(tmp_path / "whole"), jsonl_points(resumed)
    assert again["train/loss"] == whole["train/loss"]  # the planted step-5 value is gone
    assert again["val/loss"] == whole["val/loss"]
    assert_same_points(again, tensorboard_points(resumed))
    rows = list(csv.DictReader((resumed / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == sorted({s for s, _ in whole["train/loss"]})


class FailsAtStep3(Backend):
    """A logger whose service goes away at step 3."""

    def scalars(self, values: dict, step: int, epoch: int) -> None:
        if step >= 3:
            raise ConnectionError("connection refused")


def test_a_logger_failing_mid_run_leaves_training_and_the_others_going(tmp_path: Path) -> None:
    target = ["logger=[tensorboard,target]", f"logger.target.target={__name__}:FailsAtStep3"]
    summary = run(compose_config(*IRIS, *target), tmp_path)
    assert summary["status"] == "completed"
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["not_logged"] == {"target": "scalars failed: ConnectionError: connection refused"}
    assert max(s for s, _ in jsonl_points(tmp_path)["train/loss"]) == 4
    assert_same_points(jsonl_points(tmp_path), tensorboard_points(tmp_path))


class CannotStart(Backend):
    def __init__(self) -> None:
        raise ConnectionError("no route to host")


def test_a_logger_that_cannot_start_leaves_the_run_to_the_others(tmp_path: Path) -> None:
    target = ["logger=[target,csv]", f"logger.target.target={__name__}:CannotStart"]
    assert run(compose_config(*IRIS, *target), tmp_path)["status"] == "completed"
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["not_logged"] == {"target": "start failed: ConnectionError: no route to host"}
    assert (tmp_path / "metrics.csv").is_file() and not (tmp_path / "tensorboard").exists()


def test_tags_and_notes_reach_metrics_json_and_the_report_filters_and_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for name, tags, seed in [("a", "[baseline]", 0), ("b", "[baseline]", 1), ("c", "[wide]", 0)]:
        labels = [f"tags={tags}", "notes='why: a test'", f"trainer.seed={seed}"]
        run(compose_config(*IRIS, *labels), tmp_path / name)
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["tags"] == ["baseline"] and saved["notes"] == "why: a test"
    frame = report.write_report([tmp_path], tmp_path / "r", tags=["baseline"])
    assert sorted(frame["run"]) == ["a", "b"]
    report.write_report([tmp_path], tmp_path / "g", by_tags=True)
    grouped = (tmp_path / "g" / "report.md").read_text()
    assert "| tags=baseline | 2 |" in grouped and "| tags=wide | 1 |" in grouped
    assert report.main([str(tmp_path), "--tags", "nothing"]) == 2
    assert "no runs (metrics.json) tagged nothing" in capsys.readouterr().err


def test_bad_labels_and_loggers_are_one_line_each_before_any_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = __import__("importlib").util.find_spec
    monkeypatch.setattr(
        "dltrain.list_groups.importlib.util.find_spec",
        lambda name, *a: None if name == "mlflow" else real(name, *a),
    )
    code, err = invoke(dltrain_main, ["logger=[csv,tensorbord]", "notes=[1,2]"], cwd=tmp_path)
    assert code == 2 and "Did you mean 'tensorboard'?" in err and "notes: one string" in err
    typo = ["logger=[mlflow]", "logger.mlflow.tracking_ur=x"]
    code, err = invoke(dltrain_main, typo, cwd=tmp_path)
    assert code == 2 and "Did you mean 'logger.mlflow.tracking_uri'?" in err
    code, err = invoke(dltrain_main, ["logger=[mlflow,csv]", "tags=a"], cwd=tmp_path)
    assert code == 2 and "tags: a list of words" in err
    missing = "logger=mlflow: needs the mlflow package, which is not installed here: pip install"
    assert f"{missing} 'dltrain[mlflow]'" in err
    assert not (tmp_path / "outputs").exists()
    target = ["logger=[target]", "logger.target.target=argparse:Namespace"]
    code, err = invoke(dltrain_main, target, cwd=tmp_path)
    assert code == 2 and "is no logger backend" in err


@pytest.mark.slow
def test_a_sweep_names_each_tensorboard_run_by_its_overrides(tmp_path: Path) -> None:
    done = dltrain(
        tmp_path, "-m", "optimizer=sgd,adam", "dataset=iris", "trainer.epochs=1",
        "trainer.device=cpu", "hydra.sweep.dir=sweep",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for job, name in [(0, "optimizer=sgd"), (1, "optimizer=adam")]:
        folder = job_dir(tmp_path / "sweep", job) / "tensorboard"
        assert [p.name for p in folder.iterdir()] == [name]
        logged = EventAccumulator(str(folder / name))
        logged.Reload()
        content = logged.PluginTagToContent("hparams")["_hparams_/experiment"]
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
        shown = [h.name for h in experiment.hparam_infos]
        assert shown[0] == "optimizer.name"
        assert set(shown) == {"optimizer.name", "model.name", "dataset.name", "optimizer.lr",
                              "trainer.seed"}  # fmt: skip
    table = (tmp_path / "sweep" / "report.md").read_text()
    assert "sgd" in table and "adam" in table
