"""LSTM language model: word embedding, unidirectional LSTM layers, linear softmax layer over the vocabulary.

The LSTM layers are written with nn.Linear gates and a time loop rather than nn.LSTM, whose fused kernels have
no `torch.func.vmap` batching rule: so the population engine batches the members. Token ids arrive as float32 (the trainers' data interface holds float features; ids are
exact below 2^24) and are cast back to integers for the embedding lookup.
"""
from dataclasses import dataclass

import torch
from torch import nn

from esgd_asr.errors import EsgdError


class LSTMLayer(nn.Module):
    """One forward LSTM layer, gate order (input, forget, cell, output) as in nn.LSTM."""

    def __init__(self, input_dim: int, cells: int):
        super().__init__()
        self.cells = cells
        self.input_gates = nn.Linear(input_dim, 4 * cells)
        self.hidden_gates = nn.Linear(cells, 4 * cells)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, time, input_dim) -> (batch, time, cells), from a zero state."""
        gates_in = self.input_gates(inputs)
        hidden = inputs.new_zeros(inputs.shape[0], self.cells)
        cell = inputs.new_zeros(inputs.shape[0], self.cells)
        outputs = []
        for step in range(inputs.shape[1]):
            i, f, g, o = (gates_in[:, step] + self.hidden_gates(hidden)).chunk(4, dim=-1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            hidden = torch.sigmoid(o) * torch.tanh(cell)
            outputs.append(hidden)
        return torch.stack(outputs, dim=1)


@dataclass
class LSTMLMConfig:
    """vocab_size words (with <unk> and </s>); the ESGD paper's PTB model (its ref. [40]) is 1 layer of 655 cells
    over a 655-dimensional embedding and a 10 k vocabulary (the `ptb` preset)."""

    vocab_size: int = 1000
    embedding: int = 64
    cells: int = 64
    num_layers: int = 1

    def __post_init__(self):
        if min(self.vocab_size, self.embedding, self.cells, self.num_layers) < 1:
            raise EsgdError("lstm_lm config: all sizes must be positive")


class LSTMLM(nn.Module):
    """(batch, time) token ids -> (batch, time, vocab_size) logits of the next token."""

    def __init__(self, config: LSTMLMConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding)
        self.layers = nn.ModuleList()
        width = config.embedding
        for _ in range(config.num_layers):
            self.layers.append(LSTMLayer(width, config.cells))
            width = config.cells
        self.output = nn.Linear(width, config.vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.embedding(tokens.long())
        for layer in self.layers:
            hidden = layer(hidden)
        return self.output(hidden)
