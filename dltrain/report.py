"""Compare runs: one row per run dir, mean ± std over seeds, scalar curves overlaid in one PNG.

`dltrain-report DIR...` prints the tables and writes report.csv, report.md and curves.png; the
`dltrain -m` sweep calls `write_report` on its sweep dir when it ends (dltrain.jobs.ReportCallback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.text import Text

from dltrain.errors import did_you_mean
from dltrain.failures import describe
from dltrain.report_console import INTS, Cells, fitted
from dltrain.report_curves import loss_curves_figure
from dltrain.runs_table import (
    collect,
    failed_before_training,
    labels,
    lower_is_better,
    metric_columns,
    override_columns,
    summarize,
    varying,
)

SHOW_FAILED = "dltrain-report --failed shows them"
Section = tuple[str, str, Cells]  # title, caption, cells: one table for the console and Markdown


class ReportError(ValueError):
    """Nothing to report, or a metric name that no run has."""


class WriteError(Exception):
    """A report file could not be written (a read-only folder, a file where the folder goes)."""


def write_report(
    paths: Sequence[str | Path],
    out: str | Path,
    sort: str | None = None,
    metrics: Sequence[str] | None = None,
    tag: str = "train/loss",
    console: Console | None = None,
    tags: Sequence[str] = (),
    by_tags: bool = False,
    failed: bool = False,
) -> pd.DataFrame:
    """Print the runs (and seed means) sorted by `sort`; write report.csv, report.md, curves.png.

    `tags`: only the runs tagged with all of them; `by_tags`: the means are per set of tags;
    `failed`: the runs that failed before training too (left out by default, and counted)."""
    frame, left_out = _selected(collect(paths), paths, tags, failed)
    sort = sort or _default_sort(frame)
    _check_names([sort, *(metrics or [])], metric_columns(frame))
    shown = list(metrics or _default_metrics(frame, sort))
    ascending = lower_is_better(sort)
    frame = frame.sort_values(sort, ascending=ascending, na_position="last", kind="stable")
    summary = summarize(frame, by_tags=by_tags)
    summary = summary.sort_values(f"{sort} mean", ascending=ascending, na_position="last")
    tables = [_runs_table(frame, shown, sort, ascending)]
    if by_tags or (summary["n"] > 1).any():  # seeds repeat: each setting as mean ± spread
        tables.append(_summary_table(summary, shown, sort))

    console = console or _console()
    for title, caption, cells in tables:  # first: a folder that takes no files still gets them
        table, dropped = fitted(title, caption, cells, console.width, sort)
        console.print(table)
        if dropped:
            console.print(Text(dropped))
    if left_out:
        console.print(Text(left_out))
    out = Path(out)
    _writing(out, lambda: out.mkdir(parents=True, exist_ok=True))
    csv, md, curves = out / "report.csv", out / "report.md", out / "curves.png"
    _writing(csv, lambda: frame.drop(columns="path").to_csv(csv, index=False))
    _writing(md, lambda: md.write_text("\n".join(_markdown(*table) for table in tables)))
    curve_tags = list(dict.fromkeys([tag, f"val/{sort.rsplit('/', 1)[-1]}"]))
    runs = dict(zip(labels(frame), frame["path"], strict=True))
    png = _writing(curves, lambda: loss_curves_figure(runs, curves, curve_tags))
    written = ["report.csv", "report.md", *(["curves.png"] if png else [])]
    console.print(Text(f"wrote {', '.join(written)} to {out}"))
    return frame


def _selected(
    frame: pd.DataFrame, paths: Sequence[str | Path], tags: Sequence[str], failed: bool
) -> tuple[pd.DataFrame, str]:
    """The runs to report (tagged with all `tags`; failed before training only if `failed`) and
    a line counting the failed ones left out."""
    if tags:
        frame = frame[[set(tags) <= set(t.split(",")) for t in frame["tags"]]]
    where = ", ".join(map(str, paths))
    if frame.empty:
        wanted = f" tagged {','.join(tags)}" if tags else ""
        raise ReportError(f"no runs (metrics.json){wanted} under {where}")
    noise = failed_before_training(frame) & (not failed)  # noise in a comparison
    n = int(noise.sum())
    if n == len(frame):
        raise ReportError(
            f"no runs to report under {where}: {n} failed before training ({SHOW_FAILED})"
        )
    frame = frame[~noise]
    unset = [k for k in override_columns(frame) if frame[k].isna().all()]  # only runs left out
    runs = "1 run" if n == 1 else f"{n} runs"
    left_out = f"left out {runs} that failed before training (a config or data problem)"
    return frame.drop(columns=unset), f"{left_out}; {SHOW_FAILED}" if n else ""


def _console() -> Console:
    """The terminal's width (or $COLUMNS); 200 when the output goes to a file or a pipe."""
    return Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)


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
    error = (["tags"] if (frame["tags"] != "").any() else []) + error
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


def _markdown(title: str, caption: str, cells: Cells) -> str:
    """A Markdown section with a table (pandas' to_markdown would need `tabulate`)."""
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    rule = "|" + "---|" * len(cells[0])
    return "\n".join([f"## {title}", "", caption, "", lines[0], rule, *lines[1:], ""])


def main(argv: Sequence[str] | None = None) -> int:
    """`dltrain-report DIR... [--sort M] [--metrics a,b] [--curve T] [--tags a,b] [--by-tags]
    [--failed] [--out DIR]`; exit code."""
    parser = argparse.ArgumentParser(
        prog="dltrain-report", description="Compare dltrain runs (dirs holding metrics.json)."
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep dirs and/or run dirs")
    parser.add_argument("--sort", help="metric to sort by (default: the runs' trainer.monitor)")
    parser.add_argument("--metrics", help="comma-separated metrics to show (CSV has all)")
    parser.add_argument(
        "--curve", "--tag", dest="curve", default="train/loss", help="scalar for curves.png"
    )
    parser.add_argument("--tags", help="only the runs with all these tags (comma-separated)")
    parser.add_argument("--by-tags", action="store_true", help="means per set of tags")
    parser.add_argument(
        "--failed", action="store_true", help="also the runs that failed before training"
    )
    parser.add_argument("--out", type=Path, help="where the files go (default: the first dir)")
    args = parser.parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        tags = [t.strip() for t in (args.tags or "").split(",") if t.strip()]
        out = args.out or args.dirs[0]
        options = {"tags": tags, "by_tags": args.by_tags, "failed": args.failed}
        write_report(args.dirs, out, args.sort, metrics, args.curve, **options)
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
