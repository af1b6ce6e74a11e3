"""Stacked (bi)directional RNNs over right-padded batches, equal to running them on packed input.

CPU torch runs packed sequences through a slow per-step path (an IMDB BiLSTM step of batch 64:
19 s packed against under 2 s dense on this project's 2-core machine), while dense calls use the
fused kernels. Dense gives the packed result if each direction is run on its own: the forward
direction is causal, so its outputs at real positions never see the padding after them, and the
backward direction runs on every sequence reversed within its own length, so it starts at the
sequence's real last token.
"""

from __future__ import annotations

import torch
from torch import nn

from dltrain.models.rnn import CELLS


def reversal_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(N, steps) positions that reverse each row's first `length` steps and keep the rest."""
    # shape[0], not len(): torch.jit.trace records a size it can vary, but freezes len() (export).
    positions = torch.arange(steps, device=lengths.device).expand(lengths.shape[0], steps)
    last = (lengths - 1).unsqueeze(1)
    return torch.where(positions <= last, last - positions, positions)


class VarLengthRNN(nn.Module):
    """(N, T, F) right-padded inputs + lengths -> final hidden state of the last layer (N, D*H)."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
    ):
        super().__init__()
        self.directions = 2 if bidirectional else 1
        self.hidden_size = hidden_size
        sizes = [input_size] + [hidden_size * self.directions] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                CELLS[cell](size, hidden_size, batch_first=True) for _ in range(self.directions)
            )
            for size in sizes
        )
        self.dropout = nn.Dropout(dropout)  # between layers, as torch's own `dropout` option

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        index = reversal_index(lengths, x.shape[1]).unsqueeze(-1)
        for number, directions in enumerate(self.layers):
            if number:
                x = self.dropout(x)
            outputs = [directions[0](x)[0]]
            if self.directions == 2:
                flipped = x.gather(1, index.expand(-1, -1, x.shape[-1]))
                backward = directions[1](flipped)[0]
                outputs.append(backward.gather(1, index.expand(-1, -1, backward.shape[-1])))
            x = torch.cat(outputs, dim=-1)
        rows = torch.arange(x.shape[0], device=x.device)
        final = [x[rows, lengths - 1, : self.hidden_size]]  # forward: its last real step
        if self.directions == 2:
            final.append(x[:, 0, self.hidden_size :])  # backward: it ends at the first step
        return torch.cat(final, dim=-1)
