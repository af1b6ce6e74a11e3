"""Recurrent sequence models (RNN, LSTM, GRU) with a linear head on the last hidden state."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dltrain.errors import ConfigError
from dltrain.registry import MODELS

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class SequenceModel(nn.Module):
    """(N, T, F) -> recurrent layers -> last hidden state (both directions) -> dropout -> linear."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        out_features: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
    ):
        super().__init__()
        self.rnn = CELLS[cell](
            input_size,
            hidden_size,
            num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,  # torch applies it between layers only
        )
        self.directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * self.directions, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, hidden = self.rnn(x)
        if isinstance(hidden, tuple):  # LSTM returns (h, c)
            hidden = hidden[0]
        last_layer = hidden[-self.directions :]  # (directions, N, H)
        return self.head(self.dropout(torch.cat(tuple(last_layer), dim=-1)))


def _register(cell: str) -> None:
    @MODELS.register(cell, tasks=("regression", "binary", "multiclass"), input="sequence")
    def build(
        input_shape: tuple[int, ...],
        out_features: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> nn.Module:
        problems = _problems(cell, input_shape, hidden_size, num_layers, dropout)
        if problems:
            raise ConfigError(problems)
        return SequenceModel(
            cell, input_shape[-1], out_features, hidden_size, num_layers, bidirectional, dropout
        )

    build.__doc__ = (
        f"{cell.upper()} over (time, features) sequences, head on the last hidden state."
    )


def _problems(
    cell: str, input_shape: Sequence[int], hidden_size: int, num_layers: int, dropout: float
) -> list[str]:
    problems = []
    if len(input_shape) != 2:
        problems.append(
            f"model '{cell}' needs sequences shaped (time, features), but the dataset's "
            f"input_shape is {tuple(input_shape)}; use a sequence dataset (e.g. dataset=mnist_seq)"
        )
    if hidden_size < 1 or num_layers < 1:
        problems.append(
            f"model.hidden_size and model.num_layers must be >= 1, got {hidden_size} "
            f"and {num_layers}"
        )
    if not 0 <= dropout < 1:
        problems.append(f"model.dropout: must be in [0, 1), got {dropout}")
    return problems


for _cell in CELLS:
    _register(_cell)
