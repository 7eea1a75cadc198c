"""Bidirectional LSTM acoustic model with a linear bottleneck (the SWB300 hybrid BLSTM).

The LSTM layers are one `nn.LSTM` (cuDNN on the GPU, oneDNN on the CPU), so training, validation and decoding of a
single model run on the fused kernels and the model exports with TorchScript. Populations of BiLSTMs stack these
very parameters (population/stacked.py); model files written when the layers were per-direction `nn.Linear` pairs
(`layers.L.D.input_gates.*` / `hidden_gates.*`) still load: their keys are renamed on loading (same values, same
gate order).
"""
import re
from dataclasses import dataclass

import torch
from torch import nn

from esgd_asr.errors import EsgdError

_LEGACY_KEY = re.compile(r"^(.*)layers\.(\d+)\.([01])\.(input|hidden)_gates\.(weight|bias)$")


@dataclass
class BLSTMConfig:
    """Shape of a BiLSTM: input_dim = LDA dim + i-vector dim, trained on chunks of `chunk` frames, each seen with
    up to `chunk_left_context` / `chunk_right_context` frames around it that carry no targets (the data's
    windows; the network itself takes any length). The defaults are conf/blstm.yaml's (the recipe's scale; the
    papers' SWB300 shape is its preset swb300); input_dim and num_targets are set from the data."""

    input_dim: int = 140
    num_layers: int = 2
    cells: int = 64
    bottleneck: int = 32
    num_targets: int = 500
    chunk: int = 21
    chunk_left_context: int = 10
    chunk_right_context: int = 10

    def __post_init__(self):
        if min(self.input_dim, self.num_layers, self.cells, self.bottleneck, self.num_targets, self.chunk) < 1:
            raise EsgdError("blstm config: all sizes must be positive")
        if min(self.chunk_left_context, self.chunk_right_context) < 0:
            raise EsgdError("blstm config: chunk contexts must be >= 0")


def lstm_parameter_names(num_layers: int, prefix: str = "lstm.") -> list[str]:
    """The nn.LSTM parameter names in the order torch.lstm takes its weight list: per layer, forward then reverse
    direction, each (weight_ih, weight_hh, bias_ih, bias_hh)."""
    return [f"{prefix}{kind}_l{layer}{suffix}" for layer in range(num_layers) for suffix in ("", "_reverse")
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def rename_legacy_keys(state: dict) -> dict:
    """A state dict (or stacked population state) with the keys of the former per-direction layout renamed to
    nn.LSTM's: layers.L.D.input_gates.W -> lstm.W_ih_lL[_reverse], hidden_gates -> W_hh; other keys unchanged."""
    renamed = {}
    for key, value in state.items():
        match = _LEGACY_KEY.match(key)
        if match:
            prefix, layer, direction, gates, kind = match.groups()
            key = f"{prefix}lstm.{kind}_{'ih' if gates == 'input' else 'hh'}_l{layer}{'_reverse' * (direction == '1')}"
        renamed[key] = value
    return renamed


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM -> linear bottleneck -> senone logits for every frame of a chunk."""

    def __init__(self, config: BLSTMConfig):
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.input_dim, config.cells, num_layers=config.num_layers, bidirectional=True,
                            batch_first=True)
        self.bottleneck = nn.Linear(2 * config.cells, config.bottleneck)
        self.output = nn.Linear(config.bottleneck, config.num_targets)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, time, input_dim) -> (batch, time, num_targets) logits."""
        return self.output(self.bottleneck(self.lstm(features)[0]))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if any(_LEGACY_KEY.match(key) for key in state_dict if key.startswith(prefix)):
            renamed = rename_legacy_keys(state_dict)
            state_dict.clear()
            state_dict.update(renamed)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
