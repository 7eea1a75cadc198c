"""Feed-forward DNN acoustic model over spliced frames (the BN50 hybrid DNN)."""
from dataclasses import dataclass, field

import torch
from torch import nn

from esgd_asr.errors import EsgdError

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


@dataclass
class DNNConfig:
    """Shape of a FeedForwardDNN: input = splice x feat_dim, one activation per hidden layer. The defaults are
    conf/dnn.yaml's (the recipe's scale; the papers' BN50 shape is its preset bn50); feat_dim and num_targets are
    set from the data (esgd_asr.hybrid.sets.fit_config)."""

    feat_dim: int = 40
    splice: int = 9
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256, 256])
    activations: list[str] = field(default_factory=lambda: ["relu", "relu", "sigmoid", "sigmoid"])
    num_targets: int = 500

    def __post_init__(self):
        if len(self.hidden) != len(self.activations):
            raise EsgdError(f"dnn config: {len(self.hidden)} hidden sizes but {len(self.activations)} activations")
        unknown = [a for a in self.activations if a not in ACTIVATIONS]
        if unknown:
            raise EsgdError(f"dnn config: unknown activation {unknown[0]!r} (choose from {sorted(ACTIVATIONS)})")
        if min([self.feat_dim, self.splice, self.num_targets, *self.hidden]) < 1:
            raise EsgdError("dnn config: feat_dim, splice, num_targets and hidden sizes must be positive")

    @property
    def input_dim(self) -> int:
        return self.feat_dim * self.splice


class FeedForwardDNN(nn.Module):
    """Hidden affine layers with per-layer activations and a linear senone output; forward returns logits.

    Input is (..., splice * feat_dim); the spliced frames are flattened by the data pipeline.
    """

    def __init__(self, config: DNNConfig):
        super().__init__()
        self.config = config
        layers = []
        width = config.input_dim
        for size, activation in zip(config.hidden, config.activations):
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            width = size
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(width, config.num_targets)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(self.hidden(features))
