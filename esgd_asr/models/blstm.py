"""Bidirectional LSTM acoustic model with a linear bottleneck (the SWB300 hybrid BLSTM).

The LSTM layers are written with nn.Linear and a time loop rather than nn.LSTM, so that `torch.func.vmap`
batches them over a population (nn.LSTM's fused kernels have no batching rule and fall back to a loop); the loop
is TorchScript-compatible (torch.jit.script exports the model).
"""
from dataclasses import dataclass

import torch
from torch import nn

from esgd_asr.errors import EsgdError


@dataclass
class BLSTMConfig:
    """Shape of a BiLSTM: input_dim = LDA dim + i-vector dim, trained on chunks of `chunk` frames, each seen with
    up to `chunk_left_context` / `chunk_right_context` frames around it that carry no targets (the data's
    windows; the network itself takes any length)."""

    input_dim: int = 140
    num_layers: int = 2
    cells: int = 64
    bottleneck: int = 32
    num_targets: int = 500
    chunk: int = 21
    chunk_left_context: int = 0
    chunk_right_context: int = 0

    def __post_init__(self):
        if min(self.input_dim, self.num_layers, self.cells, self.bottleneck, self.num_targets, self.chunk) < 1:
            raise EsgdError("blstm config: all sizes must be positive")
        if min(self.chunk_left_context, self.chunk_right_context) < 0:
            raise EsgdError("blstm config: chunk contexts must be >= 0")


class LSTMDirection(nn.Module):
    """One direction of one LSTM layer, gate order (input, forget, cell, output) as in nn.LSTM."""

    def __init__(self, input_dim: int, cells: int, reverse: bool):
        super().__init__()
        self.cells = cells
        self.reverse = reverse
        self.input_gates = nn.Linear(input_dim, 4 * cells)
        self.hidden_gates = nn.Linear(cells, 4 * cells)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, time, input_dim) -> (batch, time, cells)."""
        gates_in = self.input_gates(inputs)
        batch, steps = inputs.shape[0], inputs.shape[1]
        hidden = inputs.new_zeros(batch, self.cells)
        cell = inputs.new_zeros(batch, self.cells)
        outputs: list[torch.Tensor] = []
        for step in range(steps):
            t = steps - 1 - step if self.reverse else step
            gates = gates_in[:, t] + self.hidden_gates(hidden)
            i, f, g, o = gates.chunk(4, dim=-1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            hidden = torch.sigmoid(o) * torch.tanh(cell)
            outputs.append(hidden)
        if self.reverse:
            outputs.reverse()
        return torch.stack(outputs, dim=1)


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM -> linear bottleneck -> senone logits for every frame of a chunk."""

    def __init__(self, config: BLSTMConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList()
        width = config.input_dim
        for _ in range(config.num_layers):
            self.layers.append(nn.ModuleList([LSTMDirection(width, config.cells, reverse=False),
                                              LSTMDirection(width, config.cells, reverse=True)]))
            width = 2 * config.cells
        self.bottleneck = nn.Linear(width, config.bottleneck)
        self.output = nn.Linear(config.bottleneck, config.num_targets)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, time, input_dim) -> (batch, time, num_targets) logits."""
        hidden = features
        for directions in self.layers:  # (forward, backward)
            hidden = torch.cat([directions[0](hidden), directions[1](hidden)], dim=-1)
        return self.output(self.bottleneck(hidden))
