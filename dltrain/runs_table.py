"""The runs under some folders as one table: a row per run dir, its overrides, status, metrics.

Everything is read from run dirs as untrusted data (dltrain.run_files): a file that cannot be
read makes its run "unreadable" with the reason, never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dltrain.run_files import read_overrides, read_summary, read_yaml

SEED_KEYS = ("trainer.seed", "dataset.split_seed")
NOT_SETTINGS = ("resume_sweep=", "resume=")  # how a job was started, not what it trained
LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae", "err", "perplexity", "time")
KEPT = ("best_epoch", "epochs_completed", "step", "seed", "monitor", "wall_time_s", "error")
TAIL = ["best_epoch", "epochs", "step", "seed", "monitor", "wall_time_s", "tags", "error", "path"]
NOT_RUNS = ("lr_find.json",)  # folders of other commands that build a run (dltrain-lr-find)


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run dirs under the paths: with a metrics.json, or started (config, .hydra) but unfinished."""
    found: set[Path] = set()
    for root in map(Path, paths):
        for marker in ("metrics.json", "config.yaml", "overrides.yaml"):
            found.update(hit.parent for hit in root.rglob(marker))
    runs = {(d.parent if d.name == ".hydra" else d).resolve() for d in found}
    return sorted((d for d in runs if _is_run(d)), key=_natural)


def _is_run(d: Path) -> bool:
    if any((d / marker).exists() for marker in NOT_RUNS):
        return False
    hydra = (d / ".hydra" / "overrides.yaml").is_file()
    logged = (d / "tensorboard").is_dir() or (d / "metrics.jsonl").is_file()
    started = (d / "config.yaml").is_file() and logged
    return (d / "metrics.json").is_file() or hydra or started


def _natural(path: Path) -> list[Any]:
    """Sort key putting job 2 before job 10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def collect(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per run: run, overrides (one string + one column per key), status, metrics, ..."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    dirs = find_runs(paths)
    if not dirs:
        return pd.DataFrame(columns=["run", "overrides", "status", *TAIL])
    base = Path(os.path.commonpath([d.parent for d in dirs]))
    rows = [_row(d, base) for d in dirs]
    keys = list(dict.fromkeys(k for row in rows for k in row.pop("_keys")))
    frame = pd.DataFrame(rows)
    metrics = [c for c in frame.columns if "/" in c and not c.startswith("last/")]
    last = [c for c in frame.columns if c.startswith("last/")]
    return frame[["run", "overrides", *keys, "status", *metrics, *last, *TAIL]]


def _row(run_dir: Path, base: Path) -> dict[str, Any]:
    """One run's row. Its files are data from anywhere: one that cannot be read is noted in the
    error column (metrics.json: status "unreadable"), and the run still gets its row."""
    notes = []
    overrides, why = read_overrides(run_dir)
    if why:
        notes.append(f"unreadable .hydra/overrides.yaml ({why}): no overrides")
    overrides = [o for o in overrides or [] if not o.startswith(NOT_SETTINGS)]
    keyed = {k.lstrip("+~"): v for k, _, v in (o.partition("=") for o in overrides)}
    summary, why = read_summary(run_dir)
    status = "unreadable" if why else (summary or {}).get("status", "unknown")
    if why:
        notes.insert(0, f"unreadable metrics.json ({why})")
    summary = summary or {}
    row: dict[str, Any] = {"run": run_dir.relative_to(base).as_posix(), "_keys": list(keyed)}
    row |= {"overrides": " ".join(overrides), **keyed, "status": status}
    row |= {k: v for k, v in (summary.get("metrics") or {}).items() if "/" in k}
    row |= {f"last/{k}": v for k, v in (summary.get("last_metrics") or {}).items()}
    row |= {k.replace("_completed", ""): summary.get(k) for k in KEPT} | {"path": str(run_dir)}
    tags = summary.get("tags")
    row["tags"] = ",".join(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ""
    if row["seed"] is None:  # unfinished: the resolved config still records the seed
        config, why = read_yaml(run_dir / "config.yaml")
        if why:
            notes.append(f"unreadable config.yaml ({why}): no seed")
        trainer = config.get("trainer") if isinstance(config, dict) else None
        row["seed"] = trainer.get("seed") if isinstance(trainer, dict) else None
    if notes:
        row["error"] = "; ".join([*([str(row["error"])] if row["error"] else []), *notes])
    return row


def failed_before_training(frame: pd.DataFrame) -> pd.Series:
    """The runs that failed before their first step: a config or data problem, noise in a
    comparison (a diverged, interrupted or killed run is kept: it says something)."""
    return (frame["status"] == "failed") & (pd.to_numeric(frame["step"], errors="coerce") == 0)


def override_columns(frame: pd.DataFrame) -> list[str]:
    """The one-column-per-overridden-key columns of a `collect` frame."""
    columns = list(frame.columns)
    return columns[columns.index("overrides") + 1 : columns.index("status")]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric metric columns (`val/acc`, `test/loss`, `last/train/loss`)."""
    return [c for c in frame.columns if "/" in c and _numeric(frame[c])]


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def summarize(
    frame: pd.DataFrame, over: str | Sequence[str] = SEED_KEYS, by_tags: bool = False
) -> pd.DataFrame:
    """Per setting (overrides apart from `over`; or, by_tags, the runs' tags): n, and mean and
    std of every numeric metric."""
    over = [over] if isinstance(over, str) else list(over)
    keys = [k for k in override_columns(frame) if k not in over]
    setting = [
        " ".join(f"{k}={row[k]}" for k in keys if pd.notna(row[k]))
        for _, row in frame[keys].iterrows()
    ]
    if by_tags:
        setting = [f"tags={t}" if t else "(no tags)" for t in frame["tags"]]
    grouped = frame.assign(setting=setting).groupby("setting", sort=False)
    columns = [*metric_columns(frame), *[c for c in ["wall_time_s"] if _numeric(frame[c])]]
    stats = grouped[columns].agg(["mean", "std"])  # std: sample std (ddof 1), NaN for n = 1
    stats.columns = [f"{metric} {stat}" for metric, stat in stats.columns]
    n = grouped.size().rename("n")
    completed = grouped["status"].agg(lambda s: int((s == "completed").sum())).rename("completed")
    return pd.concat([n, completed, stats], axis=1).reset_index()


def lower_is_better(metric: str) -> bool:
    """True for loss-, error- and time-like names (sorted ascending), False for acc, f1, r2, ..."""
    leaf = metric.rsplit("/", 1)[-1]
    return any(word in leaf for word in LOWER_IS_BETTER)


def varying(frame: pd.DataFrame) -> list[str]:
    """The overridden keys whose value differs between runs."""
    return [k for k in override_columns(frame) if frame[k].nunique(dropna=False) > 1]


def labels(frame: pd.DataFrame) -> list[str]:
    """Legend label per run: its overrides that differ between runs (else the run name), unique."""
    keys = varying(frame)
    names = [" ".join(f"{k}={r[k]}" for k in keys if pd.notna(r[k])) for _, r in frame.iterrows()]
    runs = list(frame["run"])
    names = [n or run for n, run in zip(names, runs, strict=True)]
    return [n if names.count(n) == 1 else f"{n} [{r}]" for n, r in zip(names, runs, strict=True)]
