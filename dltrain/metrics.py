"""Task metrics computed on a whole split from the model's raw outputs."""

from __future__ import annotations

import numpy as np
import torch

from dltrain import metric_math


def metric_names(task: str) -> list[str]:
    """Names of the metrics compute_metrics gives for a task (plus the loss)."""
    if task in ("regression", "reconstruction"):
        return ["loss", "mse", "rmse", "mae", "r2"]
    return ["loss", "acc", "precision", "recall", "f1", "auc"]


def probabilities(outputs: torch.Tensor, task: str) -> torch.Tensor:
    """Class probabilities (N, classes) for multiclass; P(positive) (N,) for binary."""
    outputs = outputs.float()
    if task == "binary":
        return (
            torch.sigmoid(outputs.squeeze(-1))
            if outputs.shape[-1] == 1
            else outputs.softmax(-1)[:, 1]
        )
    return outputs.softmax(-1)


def predictions(outputs: torch.Tensor, task: str) -> torch.Tensor:
    """Predicted class indices (classification) or values (regression)."""
    if task in ("regression", "reconstruction"):
        return outputs.float()
    if task == "binary":
        return (probabilities(outputs, task) >= 0.5).long()
    return outputs.argmax(-1)


def compute_metrics(outputs: torch.Tensor, targets: torch.Tensor, task: str) -> dict[str, float]:
    """Regression: mse, rmse, mae, r2. Classification: acc, precision, recall, f1, auc.

    Reconstruction is scored like regression over every element (pixel, feature) at once.
    Binary precision/recall/F1 are of the positive class; multiclass ones are macro averages.
    ROC-AUC is omitted when a split lacks a class (it is undefined there).
    """
    if task in ("regression", "reconstruction"):
        pred, true = outputs.float().cpu().numpy(), targets.float().cpu().numpy()
        if task == "reconstruction":
            pred, true = pred.reshape(-1), true.reshape(-1)
        return metric_math.regression_scores(true, pred)
    true = targets.cpu().numpy()
    pred = predictions(outputs, task).cpu().numpy()
    prob = probabilities(outputs, task).cpu().numpy()
    result = metric_math.classification_scores(true, pred, binary=task == "binary")
    num_classes = 2 if task == "binary" else prob.shape[1]
    if len(np.unique(true)) == num_classes:
        auc = metric_math.roc_auc if task == "binary" else metric_math.ovr_roc_auc
        result["auc"] = auc(true, prob)
    return result


def confusion_matrix(
    outputs: torch.Tensor, targets: torch.Tensor, task: str, num_classes: int
) -> list[list[int]]:
    """Rows are true classes, columns predicted classes."""
    pred = predictions(outputs, task).cpu().numpy()
    return metric_math.confusion_counts(targets.cpu().numpy(), pred, num_classes).tolist()
