"""The report's tables on a terminal: values printed as they are (never read as rich markup), and
columns folded or left out whole, least useful first, until the table fits the width."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

INTS = ("best_epoch", "epochs", "step", "seed")
NUMBERS = (*INTS, "wall_time_s", "n")  # with metrics ("val/acc"): right-justified, never folded
FIRST_LEFT_OUT = ("error", "tags", "wall_time_s", "seed", "epochs", "best_epoch")
FOLDED = "setting"  # the settings (overrides) of a run in one column, when theirs do not fit
KEPT = ("run", FOLDED, "status", "n")  # what a row is, and whether it finished
FOLD_TO = 12  # a column of words (names, errors) wraps at this width, its header at least
SETTING_TO = 24  # the folded settings: wide enough for most `key=value` to stay whole
Cells = list[list[str]]  # a header row, then the rows


def fitted(title: str, caption: str, cells: Cells, width: int, sort: str) -> tuple[Table, str]:
    """A table that fits `width`: run details left out first, then the settings folded into one
    column, then the metrics other than `sort`; a line naming those left out ("" if none was)."""
    names = cells[0]
    details = [n for n in FIRST_LEFT_OUT if n in names]
    metrics = [n for n in reversed(names) if "/" in n and n != sort]
    settings = [n for n in names if n not in (*details, *metrics, *KEPT, sort)]
    shown = _fitting(cells, names, width, details)
    if _needed(cells, shown) > width and len(settings) > 1:
        cells = _folded(cells, settings)
        shown = [n for n in cells[0] if n in shown or n == FOLDED]
    shown = _fitting(cells, shown, width, metrics)
    table = Table(title=Text(title), caption=Text(caption))
    for name in shown:
        table.add_column(
            Text(name),
            justify="right" if _number(name) else "left",
            no_wrap=_whole(name),
            overflow="fold",
            min_width=_least(name, cells),
        )
    for row in cells[1:]:
        table.add_row(*(Text(row[cells[0].index(name)]) for name in shown))
    dropped = [n for n in names if n not in shown and not (n in settings and FOLDED in shown)]
    if not dropped:
        return table, ""
    listed = ", ".join(dropped)
    return table, f"left out to fit {width} columns: {listed} (report.md has every column)"


def _folded(cells: Cells, settings: Sequence[str]) -> Cells:
    """The settings columns as one, FOLDED: `key=value` of each set one, in the first's place."""
    at = [cells[0].index(n) for n in settings]
    rows = []
    for row in cells:
        words = [f"{key}={row[i]}" for key, i in zip(settings, at, strict=True) if row[i]]
        cell = FOLDED if row is cells[0] else " ".join(words)
        rows.append([cell if i == at[0] else c for i, c in enumerate(row) if i not in at[1:]])
    return rows


def _fitting(cells: Cells, names: Sequence[str], width: int, leave_out: Sequence[str]) -> list[str]:
    """`names` less those first in `leave_out`, until the rest fit `width`."""
    names, leave_out = list(names), list(leave_out)
    while leave_out and _needed(cells, names) > width:
        names.remove(leave_out.pop(0))
    return names


def _needed(cells: Cells, names: Sequence[str]) -> int:
    """The width a table of these columns needs at least: each column, its padding and border."""
    return sum(_least(name, cells) + 3 for name in names) + 1


def _least(name: str, cells: Cells) -> int:
    """A column's narrowest readable width: its header whole, and numbers whole; words fold."""
    column = cells[0].index(name)
    widest = max(len(row[column]) for row in cells)
    if name == FOLDED:
        word = max(len(word) for row in cells for word in row[column].split())
        return min(widest, max(FOLD_TO, min(word, SETTING_TO)))
    return widest if _whole(name) else min(widest, max(len(name), FOLD_TO))


def _number(name: str) -> bool:
    return "/" in name or name in NUMBERS


def _whole(name: str) -> bool:
    """Numbers and statuses are never folded."""
    return _number(name) or name == "status"
