"""Compare runs: one row per run dir, mean ± std over seeds, scalar curves overlaid in one PNG.

`dltrain-report DIR...` prints the tables and writes report.csv, report.md and curves.png; the
`dltrain -m` sweep calls `write_report` on its sweep dir when it ends (dltrain.jobs.ReportCallback).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from dltrain.errors import did_you_mean
from dltrain.failures import describe
from dltrain.run_files import read_overrides, read_summary, read_yaml

SEED_KEYS = ("trainer.seed", "dataset.split_seed")
NOT_SETTINGS = ("resume_sweep=", "resume=")  # how a job was started, not what it trained
LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae", "err", "perplexity", "time")
EPOCH_TAGS = {"train/loss": "train/epoch_loss"}  # stands in when a short run logged no steps
KEPT = ("best_epoch", "epochs_completed", "seed", "monitor", "wall_time_s", "error")
TAIL = ["best_epoch", "epochs", "seed", "monitor", "wall_time_s", "error", "path"]
INTS = ("best_epoch", "epochs", "seed")
Cells = list[list[str]]  # a header row, then the rows
Section = tuple[str, str, Cells]  # title, caption, cells: one table for the console and Markdown


class ReportError(ValueError):
    """Nothing to report, or a metric name that no run has."""


class WriteError(Exception):
    """A report file could not be written (a read-only folder, a file where the folder goes)."""


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run dirs under the paths: with a metrics.json, or started (config, .hydra) but unfinished."""
    found: set[Path] = set()
    for root in map(Path, paths):
        for marker in ("metrics.json", "config.yaml", "overrides.yaml"):
            found.update(hit.parent for hit in root.rglob(marker))
    runs = {(d.parent if d.name == ".hydra" else d).resolve() for d in found}
    return sorted((d for d in runs if _is_run(d)), key=_natural)


def _is_run(d: Path) -> bool:
    hydra = (d / ".hydra" / "overrides.yaml").is_file()
    started = (d / "config.yaml").is_file() and (d / "tensorboard").is_dir()
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
    if row["seed"] is None:  # unfinished: the resolved config still records the seed
        config, why = read_yaml(run_dir / "config.yaml")
        if why:
            notes.append(f"unreadable config.yaml ({why}): no seed")
        trainer = config.get("trainer") if isinstance(config, dict) else None
        row["seed"] = trainer.get("seed") if isinstance(trainer, dict) else None
    if notes:
        row["error"] = "; ".join([*([str(row["error"])] if row["error"] else []), *notes])
    return row


def override_columns(frame: pd.DataFrame) -> list[str]:
    """The one-column-per-overridden-key columns of a `collect` frame."""
    columns = list(frame.columns)
    return columns[columns.index("overrides") + 1 : columns.index("status")]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric metric columns (`val/acc`, `test/loss`, `last/train/loss`)."""
    return [c for c in frame.columns if "/" in c and _numeric(frame[c])]


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def summarize(frame: pd.DataFrame, over: str | Sequence[str] = SEED_KEYS) -> pd.DataFrame:
    """Per setting (overrides apart from `over`): n, and mean and std of every numeric metric."""
    over = [over] if isinstance(over, str) else list(over)
    keys = [k for k in override_columns(frame) if k not in over]
    setting = [
        " ".join(f"{k}={row[k]}" for k in keys if pd.notna(row[k]))
        for _, row in frame[keys].iterrows()
    ]
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
    """(steps, values) of each tag the run's TensorBoard events hold, every point kept."""
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


def write_report(
    paths: Sequence[str | Path],
    out: str | Path,
    sort: str | None = None,
    metrics: Sequence[str] | None = None,
    tag: str = "train/loss",
    console: Console | None = None,
) -> pd.DataFrame:
    """Print the runs (and seed means) sorted by `sort`; write report.csv, report.md, curves.png."""
    frame = collect(paths)
    if frame.empty:
        raise ReportError(f"no runs (metrics.json) under {', '.join(map(str, paths))}")
    sort = sort or _default_sort(frame)
    _check_names([sort, *(metrics or [])], metric_columns(frame))
    shown = list(metrics or _default_metrics(frame, sort))
    ascending = lower_is_better(sort)
    frame = frame.sort_values(sort, ascending=ascending, na_position="last", kind="stable")
    summary = summarize(frame).sort_values(f"{sort} mean", ascending=ascending, na_position="last")
    tables = [_runs_table(frame, shown, sort, ascending)]
    if (summary["n"] > 1).any():  # seeds repeat: report each setting as mean ± spread
        tables.append(_summary_table(summary, shown, sort))

    console = console or Console(width=None if sys.stdout.isatty() else 200)
    for table in tables:  # first: a folder that takes no files still gets its comparison
        console.print(_rich(*table))
    out = Path(out)
    _writing(out, lambda: out.mkdir(parents=True, exist_ok=True))
    csv, md, curves = out / "report.csv", out / "report.md", out / "curves.png"
    _writing(csv, lambda: frame.drop(columns="path").to_csv(csv, index=False))
    _writing(md, lambda: md.write_text("\n".join(_markdown(*table) for table in tables)))
    tags = list(dict.fromkeys([tag, f"val/{sort.rsplit('/', 1)[-1]}"]))
    runs = dict(zip(labels(frame), frame["path"], strict=True))
    png = _writing(curves, lambda: loss_curves_figure(runs, curves, tags))
    written = ["report.csv", "report.md", *(["curves.png"] if png else [])]
    console.print(f"wrote {', '.join(written)} to {out}")
    return frame


def _writing(path: Path, write: Callable[[], Any]) -> Any:
    """write(); the OSError of a read-only folder, a full disk or a file in the way as one
    WriteError line."""
    try:
        return write()
    except (FileExistsError, NotADirectoryError) as e:
        raise WriteError(f"cannot write {path}: a file is where a folder should be ({e})") from e
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from e


def _default_sort(frame: pd.DataFrame) -> str:
    """The metric most runs monitored (trainer.monitor), else the first metric."""
    known = metric_columns(frame)
    candidates = [m for m in frame["monitor"].dropna().mode() if m in known] + known
    if not candidates:
        raise ReportError("no run has metrics yet")
    return candidates[0]


def _default_metrics(frame: pd.DataFrame, sort: str) -> list[str]:
    """The sort metric, loss and accuracy (or R²) on val and test, the final training loss."""
    leaf = sort.rsplit("/", 1)[-1]
    splits = [f"{s}/{m}" for s in ("val", "test") for m in ("loss", leaf, "acc", "r2")]
    return [m for m in dict.fromkeys([sort, *splits, "last/train/loss"]) if m in frame.columns]


def _check_names(names: Sequence[str], known: Sequence[str]) -> None:
    for name in names:
        if name not in known:
            hint = did_you_mean(name, known)
            raise ReportError(
                f"no metric {name!r} in these runs.{hint} Metrics: {', '.join(known)}"
            )


def _runs_table(frame: pd.DataFrame, shown: list[str], sort: str, ascending: bool) -> Section:
    """One row per run: the overrides that differ, status, metrics, epochs, seed, time, error."""
    keys = varying(frame)
    same = " ".join(f"{k}={frame[k].iloc[0]}" for k in override_columns(frame) if k not in keys)
    seed = [] if "trainer.seed" in keys else ["seed"]
    error = ["error"] if frame["error"].notna().any() else []
    columns = ["run", *keys, "status", *shown, "best_epoch", "epochs", *seed, "wall_time_s", *error]
    caption = f"sorted by {sort} ({'lower' if ascending else 'higher'} is better)"
    caption += f"; in every run: {same}" if same else ""
    cells = [[_format(row[c], c) for c in columns] for _, row in frame.iterrows()]
    return f"{len(frame)} runs", caption, [columns, *cells]


def _summary_table(summary: pd.DataFrame, shown: list[str], sort: str) -> Section:
    """One row per setting (its differing overrides), n, and mean ± std of the metrics."""
    common = set.intersection(*(set(s.split()) for s in summary["setting"]))
    rows = []
    for _, row in summary.iterrows():
        label = " ".join(t for t in row["setting"].split() if t not in common)
        stats = [_mean_std(row[f"{m} mean"], row[f"{m} std"]) for m in shown]
        rows.append([label or row["setting"] or "(defaults)", str(row["n"]), *stats])
    caption = f"sorted by mean {sort}; n runs per setting, std over seeds"
    return "mean ± std over seeds", caption, [["setting", "n", *shown], *rows]


def _mean_std(mean: float, std: float) -> str:
    return "" if pd.isna(mean) else f"{mean:.4g}" + ("" if pd.isna(std) else f" ± {std:.2g}")


def _format(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if column in INTS else f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _rich(title: str, caption: str, cells: Cells) -> Table:
    table = Table(title=title, caption=caption)
    for name in cells[0]:
        number = "/" in name or name in (*INTS, "wall_time_s", "n")
        wrap = name in ("run", "setting", "error")
        table.add_column(name, justify="right" if number else "left", no_wrap=not wrap)
    for row in cells[1:]:
        table.add_row(*row)
    return table


def _markdown(title: str, caption: str, cells: Cells) -> str:
    """A Markdown section with a table (pandas' to_markdown would need `tabulate`)."""
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    rule = "|" + "---|" * len(cells[0])
    return "\n".join([f"## {title}", "", caption, "", lines[0], rule, *lines[1:], ""])


def main(argv: Sequence[str] | None = None) -> int:
    """`dltrain-report DIR... [--sort M] [--metrics a,b] [--tag T] [--out DIR]`; exit code."""
    parser = argparse.ArgumentParser(
        prog="dltrain-report", description="Compare dltrain runs (dirs holding metrics.json)."
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep dirs and/or run dirs")
    parser.add_argument("--sort", help="metric to sort by (default: the runs' trainer.monitor)")
    parser.add_argument("--metrics", help="comma-separated metrics to show (CSV has all)")
    parser.add_argument("--tag", default="train/loss", help="TensorBoard scalar for curves.png")
    parser.add_argument("--out", type=Path, help="where the files go (default: the first dir)")
    args = parser.parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        write_report(args.dirs, args.out or args.dirs[0], args.sort, metrics, args.tag)
    except ReportError as e:
        print(f"dltrain-report: {e}", file=sys.stderr)
        return 2
    except WriteError as e:
        print(f"dltrain-report: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # anything else a run dir holds: one line, never a traceback
        print(f"dltrain-report: {describe(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
