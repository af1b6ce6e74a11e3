"""The figures a run draws with matplotlib (Agg: files only, imported on first use)."""

from __future__ import annotations

from typing import Any

import torch

MAX_COUNTED_CLASSES = 30  # a confusion matrix shows counts up to this many classes, colour beyond


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def confusion(matrix: list[list[int]], labels: list[str]) -> Any:
    """A confusion matrix as a heat-map figure (rows true, columns predicted), sized by class count.

    TensorBoard shows an image about 400 px wide until enlarged, so what keeps a count readable is
    its size relative to the figure: cells of 0.6 in with counts up to 14 pt while they fit in
    16 in, smaller after that, and colour only beyond 30 classes.
    """
    plt = pyplot()
    n = len(labels)
    side = min(max(4.0, 0.6 * n + 2), 16.0)  # inches; about 2 go to the tick labels
    cell = (side - 2) / n * 72  # points
    top = max(max(row) for row in matrix) or 1
    digits = max(len(str(top)), 2)
    count_size = min(14.0, 0.8 * cell / (0.6 * digits))  # a digit is about 0.6 em wide
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(n), yticks=range(n))
    tick_size = min(11.0, max(5.0, 0.7 * cell))
    ax.set_xlabel("predicted", fontsize=12)
    ax.set_ylabel("true", fontsize=12)
    short = [shortened(label, 14) for label in labels]
    ax.set_xticklabels(short, rotation=90, fontsize=tick_size)
    ax.set_yticklabels(short, fontsize=tick_size)
    if n <= MAX_COUNTED_CLASSES:
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                color = "white" if count > top / 2 else "black"
                ax.text(j, i, str(count), ha="center", va="center", color=color, size=count_size)
    fig.tight_layout()
    return fig


def labelled_pictures(pictures: torch.Tensor, captions: list[str], columns: int = 8) -> Any:
    """Pictures (N, C, H, W floats in [0, 1]) in a grid, each titled with its caption."""
    plt = pyplot()
    columns = min(columns, len(pictures))
    rows = -(-len(pictures) // columns)
    lines = [line for caption in captions for line in caption.splitlines()]
    longest = max((len(line) for line in lines), default=1) or 1
    # tiles of 1 in; titles as large as fit a tile's width (a letter is about 0.6 em wide)
    title_size = min(14.0, 72 / (0.6 * longest))
    title_lines = max(caption.count("\n") for caption in captions) + 1
    title_height = title_lines * title_size / 72 + 0.1  # inches
    height = rows * (1.0 + title_height) + 0.1
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, height), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, caption in zip(axes.flat, pictures, captions, strict=False):
        image = picture.permute(1, 2, 0).float().clamp(0, 1).numpy()
        grey = image.shape[2] == 1
        ax.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None, vmin=0, vmax=1)
        ax.set_title(caption, fontsize=title_size, linespacing=1.0, pad=2)
    fig.subplots_adjust(
        left=0.01,
        right=0.99,
        bottom=0.05 / height,
        top=1 - title_height / height,
        wspace=0.1,
        hspace=title_height,  # hspace: of a 1 in tile, so a title's height
    )
    return fig


def shortened(name: str, length: int) -> str:
    """`name` cut to `length` characters (an ellipsis marks the cut)."""
    return name if len(name) <= length else name[: length - 1] + "\u2026"


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
