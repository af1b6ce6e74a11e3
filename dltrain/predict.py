"""Predictions for new inputs, encoded only with the preprocessing saved with the run.

The run's modality reads the inputs (dltrain.modalities): a folder of images (or one image) for
image models, a CSV of raw rows for tables (encoded like the training rows; the target column
may be absent), a .txt file with one document per line (or a CSV with the text column) for text
models, and a CSV of the feature columns for other flat datasets (standardised with the saved
statistics).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch

from dltrain.command_line import parse_args, plugin_options
from dltrain.data.splits import DataMeta
from dltrain.errors import ConfigError
from dltrain.failures import command
from dltrain.files import atomic_write
from dltrain.finished_run import FinishedRun, load_run
from dltrain.metrics import predictions, probabilities
from dltrain.modalities.lookup import modality_of
from dltrain.modalities.modality import Inputs


@torch.no_grad()
def model_outputs(run: FinishedRun, samples: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Raw outputs for every sample and, for autoencoders, each sample's reconstruction MSE."""
    context, size = run.context, run.cfg.trainer.batch_size
    collate = modality_of(run.meta).collate
    outputs, errors = [], []
    for start in range(0, len(samples), size):
        x = batch(samples, start, start + size, collate)
        x = context.inputs(x, train=False)
        out = context.forward(run.model, x)
        if context.reconstruct:
            errors.append((out - x.float()).square().flatten(1).mean(1).cpu())
        outputs.append(out.cpu())
    return torch.cat(outputs), torch.cat(errors) if errors else None


def batch(
    samples: Sequence[torch.Tensor],
    start: int,
    stop: int,
    collate: Callable[[list[torch.Tensor]], torch.Tensor],
) -> torch.Tensor:
    """Samples start:stop as one batch, collated as the modality does (text: padded)."""
    if isinstance(samples, torch.Tensor):
        return samples[start:stop]
    return collate([samples[i] for i in range(start, min(stop, len(samples)))])


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
    inputs = modality_of(run.meta).read(path, run.meta, column)
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
        run = load_run(source, overrides, *plugin_options(named))
        output = Path(named["output"] or run.run_dir / "predictions.csv")
        rows = predict_file(run, Path(named["input"]).expanduser(), output, named["text_column"])
        print(f"wrote {rows} predictions to {output}")

    command("dltrain-predict", body)
