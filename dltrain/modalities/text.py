"""Text: token ids (int64, 0 is padding) of varying length, from the tokenizer saved with the run.

New inputs are a .txt file (one document per non-blank line) or a table with a text column. A
rebuilt dataset is handed the saved tokenizer and length, so it encodes as the run did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from dltrain.data.splits import DataMeta
from dltrain.data.tokenizer import encode
from dltrain.errors import ConfigError
from dltrain.modalities.modality import Inputs, Modality, one_file, rows
from dltrain.registry import DATASETS

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def read_texts(path: Path, meta: DataMeta, column: str) -> Inputs:
    """Documents of a .txt file (one per non-blank line) or a table's text column, tokenised."""
    from tokenizers import Tokenizer

    one_file(path, "text")
    if path.suffix.lower() in TABLE_SUFFIXES:
        from dltrain.data.tabular import read_table  # pandas: only to read a table

        frame = read_table(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        if column not in frame.columns:
            raise ConfigError(
                f"input: {path} has no column '{column}' (columns: {', '.join(frame.columns)}); "
                "name the text column with text_column=NAME"
            )
        ids, texts = rows(len(frame)), frame[column].fillna("").astype(str).tolist()
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


def padded(samples: list[torch.Tensor]) -> torch.Tensor:
    """Token id sequences as one batch, padded with 0 on the right."""
    return pad_sequence(samples, batch_first=True)


def saved_tokenizer_options(dataset: str, meta: DataMeta, folder: Path) -> dict[str, Any]:
    """Dataset options that make a text dataset encode with the saved tokenizer and length."""
    pre = meta.preprocessing
    if "tokenizer" not in pre or not DATASETS.accepts(dataset, "tokenizer_file"):
        return {}
    path = Path(folder) / "tokenizer.json"
    path.write_text(pre["tokenizer"])
    return {"tokenizer_file": str(path), "max_length": pre["max_length"]}


def token_ids(meta: DataMeta, size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Random token ids right-padded with 0, the batch's longest row filling it (as in training)."""
    length = max(1, min(length, meta.input_shape[0]))
    ids = torch.randint(2, max(len(meta.vocab), 3), (size, length), generator=generator)
    lengths = torch.randint(1, length + 1, (size,), generator=generator)
    lengths[0] = length
    return ids.masked_fill(torch.arange(length) >= lengths.unsqueeze(1), 0)


TEXT = Modality(
    name="text",
    read=read_texts,
    collate=padded,
    rebuild_options=saved_tokenizer_options,
    example_batch=token_ids,
    variable_length=True,
)
