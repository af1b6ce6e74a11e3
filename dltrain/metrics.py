"""Task metrics computed on a whole split from the model's raw outputs."""

from __future__ import annotations

import numpy as np
import torch


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
    from sklearn import metrics as skm  # slow to import: only once there are outputs to score

    if task in ("regression", "reconstruction"):
        pred, true = outputs.float().cpu().numpy(), targets.float().cpu().numpy()
        if task == "reconstruction":
            pred, true = pred.reshape(-1), true.reshape(-1)
        mse = skm.mean_squared_error(true, pred)
        return {
            "mse": float(mse),
            "rmse": float(np.sqrt(mse)),
            "mae": float(skm.mean_absolute_error(true, pred)),
            "r2": float(skm.r2_score(true, pred)),
        }
    true = targets.cpu().numpy()
    pred = predictions(outputs, task).cpu().numpy()
    prob = probabilities(outputs, task).cpu().numpy()
    average = "binary" if task == "binary" else "macro"
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        true, pred, average=average, zero_division=0
    )
    result = {
        "acc": float(skm.accuracy_score(true, pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }
    num_classes = 2 if task == "binary" else prob.shape[1]
    if len(np.unique(true)) == num_classes:
        multi = "ovr" if task == "multiclass" else "raise"
        result["auc"] = float(skm.roc_auc_score(true, prob, multi_class=multi))
    return result


def confusion_matrix(
    outputs: torch.Tensor, targets: torch.Tensor, task: str, num_classes: int
) -> list[list[int]]:
    """Rows are true classes, columns predicted classes."""
    from sklearn import metrics as skm

    pred = predictions(outputs, task).cpu().numpy()
    return skm.confusion_matrix(
        targets.cpu().numpy(), pred, labels=list(range(num_classes))
    ).tolist()
