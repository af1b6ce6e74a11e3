"""Text classifier: embedding -> dropout -> RNN/LSTM/GRU over the real lengths -> linear."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from dltrain.data.files import regular_file
from dltrain.errors import ConfigError
from dltrain.models.varlen import VarLengthRNN
from dltrain.registry import MODELS

PADDING = 0  # the id text datasets pad with


class TextRNN(nn.Module):
    """Padded token ids (N, L) -> embeddings -> recurrent layers over the real lengths only."""

    def __init__(
        self,
        vocab_size: int,
        out_features: int,
        embedding_dim: int,
        cell: str,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PADDING)
        self.dropout = nn.Dropout(dropout)
        self.rnn = VarLengthRNN(
            cell, embedding_dim, hidden_size, num_layers, bidirectional, dropout
        )
        self.head = nn.Linear(hidden_size * self.rnn.directions, out_features)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != PADDING).sum(1).clamp_min(1)  # batches are padded on the right
        hidden = self.rnn(self.dropout(self.embedding(ids)), lengths)
        return self.head(self.dropout(hidden))


def load_vectors(embedding: nn.Embedding, path: Path, vocab: list[str]) -> int:
    """Fill rows of known tokens from a word2vec/GloVe/fastText text file; returns how many."""
    regular_file(path, "model.vectors")  # never a FIFO: reading one would block
    index = {token: i for i, token in enumerate(vocab)}
    found = 0
    with torch.no_grad(), path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f):
            word, *values = line.rstrip().split(" ")
            if number == 0 and len(values) == 1:  # fastText / word2vec header: "count dims"
                continue
            if word in index and index[word] > 1:  # [PAD] and [UNK] stay zero
                if len(values) != embedding.embedding_dim:
                    raise ConfigError(
                        f"model.vectors: {path} has {len(values)}-dimensional vectors but "
                        f"model.embedding_dim is {embedding.embedding_dim}"
                    )
                embedding.weight[index[word]] = torch.tensor([float(v) for v in values])
                found += 1
        embedding.weight[:2] = 0
    return found


@MODELS.register("text_rnn", tasks=("binary", "multiclass"), input="tokens")
def text_rnn(
    vocab: list[str] | None,
    out_features: int,
    embedding_dim: int = 100,
    cell: Literal["rnn", "lstm", "gru"] = "lstm",
    hidden_size: int = 128,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    vectors: str | None = None,
    freeze_vectors: bool = False,
) -> nn.Module:
    """Recurrent text classifier; optional pretrained vectors from a .vec/.txt file."""
    if not vocab:
        raise ConfigError("model 'text_rnn' needs a text dataset (one with a vocabulary)")
    if embedding_dim < 1 or hidden_size < 1 or num_layers < 1 or not 0 <= dropout < 1:
        raise ConfigError(
            "model.embedding_dim, hidden_size, num_layers must be >= 1 and "
            f"model.dropout in [0, 1); got {embedding_dim}, {hidden_size}, "
            f"{num_layers}, {dropout}"
        )
    model = TextRNN(
        len(vocab),
        out_features,
        embedding_dim,
        cell,
        hidden_size,
        num_layers,
        bidirectional,
        dropout,
    )
    if vectors:
        load_vectors(model.embedding, Path(vectors).expanduser(), vocab)
        model.embedding.weight.requires_grad = not freeze_vectors
    return model
