"""The task metrics are numpy, not scikit-learn, with scikit-learn's definitions: random cases
(ties, absent classes, imbalance, constant targets, float32) agree with sklearn.metrics."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from dltrain import metric_math
from dltrain.metrics import compute_metrics, confusion_matrix, predictions, probabilities

from .helpers import PYTHON, checkout_env

CASES = 60


def close(tol: float) -> dict[str, float]:
    """pytest.approx options for a tolerance (relative and absolute)."""
    return {"rel": tol, "abs": tol, "nan_ok": True}


def labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """n imbalanced labels of k classes, often with some classes absent."""
    return rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 0.4)))


def tied_logits(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Logits on a coarse grid (many ties), some classes pushed down so they are never predicted."""
    logits = rng.integers(-2, 3, size=(n, k)).astype(np.float32)
    logits[:, rng.random(k) < 0.3] -= 10
    return logits


def sklearn_scores(outputs: torch.Tensor, targets: torch.Tensor, task: str) -> dict[str, float]:
    """What compute_metrics gave when it called scikit-learn (the reference)."""
    if task in ("regression", "reconstruction"):
        pred, true = outputs.float().numpy(), targets.float().numpy()
        if task == "reconstruction":
            pred, true = pred.reshape(-1), true.reshape(-1)
        mse = skm.mean_squared_error(true, pred)
        return {
            "mse": mse,
            "rmse": float(np.sqrt(mse)),
            "mae": skm.mean_absolute_error(true, pred),
            "r2": skm.r2_score(true, pred) if len(true) > 1 else float("nan"),
        }
    true, pred = targets.numpy(), predictions(outputs, task).numpy()
    prob = probabilities(outputs, task).numpy()
    average = "binary" if task == "binary" else "macro"
    p, r, f, _ = skm.precision_recall_fscore_support(true, pred, average=average, zero_division=0)
    result = {"acc": skm.accuracy_score(true, pred), "precision": p, "recall": r, "f1": f}
    if len(np.unique(true)) == (2 if task == "binary" else prob.shape[1]):
        multi = "ovr" if task == "multiclass" else "raise"
        result["auc"] = skm.roc_auc_score(true, prob, multi_class=multi)
    return result


def assert_same(mine: dict[str, float], reference: dict[str, float], tol: float) -> None:
    """Same metric names, every value a python float within tol of the reference."""
    assert sorted(mine) == sorted(reference)
    assert all(type(v) is float for v in mine.values()), mine
    for name, value in reference.items():
        assert mine[name] == pytest.approx(float(value), **close(tol)), name


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_classification_metrics_match_sklearn(task: str) -> None:
    rng = np.random.default_rng(21)
    for _ in range(CASES):
        n, k = int(rng.integers(1, 300)), 2 if task == "binary" else int(rng.integers(3, 11))
        true = torch.from_numpy(labels(rng, n, k))
        logits = torch.from_numpy(tied_logits(rng, n, k))
        if task == "binary" and rng.random() < 0.5:
            logits = logits[:, :1] / 2  # one logit: sigmoid
        if task == "binary" and rng.random() < 0.3:
            true = true.float()  # BCE targets
        mine = compute_metrics(logits, true, task)
        assert_same(mine, sklearn_scores(logits, true, task), 1e-9)
        cm = confusion_matrix(logits, true, task, k)
        assert cm == skm.confusion_matrix(true, predictions(logits, task), labels=range(k)).tolist()


@pytest.mark.parametrize("task", ["regression", "reconstruction"])
def test_regression_metrics_match_sklearn_on_float32(task: str) -> None:
    rng = np.random.default_rng(22)
    for case in range(CASES):
        n = int(rng.integers(1, 200))
        shape = (n, 2, 3) if task == "reconstruction" else [(n,), (n, 1), (n, 3)][case % 3]
        true = rng.normal(rng.normal(0, 10), rng.uniform(0.1, 5), size=shape).astype(np.float32)
        if case % 5 == 0:
            true[:] = rng.integers(-8, 8) / 4  # constant target (its mean is exact)
        pred = (true + rng.normal(0, rng.uniform(0, 3), size=shape)).astype(np.float32)
        if case % 10 == 0:
            pred = true.copy()  # perfect
        outputs, targets = torch.from_numpy(pred), torch.from_numpy(true)
        mine = compute_metrics(outputs, targets, task)
        assert_same(mine, sklearn_scores(outputs, targets, task), 1e-6)


def test_regression_scores_match_sklearn_on_float64() -> None:
    rng = np.random.default_rng(23)
    for case in range(CASES):
        n = int(rng.integers(2, 200))
        true = rng.normal(0, rng.uniform(0.1, 100), size=(n, 1 + case % 4))
        if case % 4 == 0:
            true[:, 0] = rng.integers(-8, 8) / 4
        pred = true + rng.normal(0, rng.uniform(0, 3), size=true.shape) * (case % 7 != 0)
        mine = metric_math.regression_scores(true, pred)
        mse = skm.mean_squared_error(true, pred)
        reference = {
            "mse": mse,
            "rmse": np.sqrt(mse),
            "mae": skm.mean_absolute_error(true, pred),
            "r2": skm.r2_score(true, pred),
        }
        assert_same(mine, reference, 1e-9)


def test_r2_of_a_constant_target_is_one_if_perfect_else_zero() -> None:
    true = np.full(7, 0.1)  # its float mean is not exactly 0.1: sklearn then gives about -1e33
    assert metric_math.regression_scores(true, true)["r2"] == 1.0
    assert metric_math.regression_scores(true, true + 0.5)["r2"] == 0.0
    assert np.isnan(metric_math.regression_scores(true[:1], true[:1] + 1)["r2"])  # one sample


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_roc_curve_and_auc_match_sklearn_with_ties(dtype: type) -> None:
    rng = np.random.default_rng(24)
    for _ in range(CASES):
        n = int(rng.integers(2, 300))
        true = (rng.random(n) < rng.uniform(0.02, 0.98)).astype(int)
        true[rng.choice(n, 2, replace=False)] = [0, 1]  # both classes present
        levels = int(rng.integers(2, 50))
        scores = (rng.integers(0, levels, n) / levels).astype(dtype)
        fpr, tpr = metric_math.roc_curve(true, scores)
        sk_fpr, sk_tpr, _ = skm.roc_curve(true, scores)
        np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-12)
        np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-12)
        auc = metric_math.roc_auc(true, scores)
        assert type(auc) is float
        assert auc == pytest.approx(skm.roc_auc_score(true, scores), abs=1e-9)
        assert auc == pytest.approx(skm.auc(fpr, tpr), abs=1e-9)


def test_one_vs_rest_macro_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(25)
    for _ in range(CASES):
        n, k = int(rng.integers(12, 300)), int(rng.integers(3, 11))
        true = labels(rng, n, k)
        true[:k] = rng.permutation(k)  # every class present, as dltrain requires for AUC
        counts = rng.integers(1, 4, size=(n, k)).astype(float)
        prob = counts / counts.sum(1, keepdims=True)
        mine = metric_math.ovr_roc_auc(true, prob)
        reference = skm.roc_auc_score(true, prob, multi_class="ovr")
        assert mine == pytest.approx(reference, abs=1e-9)


def test_precision_recall_f1_average_over_the_labels_in_true_or_predicted() -> None:
    true, pred = np.array([0, 0, 1, 1]), np.array([0, 3, 1, 1])  # 3 is predicted, never true
    mine = metric_math.classification_scores(true, pred, binary=False)
    p, r, f, _ = skm.precision_recall_fscore_support(true, pred, average="macro", zero_division=0)
    assert (mine["precision"], mine["recall"], mine["f1"]) == pytest.approx((p, r, f), abs=1e-12)
    assert mine["precision"] == pytest.approx((1 + 1 + 0) / 3)  # labels 0, 1, 3


IMPORTS = """
import json, sys, torch
from dltrain.metrics import compute_metrics, confusion_matrix
logits, targets = torch.randn(40, 3), torch.arange(40) % 3
scores = [compute_metrics(logits, targets, "multiclass"), confusion_matrix(logits, targets,
    "multiclass", 3), compute_metrics(logits[:, :1], targets % 2, "binary"),
    compute_metrics(logits, logits + 1, "regression")]
print(json.dumps({"sklearn": sorted(m for m in sys.modules if m.split(".")[0] == "sklearn"),
    "auc": scores[0]["auc"]}))
"""


def test_scoring_a_split_does_not_import_sklearn() -> None:
    result = subprocess.run(
        [PYTHON, "-c", IMPORTS], capture_output=True, text=True, env=checkout_env(), timeout=120
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["sklearn"] == [] and 0 <= found["auc"] <= 1
