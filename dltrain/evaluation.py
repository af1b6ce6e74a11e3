"""dltrain-eval: the metrics of a split of a finished run's dataset, with its best weights."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dltrain.command_line import parse_args, plugin_options
from dltrain.config import options
from dltrain.data.batches import make_batches
from dltrain.data.paths import said_relative
from dltrain.data.splits import other_split_rule
from dltrain.data.user import as_data_splits
from dltrain.errors import ConfigError, did_you_mean
from dltrain.failures import command
from dltrain.files import save_json_atomic
from dltrain.finished_run import FinishedRun, load_run
from dltrain.loop import evaluate
from dltrain.metrics import confusion_matrix
from dltrain.modalities.saved_preprocessing import match_saved, rebuild_options
from dltrain.registry import DATASETS, LOSSES
from dltrain.tracking.console import print_metrics

SPLITS = ("train", "val", "test")


def evaluate_split(run: FinishedRun, split: str) -> dict[str, Any]:
    """Metrics of `split` of the rebuilt dataset, fed through the saved preprocessing."""
    if split not in SPLITS:
        hint = did_you_mean(split, SPLITS)
        raise ConfigError(f"split={split}: choose one of {', '.join(SPLITS)}.{hint}")
    cfg, meta = run.cfg, run.meta
    with tempfile.TemporaryDirectory() as folder:
        kwargs = {**options(cfg.dataset), **rebuild_options(cfg.dataset.name, meta, folder)}
        try:
            data = as_data_splits(DATASETS.build(cfg.dataset.name, kwargs), cfg.dataset.name)
        except ConfigError as e:  # say which path of the run was not followed, if one was
            problems = said_relative(e.problems, kwargs)  # a path given here, relative to what
            if run.notes:
                problems[-1] = f"{problems[-1]} ({'; '.join(run.notes)})"
            raise ConfigError(problems) from None
    match_saved(data, meta)
    if split != "train" and (problem := other_split_rule(meta.split_rule)):
        print(
            f"dltrain-eval: warning: {problem}: its {split} metrics may be too good",
            file=sys.stderr,
        )
    sets = {"train": data.train, "val": data.val, "test": data.test}
    if sets[split] is None:
        available = ", ".join(k for k, v in sets.items() if v is not None)
        raise ConfigError(f"split={split}: this dataset has no {split} split; it has {available}")
    trainer = cfg.trainer
    batches = make_batches(
        sets[split], trainer.batch_size, False, 0, trainer.get("num_workers", 0), run.context.device
    )
    loss_fn = LOSSES.build(cfg.loss.name, options(cfg.loss)).to(run.context.device)
    metrics, outputs, targets = evaluate(run.model, batches, loss_fn, run.context, meta.task, split)
    result: dict[str, Any] = {
        "checkpoint": str(run.path),
        "epoch": run.epoch,
        "split": split,
        "samples": len(targets),
        "dataset": options(cfg.dataset),
        "metrics": metrics,
    }
    if meta.task in ("binary", "multiclass"):
        result["confusion_matrix"] = confusion_matrix(outputs, targets, meta.task, meta.num_classes)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """`dltrain-eval RUN_DIR|CHECKPOINT [split=test] [out=FILE] [dataset.key=value ...]`."""

    def body() -> None:
        usage = (
            "RUN_DIR|CHECKPOINT [split=test] [out=FILE] [dataset.key=value|trainer.key=value ...]"
        )
        source, named, overrides = parse_args(
            sys.argv[1:] if argv is None else argv,
            "dltrain-eval",
            usage,
            {"split": "test", "out": None},
        )
        run = load_run(source, overrides, *plugin_options(named))
        result = evaluate_split(run, named["split"])
        result["overrides"] = overrides
        out = Path(named["out"] or run.run_dir / f"eval_{named['split']}.json")
        title = f"{run.cfg.model.name} on {run.cfg.dataset.name}, {named['split']} split"
        print_metrics(title, result["metrics"])
        save_json_atomic(result, out)
        print(f"wrote {out}")

    command("dltrain-eval", body)
