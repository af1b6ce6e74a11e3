"""Tables: rows of numeric, yes/no and categorical columns, encoded by the spec saved with the run.

New inputs are raw rows (the target column may be absent), encoded exactly like the training
rows. A rebuilt table may differ only in the statistics of its numeric columns: those are swapped
for the saved ones; any other difference in the encoding cannot be undone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dltrain.data.splits import DataMeta, DataSplits
from dltrain.modalities.modality import Inputs, Modality, cannot_convert, one_file, rows
from dltrain.modalities.restandardize import STATS, restandardize


def read_rows(path: Path, meta: DataMeta, text_column: str) -> Inputs:
    """Raw rows of a table, encoded with the saved spec."""
    from dltrain.data.table_encoding import encode_frame  # pandas: only to read new inputs
    from dltrain.data.tabular import read_table

    frame = read_table(one_file(path, "table"))
    encoded = torch.from_numpy(encode_frame(frame, meta.preprocessing))
    return Inputs("row", rows(len(frame)), encoded)


def saved_encoding(
    data: DataSplits, new: dict[str, Any] | None, old: dict[str, Any] | None
) -> str | None:
    """The numeric columns re-standardised with the saved statistics; a refusal for the rest."""
    if new is None or old is None:
        return cannot_convert("tabular")
    differ = sorted(k for k in set(new) | set(old) if k not in STATS and new.get(k) != old.get(k))
    if differ:  # one-hot categories, fill values, columns: other rows in the train split
        return (
            f"the rebuilt table is encoded differently from the run's ({', '.join(differ)} "
            "differ: other rows in the train split?); features cannot be re-encoded, so the "
            "model's inputs would not be what it learnt from. Use dltrain-predict on the raw "
            "rows: it encodes them with the saved preprocessing"
        )
    columns = slice(0, len(old["numeric"]))  # numeric features come first
    restandardize(data, _stats(new), _stats(old), columns)
    return None


def _stats(spec: dict[str, Any]) -> dict[str, list[float]] | None:
    return None if spec["mean"] is None else {k: spec[k] for k in STATS}


TABLE = Modality(name="table", read=read_rows, converters={"tabular": saved_encoding})
