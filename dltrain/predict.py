"""Predictions for new inputs, encoded only with the preprocessing saved with the run.

The input kind follows the run's data: a folder of images (or one image) for image models, a CSV
of raw rows for tables (encoded like the training rows; the target column may be absent), a .txt
file with one document per line (or a CSV with the text column) for text models, and a CSV of the
feature columns for other flat datasets (standardised with the saved statistics).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn.utils.rnn import pad_sequence

from dltrain.command_line import parse_args
from dltrain.data.files import is_folder, regular_file
from dltrain.data.image_folder import EXTENSIONS, load_image
from dltrain.data.splits import DataMeta
from dltrain.data.table_encoding import encode_frame
from dltrain.data.tabular import read_table
from dltrain.data.text import encode
from dltrain.errors import ConfigError
from dltrain.failures import command
from dltrain.files import atomic_write
from dltrain.finished_run import FinishedRun, load_run
from dltrain.metrics import predictions, probabilities


@dataclass
class Inputs:
    """What each prediction row is named by, and the model input of each (before the transform)."""

    id_name: str
    ids: list[Any]
    samples: Sequence[torch.Tensor]


class ImageInputs(Sequence):
    """Image files decoded on access like image_folder's: (C, H, W) uint8 at the model's size."""

    def __init__(self, files: list[Path], shape: tuple[int, int, int]):
        self.files, self.shape = files, shape

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return load_image(self.files[i], self.shape, source="input")


def input_kind(meta: DataMeta) -> str:
    """Which inputs a run predicts from: text, images, table or features."""
    if meta.vocab:
        return "text"
    if len(meta.input_shape) == 3:
        return "images"
    if "tabular" in meta.preprocessing:
        return "table"
    if len(meta.input_shape) == 1:
        return "features"
    raise ConfigError(
        f"prediction from files is not supported for inputs shaped {tuple(meta.input_shape)} "
        "(sequence datasets); only images, tables, flat features and text"
    )


def read_inputs(path: Path, meta: DataMeta, text_column: str = "text") -> Inputs:
    """The inputs in `path`, encoded as training encoded them (saved preprocessing only)."""
    kind = input_kind(meta)
    if not is_folder(path, "input"):  # never a FIFO or a device: they block the reader
        regular_file(path, "input")
    if kind == "images":
        files = image_files(path)
        names = [f.name if path.is_file() else f.relative_to(path).as_posix() for f in files]
        return Inputs("file", names, ImageInputs(files, tuple(meta.input_shape)))
    if path.is_dir():
        raise ConfigError(f"input: {path} is a folder; this {kind} model reads a file")
    if kind == "text":
        return text_inputs(path, meta, text_column)
    frame = read_table(path)
    rows = list(range(1, len(frame) + 1))
    if kind == "table":
        return Inputs("row", rows, torch.from_numpy(encode_frame(frame, meta.preprocessing)))
    return Inputs("row", rows, feature_rows(frame, meta, path))


def image_files(path: Path) -> list[Path]:
    """The image file itself, or the images under a folder (recursively, sorted)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    images = [p for p in files if p.suffix.lower() in EXTENSIONS]
    if not images:
        raise ConfigError(
            f"input: no images ({', '.join(sorted(EXTENSIONS))}) at {path}; this model "
            "predicts from a folder of images or one image file"
        )
    return images


def text_inputs(path: Path, meta: DataMeta, column: str) -> Inputs:
    """Documents of a .txt file (one per non-blank line) or a CSV's text column, tokenised."""
    from tokenizers import Tokenizer

    if path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq"):
        frame = read_table(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        if column not in frame.columns:
            raise ConfigError(
                f"input: {path} has no column '{column}' (columns: {', '.join(frame.columns)}); "
                "name the text column with text_column=NAME"
            )
        ids, texts = list(range(1, len(frame) + 1)), frame[column].fillna("").astype(str).tolist()
        id_name = "row"
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise ConfigError(f"input: {path} is not UTF-8 text ({e.reason})") from None
        kept = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
        ids, texts, id_name = [n for n, _ in kept], [line for _, line in kept], "line"
    pre = meta.preprocessing
    tokenizer = Tokenizer.from_str(pre["tokenizer"])
    return Inputs(id_name, ids, encode(tokenizer, texts, pre["max_length"]))


def feature_rows(frame: pd.DataFrame, meta: DataMeta, path: Path) -> torch.Tensor:
    """A CSV's raw feature columns in the training order, standardised with saved statistics."""
    names, width = meta.feature_names, meta.input_shape[0]
    if names and (absent := [n for n in names if n not in frame.columns]):
        raise ConfigError(
            f"input: {path} lacks the feature columns {_some(absent)} (it has "
            f"{_some(list(frame.columns))})"
        )
    if names:
        frame = frame[names]
    elif frame.shape[1] != width:
        raise ConfigError(
            f"input: {path} has {frame.shape[1]} columns; the model expects {width} feature "
            "columns, in the training order"
        )
    try:
        x = frame.to_numpy(np.float64)
    except (ValueError, TypeError):
        raise ConfigError(f"input: {path}: every feature column must hold numbers") from None
    if stats := meta.preprocessing.get("standardize"):
        x = (x - np.asarray(stats["mean"])) / np.asarray(stats["std"])
    return torch.from_numpy(x.astype(np.float32))


def _some(names: list[str], first: int = 5) -> str:
    """The first few names, and how many there are when some are left out."""
    more = f", ... ({len(names)} in all)" if len(names) > first else ""
    return ", ".join(map(str, names[:first])) + more


@torch.no_grad()
def model_outputs(run: FinishedRun, samples: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Raw outputs for every sample and, for autoencoders, each sample's reconstruction MSE."""
    context, size = run.context, run.cfg.trainer.batch_size
    outputs, errors = [], []
    for start in range(0, len(samples), size):
        x = batch(samples, start, start + size)
        x = context.inputs(x, train=False)
        out = context.forward(run.model, x)
        if context.reconstruct:
            errors.append((out - x.float()).square().flatten(1).mean(1).cpu())
        outputs.append(out.cpu())
    return torch.cat(outputs), torch.cat(errors) if errors else None


def batch(samples: Sequence[torch.Tensor], start: int, stop: int) -> torch.Tensor:
    """Samples start:stop as one batch; token id sequences padded with 0 on the right."""
    if isinstance(samples, torch.Tensor):
        return samples[start:stop]
    chunk = [samples[i] for i in range(start, min(stop, len(samples)))]
    if chunk[0].dtype == torch.int64 and chunk[0].dim() == 1:
        return pad_sequence(chunk, batch_first=True)
    return torch.stack(chunk)


def prediction_frame(
    inputs: Inputs, outputs: torch.Tensor, errors: torch.Tensor | None, meta: DataMeta
) -> pd.DataFrame:
    """One row per input: its id, then the prediction columns of the task."""
    frame = pd.DataFrame({inputs.id_name: inputs.ids})
    if meta.task == "reconstruction":
        frame["reconstruction_error"] = errors.numpy()
    elif meta.task == "regression":
        values = outputs.reshape(len(outputs), -1).numpy()
        if values.shape[1] == 1:
            frame["predicted"] = values[:, 0]
        else:
            for i in range(values.shape[1]):
                frame[f"predicted_{i}"] = values[:, i]
    else:
        names = meta.class_names or [str(i) for i in range(meta.num_classes)]
        frame["predicted"] = [names[i] for i in predictions(outputs, meta.task).tolist()]
        probs = probabilities(outputs, meta.task)
        if meta.task == "binary":
            probs = torch.stack([1 - probs, probs], dim=1)
        for i, name in enumerate(names):
            frame[f"prob_{name}"] = probs[:, i].numpy()
    return frame


def predict_file(run: FinishedRun, path: Path, output: Path, text_column: str | None = None) -> int:
    """Write the predictions for the inputs in `path` as CSV to `output`; returns the row count."""
    column = text_column or run.cfg.dataset.get("text_column") or "text"
    inputs = read_inputs(path, run.meta, column)
    if len(inputs.samples) == 0:
        raise ConfigError(f"input: {path} holds no inputs to predict for")
    outputs, errors = model_outputs(run, inputs.samples)
    frame = prediction_frame(inputs, outputs, errors, run.meta)
    atomic_write(output, lambda f: f.write(frame.to_csv(index=False).encode()))
    return len(frame)


def main(argv: Sequence[str] | None = None) -> None:
    """`dltrain-predict RUN_DIR|CHECKPOINT input=PATH [output=CSV] [text_column=NAME]`."""

    def body() -> None:
        usage = "RUN_DIR|CHECKPOINT input=PATH [output=CSV] [text_column=NAME] [trainer.device=cpu]"
        defaults = {"input": None, "output": None, "text_column": None}
        source, named, overrides = parse_args(
            sys.argv[1:] if argv is None else argv, "dltrain-predict", usage, defaults
        )
        if named["input"] is None:
            raise ConfigError("input=PATH is required: the images, table or text to predict for")
        if bad := [o for o in overrides if not o.lstrip("+").startswith("trainer.")]:
            raise ConfigError(f"{bad[0]}: prediction takes trainer.* overrides only")
        run = load_run(source, overrides)
        output = Path(named["output"] or run.run_dir / "predictions.csv")
        rows = predict_file(run, Path(named["input"]).expanduser(), output, named["text_column"])
        print(f"wrote {rows} predictions to {output}")

    command("dltrain-predict", body)
