"""What a run draws beyond scalars: per-epoch images and the figures of the final test.

Figures go to TensorBoard; the ones people look for outside it (ROC curve, predicted vs actual,
latent space) are also saved as PNG files in the run dir.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from dltrain.callback import Callback
from dltrain.data.batches import samples
from dltrain.metric_math import roc_auc, roc_curve
from dltrain.metrics import confusion_matrix, predictions, probabilities
from dltrain.modalities.lookup import modality_of
from dltrain.tracking.figures import markdown_matrix, pyplot, shortened

if TYPE_CHECKING:
    from dltrain.built_run import BuiltRun, FitState

RECONSTRUCTIONS = 8  # fixed test images shown with their reconstructions every epoch
LATENT_POINTS = 2000  # test samples sent to the embedding projector
MISCLASSIFIED = 32  # test pictures shown with their true and predicted class (8 a row)
NAME_LENGTH = 10  # characters of a class name in a tile's title

PNG_FILES = ("roc_curve.png", "predicted_vs_actual.png", "latent_space.png")  # a run may draw


class EpochVisuals(Callback):
    """After each epoch (rank 0): weight histograms when due; for autoencoders of pictures,
    originals above their reconstructions."""

    def on_epoch_end(self, run: BuiltRun, state: FitState, metrics: dict[str, float]) -> None:
        every = run.trainer.histogram_every_n_epochs
        if every and state.epoch % every == 0:
            run.tracker.histograms(run.model, state.step)
        if shows_reconstructions(run):
            reconstructions(run, state.step)


def shows_reconstructions(built: BuiltRun) -> bool:
    """Whether the run reconstructs pictures (an autoencoder of images)."""
    return built.context.reconstruct and modality_of(built.data.meta).shows_images


def test_visuals(
    built: BuiltRun, outputs: torch.Tensor, targets: torch.Tensor, step: int
) -> dict[str, list[list[int]]]:
    """The figures of the test split for the run's task; returns confusion matrices by split."""
    task = built.data.meta.task
    if task == "regression":
        png = built.run_dir / "predicted_vs_actual.png"
        built.tracker.regression_figure("test/predicted_vs_actual", outputs, targets, step, png)
        return {}
    if task == "reconstruction":
        latent_space(built, step)
        return {}
    matrix = confusion_matrix(outputs, targets, task, built.data.meta.num_classes)
    classification_visuals(built, outputs, targets, matrix, step)
    return {"test": matrix}


def classification_visuals(
    built: BuiltRun,
    outputs: torch.Tensor,
    targets: torch.Tensor,
    matrix: list[list[int]],
    step: int,
) -> None:
    """The confusion matrix as text and figure; for pictures, misclassified test ones titled."""
    meta, tracker, modality = built.data.meta, built.tracker, modality_of(built.data.meta)
    labels = class_labels(built)
    tracker.text("test/confusion_matrix", markdown_matrix(matrix, labels), step)
    tracker.confusion_figure("test/confusion_matrix_plot", matrix, labels, step)
    predicted = predictions(outputs, meta.task)
    wrong = (predicted != targets).nonzero().flatten()[:MISCLASSIFIED].tolist()
    if not modality.shows_images or not wrong:
        return
    pairs = [(labels[int(targets[i])], labels[int(predicted[i])]) for i in wrong]
    captions = [
        f"true {shortened(true, NAME_LENGTH)}\npred {shortened(guess, NAME_LENGTH)}"
        for true, guess in pairs
    ]
    pictures = modality.pictures(samples(built.data.test, wrong))
    tracker.labelled_images("test/misclassified", pictures, captions, step)
    lines = [f"{n}. true {true}, predicted {guess}" for n, (true, guess) in enumerate(pairs, 1)]
    tracker.text("test/misclassified", "\n".join(lines), step)


def roc_figure(
    built: BuiltRun, scored: dict[str, tuple[torch.Tensor, torch.Tensor]], step: int
) -> None:
    """ROC curves of a binary task, one per split ({split: (outputs, targets)}), with their AUC."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for split, (outputs, targets) in scored.items():
        if len(targets.unique()) < 2:
            continue  # undefined without both classes
        scores = probabilities(outputs, "binary").numpy()
        fpr, tpr = roc_curve(targets.numpy(), scores)
        ax.plot(fpr, tpr, label=f"{split} (AUC {roc_auc(targets.numpy(), scores):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    ax.legend(loc="lower right")
    fig.tight_layout()
    built.tracker.figure("roc_curve", fig, step, built.run_dir / "roc_curve.png")


@torch.no_grad()
def reconstructions(built: BuiltRun, step: int) -> None:
    """A grid: fixed test pictures in the top row, the model's reconstructions below."""
    dataset, modality = evaluation_split(built), modality_of(built.data.meta)
    x = built.context.inputs(
        samples(dataset, list(range(min(RECONSTRUCTIONS, len(dataset))))), False
    )
    model = built.evaluated
    model.eval()
    rebuilt = built.context.forward(model, x)
    pictures = modality.pictures(torch.cat([x.float(), rebuilt]))
    built.tracker.images("reconstruction/test", pictures, step, len(x))


@torch.no_grad()
def latent_space(built: BuiltRun, step: int) -> None:
    """Latent codes of test samples with their labels: embedding projector plus a scatter PNG."""
    dataset = evaluation_split(built)
    index = list(range(min(LATENT_POINTS, len(dataset))))
    stored = samples(dataset, index)
    model = built.evaluated
    model.eval()
    codes = model.encode(built.context.inputs(stored, False)).float().cpu()
    labels = [dataset[i][1] for i in index]
    names = class_labels(built)
    text = [names[int(y)] if names else f"{float(y):g}" for y in labels]
    modality = modality_of(built.data.meta)
    images = modality.pictures(stored) if modality.shows_images else None
    metadata = {"label": text, "sample": [str(i) for i in index]}  # label first: colour by it
    built.tracker.embedding("latent", codes, metadata, images, step)
    if codes.shape[1] not in (2, 3):
        return  # the projector's PCA / t-SNE shows other sizes
    plt = pyplot()
    fig = plt.figure(figsize=(10, 9))
    ax = fig.add_subplot(projection="3d" if codes.shape[1] == 3 else None)
    colours = torch.tensor([float(y) for y in labels])
    points = ax.scatter(*codes.T.numpy(), c=colours.numpy(), cmap="tab10", s=6)
    if names:
        handles = points.legend_elements()[0]
        ax.legend(handles, names[: len(handles)], fontsize=10, loc="upper left")
    ax.set_title(f"latent codes of {len(index)} test samples", fontsize=13)
    built.tracker.figure("latent_space", fig, step, built.run_dir / "latent_space.png", dpi=150)


def evaluation_split(built: BuiltRun) -> Dataset:
    """The split that pictures are drawn from: test, else val, else train."""
    data = built.data
    return next(ds for ds in (data.test, data.val, data.train) if ds is not None)


def class_labels(built: BuiltRun) -> list[str] | None:
    """Class names for display (numbers when the dataset has none); None for regression."""
    meta = built.data.meta
    if not meta.num_classes:
        return None
    return meta.class_names or [str(i) for i in range(meta.num_classes)]
