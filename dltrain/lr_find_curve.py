"""The range test's curve: lr_find.csv, lr_find.png and the same in TensorBoard."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dltrain.files import save_text_atomic
from dltrain.range_test import RangeTest
from dltrain.tracking import figures


def plot(result: RangeTest, title: str) -> Any:
    """Loss and smoothed loss against the lr (log scale), the fall shaded, the suggestion marked."""
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(result.lrs, result.losses, color="0.75", linewidth=1, label="loss (each step)")
    ax.plot(result.lrs, result.smoothed, color="C0", label="smoothed loss")
    if result.falling:
        ax.axvspan(*result.falling, color="C2", alpha=0.12, label="smoothed loss falls")
    if result.suggestion:
        ax.axvline(
            result.suggestion,
            color="C3",
            linestyle="--",
            label=f"suggested {result.suggestion:.1e}",
        )
    finite = [v for v in result.smoothed if math.isfinite(v)]
    lowest = min([v for v in result.losses if math.isfinite(v)] + finite)
    if finite:  # an exploding last step would flatten the rest of the curve
        top = max(finite)
        ax.set_ylim(lowest - 0.05 * (top - lowest), top + 0.1 * (top - lowest) + 1e-12)
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def save_curve(result: RangeTest, folder: Path, built: Any, title: str) -> Path:
    """lr_find.csv, lr_find.png and the same in TensorBoard (scalars and the figure)."""
    columns = (result.lrs, result.losses, result.smoothed)
    rows = enumerate(zip(*columns, strict=True))
    lines = [f"{i},{lr:.6e},{loss:.6g},{smooth:.6g}" for i, (lr, loss, smooth) in rows]
    save_text_atomic(
        "\n".join(["step,lr,loss,smoothed_loss", *lines]) + "\n", folder / "lr_find.csv"
    )
    for step, (lr, loss, smooth) in enumerate(zip(*columns, strict=True)):
        values = {"lr_find/lr": lr, "lr_find/loss": loss, "lr_find/smoothed_loss": smooth}
        built.tracker.scalars({k: v for k, v in values.items() if math.isfinite(v)}, step)
    png = folder / "lr_find.png"
    built.tracker.figure("lr_find", plot(result, title), png=png)
    return png
