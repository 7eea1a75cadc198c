"""Import a Kaldi nnet3 feed-forward acoustic model written in text form (`nnet3-copy --binary=false final.raw`)
as a FeedForwardDNN: the first component's input is an `Append(Offset(input, -l), ..., Offset(input, r))` splice
of consecutive frames, then affine layers (AffineComponent, NaturalGradientAffineComponent, FixedAffineComponent)
each followed by one of RectifiedLinearComponent, SigmoidComponent, TanhComponent,
the last affine layer by an optional (Log)SoftmaxComponent (dropped: the DNN returns logits, whose log-softmax is
the same). Anything else (batch norm, TDNN offsets beyond the first layer, LSTMs) is refused naming the component.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.models.dnn import DNNConfig, FeedForwardDNN

AFFINE = ("AffineComponent", "NaturalGradientAffineComponent", "FixedAffineComponent")
ACTIVATIONS = {"RectifiedLinearComponent": "relu", "SigmoidComponent": "sigmoid", "TanhComponent": "tanh"}
OUTPUTS = ("SoftmaxComponent", "LogSoftmaxComponent")
NODE = re.compile(r"^component-node\s+name=(\S+)\s+component=(\S+)\s+input=(.+)$")
INPUT = re.compile(r"^input-node\s+name=(\S+)\s+dim=(\d+)")
APPEND_ITEM = re.compile(r"Offset\(\s*([\w.-]+)\s*,\s*(-?\d+)\s*\)|([\w.-]+)")


def is_nnet3_text(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(7) == b"<Nnet3>"


def _matrix(text: str, name: str, tag: str, where: str) -> np.ndarray | None:
    match = re.search(rf"<{tag}>\s*\[(.*?)\]", text, re.S)
    if match is None:
        return None
    rows = [line.split() for line in match.group(1).strip().splitlines() if line.strip()]
    try:
        return np.array(rows, dtype=np.float32) if tag == "LinearParams" else np.array(
            [v for row in rows for v in row], dtype=np.float32)
    except ValueError:
        raise EsgdError(f"{where}: component {name}: unreadable <{tag}>") from None


def _components(text: str, where: str) -> dict[str, tuple[str, str]]:
    """name -> (type, body) of every <ComponentName> block."""
    found = {}
    for match in re.finditer(r"<ComponentName>\s+(\S+)\s+<(\w+)>(.*?)</\2>", text, re.S):
        found[match.group(1)] = (match.group(2), match.group(3))
    if not found:
        raise EsgdError(f"{where}: no components found (not an nnet3 text model?)")
    return found


def read_nnet3_dnn(path: str | Path) -> tuple[DNNConfig, FeedForwardDNN]:
    """The DNNConfig and FeedForwardDNN of a Kaldi nnet3 text feed-forward model (see the module doc)."""
    path = Path(path)
    where = str(path)
    text = path.read_text()
    inputs = [INPUT.match(line.strip()) for line in text.splitlines()]
    inputs = [m for m in inputs if m]
    if len(inputs) != 1:
        raise EsgdError(f"{where}: expected one input-node (an i-vector input is not supported), got {len(inputs)}")
    input_name, feat_dim = inputs[0].group(1), int(inputs[0].group(2))
    nodes = [NODE.match(line.strip()) for line in text.splitlines()]
    nodes = [m for m in nodes if m]
    if not nodes:
        raise EsgdError(f"{where}: no component-node lines")
    components = _components(text, where)
    first_input = nodes[0].group(3).strip()
    inner = first_input[len("Append("):-1] if first_input.startswith("Append(") else first_input
    items = [(m.group(1) or m.group(3), int(m.group(2) or 0)) for m in APPEND_ITEM.finditer(inner)]
    offsets = [offset for _, offset in items]
    left = (len(offsets) - 1) // 2
    if any(name != input_name for name, _ in items) or offsets != list(range(-left, len(offsets) - left)):
        raise EsgdError(f"{where}: first layer input {first_input!r} is not a centred splice of consecutive frames")
    layers: list[list] = []  # [weight, bias, activation]
    for node in nodes:
        name, component = node.group(1), node.group(2)
        if node is not nodes[0] and not re.fullmatch(r"\S+", node.group(3).strip()):
            raise EsgdError(f"{where}: component-node {name}: input {node.group(3)!r} is not a plain chain")
        if component not in components:
            raise EsgdError(f"{where}: component-node {name} uses an undefined component {component}")
        kind, body = components[component]
        if kind in AFFINE:
            weight = _matrix(body, component, "LinearParams", where)
            if weight is None:
                raise EsgdError(f"{where}: component {component}: no <LinearParams>")
            bias = _matrix(body, component, "BiasParams", where)
            layers.append([weight, bias if bias is not None else np.zeros(len(weight), np.float32), None])
        elif kind in ACTIVATIONS and layers and layers[-1][2] is None:
            layers[-1][2] = ACTIVATIONS[kind]
        elif kind in OUTPUTS and node is nodes[-1]:
            continue
        else:
            raise EsgdError(f"{where}: component {component} ({kind}) is not supported here")
    if len(layers) < 2 or layers[-1][2] is not None or any(a is None for _, _, a in layers[:-1]):
        raise EsgdError(f"{where}: expected affine + activation layers and a final affine layer")
    config = DNNConfig(feat_dim=feat_dim, splice=len(offsets), hidden=[len(w) for w, _, _ in layers[:-1]],
                       activations=[a for _, _, a in layers[:-1]], num_targets=len(layers[-1][0]))
    model = FeedForwardDNN(config)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for linear, (weight, bias, _) in zip(linears, layers):
            if tuple(weight.shape) != tuple(linear.weight.shape) or len(bias) != len(linear.bias):
                raise EsgdError(f"{where}: an affine layer of shape {weight.shape} does not follow from the one "
                                f"before (expected {tuple(linear.weight.shape)})")
            linear.weight.copy_(torch.from_numpy(weight))
            linear.bias.copy_(torch.from_numpy(bias))
    return config, model
