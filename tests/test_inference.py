"""dltrain-eval and dltrain-predict on tiny trained runs of every input kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import datasets as skd

from dltrain import checkpoints
from dltrain.config import options
from dltrain.data.splits import DataMeta, SplitOptions, split_indices
from dltrain.data.table_encoding import encode_frame
from dltrain.errors import ConfigError
from dltrain.evaluation import evaluate_split
from dltrain.evaluation import main as eval_main
from dltrain.files import save_torch
from dltrain.finished_run import FinishedRun, load_run
from dltrain.metrics import compute_metrics
from dltrain.modalities.saved_preprocessing import match_saved
from dltrain.predict import main as predict_main
from dltrain.predict import predict_file
from dltrain.registry import DATASETS, LOSSES

from .helpers import run_command
from .trained_runs import table_frame, trained


@pytest.fixture(autouse=True)
def data_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny runs' data lies under pytest's temp folder: make that the data root, whose
    paths eval follows (a checkpoint's paths elsewhere are not: tests/test_hostile_runs.py)."""
    monkeypatch.setenv("DLTRAIN_DATA_DIR", str(tmp_path_factory.getbasetemp()))


def saved_metrics(run_dir: Path, prefix: str) -> dict[str, float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if k.startswith(f"{prefix}/")}


def assert_same_metrics(got: dict[str, float], expected: dict[str, float]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def rebuilt(run: FinishedRun, **changes: object):
    return DATASETS.build(run.cfg.dataset.name, {**options(run.cfg.dataset), **changes})


@torch.no_grad()
def outputs_of(run: FinishedRun, x: torch.Tensor) -> torch.Tensor:
    return run.model(run.context.inputs(x, train=False)).float()


def fail(main, capsys: pytest.CaptureFixture, *argv: str) -> str:
    """A command's stderr after it exits 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["digits", "breast_cancer", "diabetes", "autoencoder", "text", "mnist"]
)
def test_eval_gives_the_runs_own_test_metrics(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run_dir = trained(name, tmp_path_factory)
    result = evaluate_split(load_run(run_dir), "test")
    assert_same_metrics(result["metrics"], saved_metrics(run_dir, "test"))


@pytest.mark.slow
def test_eval_command_on_the_val_split(tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir = trained("digits", tmp_path_factory)
    result = run_command("dltrain-eval", run_dir, "split=val", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "val/acc" in result.stdout
    written = json.loads((run_dir / "eval_val.json").read_text())
    assert written["split"] == "val" and len(written["confusion_matrix"]) == 10
    assert_same_metrics(written["metrics"], saved_metrics(run_dir, "val"))  # best epoch = best.pt


def test_text_eval_keeps_the_saved_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir = trained("text", tmp_path_factory)
    changes = ["dataset.val_fraction=0.4", "dataset.min_frequency=3"]
    run = load_run(run_dir, changes)
    assert rebuilt(run).meta.vocab != run.meta.vocab  # a tokenizer trained anew would differ
    assert_same_metrics(evaluate_split(run, "test")["metrics"], saved_metrics(run_dir, "test"))
    with pytest.raises(ConfigError, match="dataset.tokenizer_file: cannot load"):
        rebuilt(run, tokenizer_file=str(run_dir / "metrics.json"))


def test_eval_restandardises_with_the_saved_statistics(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    run = load_run(trained("digits", tmp_path_factory), ["dataset.split_seed=1"])
    digits = skd.load_digits()
    split = {k: run.cfg.dataset[k] for k in ("val_fraction", "test_fraction", "stratify")}
    rows = split_indices(digits.target, "multiclass", SplitOptions(split_seed=1, **split))["test"]
    stats = run.meta.preprocessing["standardize"]
    x = torch.tensor((digits.data[rows] - stats["mean"]) / np.asarray(stats["std"])).float()
    y = torch.as_tensor(digits.target[rows])
    outputs = outputs_of(run, x)
    loss = LOSSES.build("cross_entropy", {})(outputs, y).item()
    expected = {"loss": loss, **compute_metrics(outputs, y, "multiclass")}
    got = evaluate_split(run, "test")["metrics"]
    assert_same_metrics(got, {f"test/{k}": v for k, v in expected.items()})


def test_tables_are_restandardised_but_other_encodings_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    run_dir = trained("table", tmp_path_factory)
    run = load_run(run_dir)
    data = rebuilt(run, split_seed=1)
    spec = data.meta.preprocessing["tabular"]
    col = spec["numeric"].index("row_id")
    x = data.test.tensors[0].double()
    row_ids = (x[:, col] * spec["std"][col] + spec["mean"][col]).round().long().tolist()
    raw = table_frame(run_dir).set_index("row_id").loc[row_ids].reset_index()
    match_saved(data, run.meta)
    expected = encode_frame(raw, run.meta.preprocessing)
    assert np.allclose(data.test.tensors[0].numpy(), expected, atol=1e-5)

    other = DataMeta.from_dict(run.meta.to_dict())
    other.preprocessing = json.loads(json.dumps(run.meta.preprocessing))
    other.preprocessing["tabular"]["categorical"]["job"].pop()
    with pytest.raises(ConfigError, match=r"encoded differently .*\(categorical differ"):
        match_saved(rebuilt(run), other)


def test_eval_mistakes_are_one_line_errors(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture
) -> None:
    run_dir = str(trained("digits", tmp_path_factory))
    assert "no such run dir" in fail(eval_main, capsys, str(tmp_path / "nope"))
    assert "Did you mean 'dataset.split_seed'" in fail(
        eval_main, capsys, run_dir, "dataset.split_sed=1"
    )
    err = fail(eval_main, capsys, run_dir, "dataset.test_fraction=0")
    assert err == "dltrain-eval: split=test: this dataset has no test split; it has train, val\n"
    assert "Did you mean 'val'?" in fail(eval_main, capsys, run_dir, "split=vall")
    assert "Did you mean 'split'?" in fail(eval_main, capsys, run_dir, "splt=val")

    bad = tmp_path / "best.pt"
    bad.write_bytes((Path(run_dir) / "checkpoints" / "best.pt").read_bytes()[:300])
    err = fail(eval_main, capsys, str(bad))
    assert err.count("\n") == 1 and "is truncated, corrupted or not a PyTorch weights" in err
    saved = checkpoints.load(Path(run_dir) / "checkpoints" / "best.pt")
    saved["config"]["model"]["hidden_sizes"] = [7]
    save_torch(saved, bad)
    err = fail(eval_main, capsys, str(bad))
    assert err.startswith("dltrain-eval: the saved weights do not fit the model its config builds")


def array_test_rows(run: FinishedRun) -> tuple[pd.DataFrame, torch.Tensor]:
    """A bundled dataset's raw test rows (shuffled columns, a target) and the model's inputs."""
    cfg = run.cfg.dataset
    bunch = getattr(skd, f"load_{cfg.name}")()
    split = {k: cfg[k] for k in ("val_fraction", "test_fraction", "split_seed", "stratify")}
    rows = split_indices(bunch.target, run.meta.task, SplitOptions(**split))["test"]
    frame = pd.DataFrame(bunch.data[rows], columns=bunch.feature_names)
    frame = frame[frame.columns[::-1]].assign(target=bunch.target[rows])
    return frame, rebuilt(run).test.tensors[0]


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "diabetes"])
def test_predict_from_a_csv_of_raw_features(
    name: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = load_run(trained(name, tmp_path_factory))
    frame, x = array_test_rows(run)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    assert predict_file(run, tmp_path / "rows.csv", tmp_path / "out.csv") == len(frame)
    dtype = None if name == "diabetes" else {"predicted": str}  # class names, not numbers
    got = pd.read_csv(tmp_path / "out.csv", dtype=dtype)
    outputs = outputs_of(run, x)
    assert got["row"].tolist() == list(range(1, len(frame) + 1))
    if name == "diabetes":
        assert list(got.columns) == ["row", "predicted"]
        assert np.allclose(got["predicted"], outputs[:, 0], atol=1e-4)
        return
    names = run.meta.class_names
    assert list(got.columns) == ["row", "predicted", *(f"prob_{n}" for n in names)]
    probs = got[[f"prob_{n}" for n in names]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    if name == "breast_cancer":  # one output: P(benign) = sigmoid
        expected = torch.sigmoid(outputs[:, 0])
        expected = torch.stack([1 - expected, expected], dim=1)
    else:
        expected = outputs.softmax(1)
    assert np.allclose(probs, expected.numpy(), atol=1e-5)
    assert got["predicted"].tolist() == [names[i] for i in expected.argmax(1).tolist()]


def test_predict_gives_an_autoencoders_reconstruction_error(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = load_run(trained("autoencoder", tmp_path_factory))
    frame, x = array_test_rows(run)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    predict_file(run, tmp_path / "rows.csv", tmp_path / "out.csv")
    got = pd.read_csv(tmp_path / "out.csv")
    assert list(got.columns) == ["row", "reconstruction_error"]
    expected = (outputs_of(run, x) - x).square().mean(1)
    assert np.allclose(got["reconstruction_error"], expected.numpy(), rtol=1e-5)


def test_predict_encodes_raw_table_rows_like_training(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run_dir = trained("table", tmp_path_factory)
    run = load_run(run_dir)
    x = rebuilt(run).test.tensors[0]
    spec = run.meta.preprocessing["tabular"]
    col = spec["numeric"].index("row_id")
    row_ids = (x[:, col].double() * spec["std"][col] + spec["mean"][col]).round().long().tolist()
    raw = table_frame(run_dir).set_index("row_id").loc[row_ids].reset_index()
    raw.drop(columns=["deposit"]).to_csv(tmp_path / "new.csv", index=False)  # no target
    predict_main([str(run_dir), f"input={tmp_path / 'new.csv'}"])
    got = pd.read_csv(run_dir / "predictions.csv")
    assert list(got.columns) == ["row", "predicted", "prob_no", "prob_yes"]
    p = torch.sigmoid(outputs_of(run, x)[:, 0]).numpy()
    assert np.allclose(got["prob_yes"], p, atol=1e-5)
    assert got["predicted"].tolist() == ["yes" if v >= 0.5 else "no" for v in p]


def test_predict_text_lines_with_the_saved_tokenizer(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run_dir = trained("text", tmp_path_factory)
    run = load_run(run_dir)
    files = sorted((run_dir.parent / "aclImdb" / "test").rglob("*.txt"))  # the test split order
    (tmp_path / "reviews.txt").write_text("\n".join(f.read_text() for f in files) + "\n\n")
    predict_file(run, tmp_path / "reviews.txt", tmp_path / "out.csv")
    got = pd.read_csv(tmp_path / "out.csv")
    assert list(got.columns) == ["line", "predicted", "prob_neg", "prob_pos"]
    assert got["line"].tolist() == list(range(1, len(files) + 1))  # the blank line is skipped
    test = rebuilt(run).test
    p = torch.sigmoid(torch.cat([outputs_of(run, ids[None]) for ids in test.ids])[:, 0])
    assert np.allclose(got["prob_pos"], p.numpy(), atol=1e-5)
    assert np.allclose(got["prob_neg"] + got["prob_pos"], 1, atol=1e-6)
    pd.DataFrame({"body": [f.read_text() for f in files]}).to_csv(tmp_path / "r.csv", index=False)
    predict_main([str(run_dir), f"input={tmp_path / 'r.csv'}", "text_column=body"])
    from_csv = pd.read_csv(run_dir / "predictions.csv")
    assert from_csv["row"].tolist() == got["line"].tolist()
    assert np.allclose(from_csv["prob_pos"], got["prob_pos"], atol=1e-6)


@pytest.mark.slow
def test_predict_command_on_a_folder_of_images(tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir = trained("folder", tmp_path_factory)
    folder = run_dir.parent / "train"
    result = run_command("dltrain-predict", run_dir, f"input={folder}", timeout=120)
    assert result.returncode == 0, result.stderr
    got = pd.read_csv(run_dir / "predictions.csv").set_index("file")
    assert len(got) == 12 and "cat/0.png" in got.index  # notes.txt is not an image
    run = load_run(run_dir)
    test = rebuilt(run).test
    x = torch.stack([test[i][0] for i in range(len(test))])
    p = outputs_of(run, x).softmax(1)[:, 1].numpy()
    names = [f.relative_to(folder).as_posix() for f in test.files]
    assert np.allclose(got.loc[names, "prob_dog"], p, atol=1e-5)


def test_predict_mistakes_are_one_line_errors(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture
) -> None:
    digits = str(trained("digits", tmp_path_factory))
    assert "input=PATH is required" in fail(predict_main, capsys, digits)
    (tmp_path / "notes.txt").write_text("a,b\n1,2\n")
    err = fail(predict_main, capsys, digits, f"input={tmp_path / 'notes.txt'}")
    assert (
        err.startswith("dltrain-predict: input: ") and "lacks the feature columns pixel_0_0" in err
    )
    folder = str(trained("folder", tmp_path_factory))
    err = fail(predict_main, capsys, folder, f"input={tmp_path}")
    assert "no images" in err and err.count("\n") == 1
