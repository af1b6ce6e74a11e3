"""Task metrics in numpy, with scikit-learn's definitions (importing sklearn costs a second)."""

from __future__ import annotations

import numpy as np


def regression_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """mse, rmse, mae and r2, each the mean over output columns (sklearn's uniform_average)."""
    true = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    mse = float(((true - pred) ** 2).mean(axis=0).mean())
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.abs(pred - true).mean(axis=0).mean()),
        "r2": r2_score(true, pred),
    }


def r2_score(true: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination of (N, outputs) arrays, averaged over the outputs.

    A constant column scores 1.0 if predicted exactly, else 0.0 (sklearn's force_finite); NaN
    under two samples. Constant columns are found by value, as their float mean may be inexact.
    """
    if len(true) < 2:
        return float("nan")
    residual = ((true - pred) ** 2).sum(axis=0)
    spread = ((true - true.mean(axis=0)) ** 2).sum(axis=0)
    spread[np.ptp(true, axis=0) == 0] = 0.0
    scores = np.ones(true.shape[1])
    valid = (spread != 0) & (residual != 0)
    scores[valid] = 1 - residual[valid] / spread[valid]
    scores[(residual != 0) & (spread == 0)] = 0.0
    return float(scores.mean())


def classification_scores(true: np.ndarray, pred: np.ndarray, binary: bool) -> dict[str, float]:
    """acc, precision, recall, f1: of class 1 if binary, else macro over labels in true or pred.

    A ratio with nothing to count (a class never predicted, or absent) is 0 (zero_division=0).
    """
    true, pred = np.asarray(true).reshape(-1), np.asarray(pred).reshape(-1)
    labels = np.array([1]) if binary else np.union1d(true, pred)
    hit = true == pred
    true_sum = _counts(true, labels)
    pred_sum = _counts(pred, labels)
    tp = _counts(true[hit], labels)
    return {
        "acc": float(hit.mean()),
        "precision": float(_ratio(tp, pred_sum).mean()),
        "recall": float(_ratio(tp, true_sum).mean()),
        "f1": float(_ratio(2 * tp, true_sum + pred_sum).mean()),
    }


def _counts(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How often each of the (sorted) labels occurs in values."""
    values = values[np.isin(values, labels)]
    return np.bincount(np.searchsorted(labels, values), minlength=len(labels))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    safe = np.where(denominator == 0, 1, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def confusion_counts(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes) counts: rows true, columns predicted; labels outside 0..n-1 left out."""
    labels = np.arange(num_classes)
    true, pred = np.asarray(true).reshape(-1), np.asarray(pred).reshape(-1)
    known = np.isin(true, labels) & np.isin(pred, labels)
    cells = true[known].astype(np.int64) * num_classes + pred[known].astype(np.int64)
    return np.bincount(cells, minlength=num_classes**2).reshape(num_classes, num_classes)


def roc_curve(true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates (class 1 positive), as sklearn.metrics.roc_curve gives them.

    One point per distinct score (ties move together), collinear points dropped, starting at
    (0, 0); NaN rates where a class is absent.
    """
    positive = np.asarray(true).reshape(-1) == 1
    scores = np.asarray(scores).reshape(-1)
    order = np.argsort(scores, kind="stable")[::-1]
    scores, positive = scores[order], positive[order]
    last_of_ties = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tps = np.cumsum(positive, dtype=np.float64)[last_of_ties]
    fps = 1 + last_of_ties.astype(np.float64) - tps
    if len(fps) > 2:
        corners = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps = fps[corners], tps[corners]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(len(fps), np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(len(tps), np.nan)
    return fpr, tpr


def roc_auc(true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; tied scores count half), class 1 positive."""
    fpr, tpr = roc_curve(true, scores)
    return float((np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0).sum())  # np.trapezoid (numpy 2)


def ovr_roc_auc(true: np.ndarray, prob: np.ndarray) -> float:
    """Macro one-vs-rest AUC: mean over columns c of the AUC of (true == c) scored by prob[:, c]."""
    true = np.asarray(true).reshape(-1)
    return float(np.mean([roc_auc(true == c, prob[:, c]) for c in range(prob.shape[1])]))
