"""The scalar curves of several runs overlaid, read from their metrics.jsonl (TensorBoard event
files for runs from before it)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from dltrain.tracking import metrics_log

EPOCH_TAGS = {"train/loss": "train/epoch_loss"}  # stands in when a short run logged no steps


def loss_curves_figure(
    runs: Mapping[str, str | Path], path: str | Path, tag: str | Sequence[str] = "train/loss"
) -> Path | None:
    """Overlay scalar `tag` of all runs (label -> run dir), a subplot per tag; None: not logged."""
    tags = [tag] if isinstance(tag, str) else list(tag)
    read = {
        label: scalars(run_dir, [*tags, *EPOCH_TAGS.values()]) for label, run_dir in runs.items()
    }
    curves = {}  # tag -> {label: (steps, values)}
    for name in tags:
        for logged in (name, EPOCH_TAGS.get(name, name)):
            by_run = {label: xy[logged] for label, xy in read.items() if logged in xy}
            if by_run:
                curves[logged] = by_run
                break
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only; imported here because it is slow
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
    for ax, (name, by_run) in zip(axes[0], curves.items(), strict=True):
        for label, (steps, values) in by_run.items():
            ax.plot(steps, values, label=label, linewidth=1)
        ax.set(title=name, xlabel="step", ylabel=name)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    finally:  # a figure left open on a failed save stays in pyplot's memory
        plt.close(fig)
    return Path(path)


def scalars(run_dir: str | Path, tags: Sequence[str]) -> dict[str, tuple[list[int], list[float]]]:
    """(steps, values) of each tag the run logged, every point kept."""
    if (Path(run_dir) / metrics_log.FILE).is_file():
        return metrics_log.curves(Path(run_dir), list(tags))
    return event_scalars(run_dir, tags)


def event_scalars(
    run_dir: str | Path, tags: Sequence[str]
) -> dict[str, tuple[list[int], list[float]]]:
    """(steps, values) of each tag the run's TensorBoard events hold."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # not "No path found after" each
    events = Path(run_dir) / "tensorboard"
    if not events.is_dir():
        return {}
    accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
    accumulator.Reload()
    logged = set(accumulator.Tags()["scalars"])
    points = {t: accumulator.Scalars(t) for t in tags if t in logged}
    return {t: ([e.step for e in ev], [e.value for e in ev]) for t, ev in points.items()}
