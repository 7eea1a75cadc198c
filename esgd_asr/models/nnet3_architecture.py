"""The architecture of an imported Kaldi nnet3 network (a TDNN, TDNN-F, ...) as a model config, so that a
population of it can be trained like one of our DNNs: `build_model(Nnet3Config)` makes a member with freshly
initialised trainable layers and the anchor's fixed parts.

`Nnet3Config` holds the network's config lines (as `nnet3_config_lines` writes them) and, per component node, its
layer: affine / linear / TDNN layers by their shape (trained, so drawn anew in every member), the fixed parts by
their values (FixedAffine, i.e. Kaldi's LDA, and test-mode BatchNorm statistics: buffers, which the population
never trains), the other layers by their kind and settings. Everything fits in a YAML / JSON-like dict, which
model files and checkpoints store as they store a DNNConfig.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.models.kaldi_nnet3 import (AffineLayer, Nnet3Graph, Nnet3Network, RmsNormalize, ScaleOffset,
                                         nnet3_config_lines, parse_config_lines)

SIMPLE_LAYERS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity,
                 "log_softmax": lambda: nn.LogSoftmax(dim=-1), "softmax": lambda: nn.Softmax(dim=-1)}
SIMPLE_TYPES = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Identity: "identity",
                nn.LogSoftmax: "log_softmax", nn.Softmax: "softmax"}


@dataclass
class Nnet3Config:
    """An nnet3 network's config lines, its layers (component node -> `layer_spec`), and its flat input width
    (context frames x (features + i-vector)) and output width."""

    nodes: list[str]
    layers: dict[str, dict]
    input_dim: int
    num_targets: int

    def __repr__(self) -> str:  # the fixed parts' values would fill a log line
        return (f"Nnet3Config({len(self.layers)} component nodes, input dim {self.input_dim}, "
                f"{self.num_targets} outputs)")


def layer_spec(layer: nn.Module) -> dict:
    """What a member needs to make `layer` anew: shapes of trained weights, values of fixed ones."""
    if isinstance(layer, AffineLayer):
        linear = layer.linear
        if layer.fixed:
            return {"type": "fixed_affine", "weight": linear.weight.tolist(), "bias": linear.bias.tolist(),
                    "offsets": list(layer.offsets)}
        return {"type": "affine", "in": linear.in_features, "out": linear.out_features,
                "bias": linear.bias is not None, "offsets": list(layer.offsets)}
    if isinstance(layer, ScaleOffset):
        return {"type": "batch_norm", "scale": layer.scale.tolist(), "offset": layer.offset.tolist()}
    if isinstance(layer, RmsNormalize):
        return {"type": "normalize", "target_rms": layer.target_rms, "block_dim": layer.block_dim}
    if type(layer) in SIMPLE_TYPES:
        return {"type": SIMPLE_TYPES[type(layer)]}
    raise EsgdError(f"nnet3 architecture: no layer spec for {type(layer).__name__}")


def layer_from_spec(spec: dict) -> nn.Module:
    kind = spec["type"]
    if kind == "affine":
        return AffineLayer(nn.Linear(spec["in"], spec["out"], bias=spec["bias"]), spec["offsets"])
    if kind == "fixed_affine":
        return AffineLayer.of(np.array(spec["weight"], np.float32), np.array(spec["bias"], np.float32),
                              spec["offsets"], fixed=True)
    if kind == "batch_norm":
        return ScaleOffset(np.array(spec["scale"], np.float32), np.array(spec["offset"], np.float32))
    if kind == "normalize":
        return RmsNormalize(spec["target_rms"], spec["block_dim"])
    if kind in SIMPLE_LAYERS:
        return SIMPLE_LAYERS[kind]()
    raise EsgdError(f"nnet3 architecture: unknown layer type {kind!r}")


def nnet3_config(network: Nnet3Network) -> Nnet3Config:
    """The architecture of `network` (its trained weights left out)."""
    return Nnet3Config(nnet3_config_lines(network),
                       {name: layer_spec(network.layers[network.index[name]]) for name in network.order},
                       network.splice * network.frame_dim, network.output_dim)


def build_nnet3_network(config: Nnet3Config) -> Nnet3Network:
    """A member of the architecture: trained layers initialised as nn.Linear does (torch's RNG), fixed ones as
    the config says."""
    inputs, nodes, outputs = parse_config_lines(config.nodes, "nnet3 architecture")
    network = Nnet3Network(Nnet3Graph(inputs, nodes, outputs, {}, "nnet3 architecture"), "output",
                           {name: layer_from_spec(spec) for name, spec in config.layers.items()})
    if (network.splice * network.frame_dim, network.output_dim) != (config.input_dim, config.num_targets):
        raise EsgdError(f"nnet3 architecture: the layers give input dim {network.splice * network.frame_dim} and "
                        f"{network.output_dim} outputs, the config says {config.input_dim} and {config.num_targets}")
    return network
