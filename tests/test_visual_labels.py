"""TensorBoard images people can read: labelled misclassified tiles, confusion matrices sized by
class count, projector metadata with the label first, a large latent-space PNG."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dltrain.tracking import figures
from dltrain.train import run

from .helpers import compose_config, events, make_mnist

ONE_EPOCH = ["trainer.epochs=1", "trainer.seed=0", "trainer.device=cpu"]
TENSORBOARD_CARD = 400  # about how wide TensorBoard shows an image before it is enlarged (px)


def rendered(fig: object) -> np.ndarray:
    """A figure's RGB pixels as TensorBoard gets them (the figure's own size and dpi)."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    figures.pyplot().close(fig)
    return pixels


def event_image(run_dir: Path, tag: str) -> Image.Image:
    """The last image logged under `tag` in a run's TensorBoard events."""
    return Image.open(io.BytesIO(events(run_dir).Images(tag)[-1].encoded_image_string))


def test_each_misclassified_tile_is_titled_with_its_true_and_predicted_class() -> None:
    pictures = torch.rand(5, 3, 32, 32)  # colour pictures; grey ones are drawn the same way
    captions = [f"true cat\npred {name}" for name in ("dog", "ship", "frog", "bird", "deer")]
    fig = figures.labelled_pictures(pictures, captions)
    tiles = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in tiles] == captions
    boxes = [ax.get_window_extent() for ax in tiles]
    labelled = rendered(fig)
    spaces = [re.sub(r"\S", " ", caption) for caption in captions]  # the same layout, no text
    blank = rendered(figures.labelled_pictures(pictures, spaces))
    height = labelled.shape[0]
    for box in boxes:  # pixel rows count from the top, matplotlib's from the bottom
        top, bottom = height - int(box.y1), height - int(box.y0)
        left, right = int(box.x0) + 1, int(box.x1) - 1
        tile = slice(top + 1, bottom - 1), slice(left, right)
        assert np.array_equal(labelled[tile], blank[tile])  # the picture itself is untouched
        band = slice(max(0, top - 30), top), slice(left, right)
        assert (labelled[band] != blank[band]).any()  # its caption is drawn just above it


def test_confusion_counts_stay_readable_as_classes_grow() -> None:
    def counts(n: int) -> list[list[int]]:
        return [[1000 + i if i == j else 7 for j in range(n)] for i in range(n)]

    small = figures.confusion(counts(2), ["no", "yes"])
    ten = figures.confusion(counts(10), [str(i) for i in range(10)])
    many = figures.confusion(counts(40), [f"class {i}" for i in range(40)])
    widths = [fig.get_size_inches()[0] for fig in (small, ten, many)]
    assert 4 <= widths[0] < widths[1] < widths[2]  # the figure grows with the class count
    numbers = [t for t in ten.axes[0].texts if t.get_text().isdigit()]
    assert len(numbers) == 100
    # drawn at TensorBoard's card width, a count is at least 9 px tall
    for text in numbers:
        assert text.get_fontsize() / (widths[1] * 72) * TENSORBOARD_CARD >= 9
    assert not many.axes[0].texts  # 1,600 cells: colour only, no unreadable numbers
    for fig in (small, ten, many):
        figures.pyplot().close(fig)


def test_an_image_run_logs_misclassified_tiles_as_a_labelled_figure(tmp_path: Path) -> None:
    root = make_mnist(tmp_path / "data", n=100)
    cfg = compose_config(
        *ONE_EPOCH, "model=cnn", "dataset=mnist", f"dataset.data_dir={root}", "model.channels=[2,4]"
    )
    summary = run(cfg, tmp_path / "run")
    assert summary["metrics"]["test/acc"] < 1.0  # one epoch of 100 images: some are wrong
    grid = event_image(tmp_path / "run", "test/misclassified")
    # the bare grid of (at most) the 33 test images, 28 px tiles 2 px apart, is 182 px wide
    assert grid.width >= 600  # a figure of titled tiles instead
    captions = events(tmp_path / "run").Tensors("test/misclassified/text_summary")
    assert captions  # the full list stays beside it as text


def test_autoencoder_projector_colours_by_label_and_its_png_is_large(tmp_path: Path) -> None:
    cfg = compose_config(
        *ONE_EPOCH,
        "model=autoencoder",
        "dataset=digits",
        "loss=mse",
        "model.hidden_sizes=[16]",
        "model.output_activation=none",
    )
    run(cfg, tmp_path)
    board = tmp_path / "tensorboard"
    latent = next(board.glob("*/latent"))
    rows = [line.split("\t") for line in (latent / "metadata.tsv").read_text().splitlines()]
    assert rows[0][0] == "label" and len(rows[0]) >= 2  # a header: the projector reads columns
    test_size = len((latent / "tensors.tsv").read_text().splitlines())
    assert len(rows) == test_size + 1
    assert {row[0] for row in rows[1:]} <= {str(i) for i in range(10)}  # the classes, first
    config = (board / "projector_config.pbtxt").read_text()
    assert "latent/metadata.tsv" in config
    with Image.open(tmp_path / "latent_space.png") as png:
        assert png.width >= 1200 and png.height >= 1000  # was 840 x 720
