"""The figures a run draws with matplotlib (Agg: files only, imported on first use)."""

from __future__ import annotations

from typing import Any

import torch


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def confusion(matrix: list[list[int]], labels: list[str]) -> Any:
    """A confusion matrix as a heat-map figure (rows true, columns predicted)."""
    plt = pyplot()
    size = min(2 + 0.5 * len(labels), 12)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(labels, rotation=90)
    ax.set_yticklabels(labels)
    if len(labels) <= 20:
        top = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                color = "white" if count > top / 2 else "black"
                ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    return fig


def predicted_vs_actual(predicted: torch.Tensor, actual: torch.Tensor) -> Any:
    """Predicted and actual values (first target) in split order and as a scatter."""
    plt = pyplot()
    pred, true = predicted[:, 0].float().numpy(), actual[:, 0].float().numpy()
    fig, (series, scatter) = plt.subplots(1, 2, figsize=(10, 4))
    series.plot(true, label="actual")
    series.plot(pred, label="predicted", linestyle="--")
    series.set(xlabel="sample (split order)", ylabel="target")
    series.legend()
    scatter.scatter(true, pred, s=6)
    low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    scatter.plot([low, high], [low, high], color="grey", linewidth=1)
    scatter.set(xlabel="actual", ylabel="predicted")
    fig.tight_layout()
    return fig


def markdown_matrix(matrix: list[list[int]], labels: list[str]) -> str:
    """A confusion matrix as a markdown table (rows true, columns predicted)."""
    head = "| true \\ pred | " + " | ".join(labels) + " |"
    rule = "|---" * (len(labels) + 1) + "|"
    pairs = zip(labels, matrix, strict=True)
    rows = [f"| {label} | " + " | ".join(map(str, row)) + " |" for label, row in pairs]
    return "\n".join([head, rule, *rows])
