"""The console of a run: its metric tables and the lines that say what to do next (the epoch
bar is epoch_bar.py's)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def metrics_table(
    title: str, metrics: dict[str, float], caption: str | None = None, digits: int = 6
) -> Table:
    """Metrics as a two-column table, at least as wide as its caption (so it reads on one line)."""
    table = Table(title=title, caption=caption, min_width=len(caption or "") + 2)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.{digits}f}")
    return table


def print_metrics(title: str, metrics: dict[str, float]) -> None:
    """The metrics as a two-column table on stdout."""
    Console().print(metrics_table(title, metrics))


def print_notes(console: Console, notes: dict[str, str]) -> None:
    """`label  text` lines, the texts aligned and never wrapped by rich (paths, commands)."""
    width = max(map(len, notes), default=0)
    for label, text in notes.items():
        console.print(f"{label:<{width}}  {text}", soft_wrap=True, highlight=False, markup=False)


def metrics_line(metrics: dict[str, float]) -> str:
    """`name value` pairs on one line, with all the digits worth keeping (for dltrain.log)."""
    return "  ".join(f"{name} {value:.6g}" for name, value in metrics.items())
