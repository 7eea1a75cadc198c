"""Kaldi nnet3 models in text form (`nnet3-copy --binary=false final.raw`, `nnet3-am-copy --raw=true
--binary=false final.mdl`, or a text final.mdl) as torch modules that compute what Kaldi computes.

The config lines (any key order) give input nodes (features `input`, i-vectors `ivector`), component nodes and
output nodes, each reading a descriptor: a node name, `Append`, `Offset`, `Sum`, `Scale`, `ReplaceIndex`,
`IfDefined`. Components: AffineComponent, NaturalGradientAffineComponent, FixedAffineComponent (folded into the
affine it feeds where that affine reads only it in a plain DNN, else a layer whose weights are buffers, fixed in a
population of the network), LinearComponent, TdnnComponent, BatchNormComponent (test-mode
statistics), NormalizeComponent, Dropout/GeneralDropout and NoOp (identity), RectifiedLinear, Sigmoid, Tanh,
Softmax, LogSoftmax. Anything else is refused, every unsupported component named in one message.

`Nnet3Network` evaluates the graph for one output node over a window of frames, as Kaldi's descriptors say:
input (batch, frames, dim) with the input nodes' columns side by side (`input`, then `ivector`), output
(batch, frames - left_context - right_context, out); a flat (batch, splice * dim) input of `splice` =
left + 1 + right frames gives (batch, out), the hybrid DNN contract. `ReplaceIndex(ivector, t, 0)` reads the
i-vector of the window's first output frame. `IfDefined` parts add nothing to the context (as in Kaldi): they
are zeros where the window does not reach. A final Softmax is evaluated as its log (decoding takes
log-posteriors). `read_nnet3_model` imports an acoustic model: a plain splice + affine/activation stack becomes a
FeedForwardDNN (so it can anchor a DNN population), anything else an Nnet3Network; chain models (the output has
no softmax) are refused with the reason. `nnet3_network_text` writes an Nnet3Network back as nnet3 text (the
graph of its output node, each layer as the component Kaldi computes it with), `nnet3_dnn_text` our DNN.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.models.dnn import DNNConfig, FeedForwardDNN

AFFINE = ("AffineComponent", "NaturalGradientAffineComponent", "FixedAffineComponent", "LinearComponent",
          "TdnnComponent")
ACTIVATIONS = {"RectifiedLinearComponent": "relu", "SigmoidComponent": "sigmoid", "TanhComponent": "tanh"}
IDENTITY = ("NoOpComponent", "DropoutComponent", "GeneralDropoutComponent")
SOFTMAX = ("SoftmaxComponent", "LogSoftmaxComponent")
SUPPORTED = AFFINE + tuple(ACTIVATIONS) + IDENTITY + SOFTMAX + ("BatchNormComponent", "NormalizeComponent")
SQUARED_NORM_FLOOR = 2.0 ** -66  # Kaldi's floor on a row's mean square in NormalizeComponent
INF = 1 << 40
BINARY_COMMANDS = {b"<Nnet3>": "nnet3-copy --binary=false {path} {path}.txt",
                   b"<TransitionModel>": "nnet3-am-copy --raw=true --binary=false {path} {path}.txt"}


def is_nnet3_file(path: str | Path) -> bool:
    """Whether `path` is a Kaldi nnet3 model (raw or acoustic model, text or binary)."""
    with open(path, "rb") as f:
        head = f.read(64)
    head = head[2:] if head.startswith(b"\0B") else head
    return head.lstrip().startswith((b"<Nnet3>", b"<TransitionModel>"))


def _check_text(path: Path) -> str:
    """The text of a text-form model; a binary one is refused with the command that converts it."""
    data = path.read_bytes()
    if data.startswith(b"\0B"):
        tag = next((t for t in BINARY_COMMANDS if data[2:].startswith(t)), b"<Nnet3>")
        if b"<Nnet3>" not in data:
            raise EsgdError(f"{path}: a Kaldi binary model without an nnet3 network (a GMM or nnet2 model?)")
        raise EsgdError(f"{path}: a Kaldi binary {tag.decode()} model; convert it to text first: "
                        + BINARY_COMMANDS[tag].format(path=path))
    text = data.decode(errors="replace")
    start, end = text.find("<Nnet3>"), text.find("</Nnet3>")
    if start < 0 or end < 0:
        raise EsgdError(f"{path}: no <Nnet3> ... </Nnet3> section (a GMM, nnet1 or nnet2 model, or truncated?)")
    return text[start:end]


# ---- descriptors -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Desc:
    """A descriptor: op in node / offset / append / sum / scale / replace / ifdefined."""

    op: str
    name: str = ""
    parts: tuple = ()
    value: float = 0.0


def _tokens(text: str) -> list[str]:
    return re.findall(r"[(),]|[^\s(),]+", text)


def parse_descriptor(text: str, where: str) -> Desc:
    tokens, pos = _tokens(text), 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        if pos >= len(tokens) or (expected is not None and tokens[pos] != expected):
            raise EsgdError(f"{where}: bad descriptor {text!r} (expected {expected or 'more'} at token {pos})")
        pos += 1
        return tokens[pos - 1]

    def number() -> float:
        token = take()
        try:
            return float(token)
        except ValueError:
            raise EsgdError(f"{where}: bad descriptor {text!r} ({token!r} is not a number)") from None

    def desc() -> Desc:
        head = take()
        if pos >= len(tokens) or tokens[pos] != "(":
            return Desc("node", name=head)
        take("(")
        if head in ("Append", "Sum"):
            parts = [desc()]
            while tokens[pos] == ",":
                take(",")
                parts.append(desc())
            result = Desc(head.lower(), parts=tuple(parts))
        elif head == "Offset":
            inner = desc()
            take(",")
            result = Desc("offset", parts=(inner,), value=number())
            if tokens[pos] == ",":  # Offset(x, t, x-offset): only x-offset 0 (no 2-D indexes here)
                take(",")
                if number() != 0:
                    raise EsgdError(f"{where}: descriptor {text!r}: Offset with an x offset is not supported")
        elif head == "Scale":
            scale = number()
            take(",")
            result = Desc("scale", parts=(desc(),), value=scale)
        elif head == "ReplaceIndex":
            inner = desc()
            take(",")
            if take() != "t":
                raise EsgdError(f"{where}: descriptor {text!r}: ReplaceIndex of an index other than t")
            take(",")
            result = Desc("replace", parts=(inner,), value=number())
        elif head == "IfDefined":
            result = Desc("ifdefined", parts=(desc(),))
        else:
            raise EsgdError(f"{where}: descriptor {head}(...) is not supported (Append, Offset, Sum, Scale, "
                            f"ReplaceIndex, IfDefined are)")
        take(")")
        return result

    result = desc()
    if pos != len(tokens):
        raise EsgdError(f"{where}: bad descriptor {text!r} (trailing {' '.join(tokens[pos:])!r})")
    return result


def _node_names(desc: Desc) -> set[str]:
    return {desc.name} if desc.op == "node" else set().union(*(_node_names(p) for p in desc.parts))


# ---- the text format ---------------------------------------------------------------------------------------

@dataclass
class Component:
    kind: str
    fields: dict[str, str]

    def matrix(self, tag: str, where: str) -> np.ndarray | None:
        """A `[ rows ]` matrix or `[ values ]` vector field as float32 (None when absent)."""
        text = self.fields.get(tag)
        if text is None:
            return None
        body = text.strip()
        if not (body.startswith("[") and body.endswith("]")):
            raise EsgdError(f"{where}: <{tag}> is not a [ ... ] matrix or vector")
        rows = [row.split() for row in body[1:-1].strip().splitlines() if row.strip()]
        try:
            if len(rows) > 1 or body[1:].lstrip(" ").startswith("\n"):
                return np.array(rows, dtype=np.float32)
            return np.array(rows[0] if rows else [], dtype=np.float32)
        except ValueError:
            raise EsgdError(f"{where}: unreadable <{tag}> (rows of unequal length or non-numbers)") from None

    def scalar(self, tag: str, default: float, where: str) -> float:
        text = self.fields.get(tag)
        if text is None or not text.split():
            return default
        try:
            return float(text.split()[0])
        except ValueError:
            raise EsgdError(f"{where}: <{tag}> {text.split()[0]!r} is not a number") from None


@dataclass
class Nnet3Graph:
    """The parsed text model: input nodes (name -> dim), component nodes (name -> (component, descriptor)) in
    file order, output nodes (name -> (descriptor, objective)) and components (name -> Component)."""

    inputs: dict[str, int]
    nodes: dict[str, tuple[str, Desc]]
    outputs: dict[str, tuple[Desc, str]]
    components: dict[str, Component]
    where: str = ""
    folded: list[str] = field(default_factory=list)


def _config_fields(line: str) -> dict[str, str]:
    """key=value pairs of a config line; a value runs to the next key at parenthesis depth 0."""
    pairs, depth, start, key = {}, 0, None, None
    for match in re.finditer(r"[()]|\s+|([\w.-]+)=", line):
        if match.group(0) == "(":
            depth += 1
        elif match.group(0) == ")":
            depth -= 1
        elif match.group(1) and depth == 0:
            if key is not None:
                pairs[key] = line[start:match.start()].strip()
            key, start = match.group(1), match.end()
    if key is not None:
        pairs[key] = line[start:].strip()
    return pairs


def _component_fields(body: str) -> dict[str, str]:
    parts = re.split(r"<(\w+)>", body)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def parse_config_lines(lines: list[str], where: str, first_line: int = 1) -> tuple[dict, dict, dict]:
    """Input nodes (name -> dim), component nodes (name -> (component, descriptor)) and output nodes (name ->
    (descriptor, objective)) of an nnet3 model's config lines."""
    inputs, nodes, outputs = {}, {}, {}
    for lineno, line in enumerate(lines, first_line):
        kind, _, remainder = line.strip().partition(" ")
        if not kind:
            continue
        values = _config_fields(remainder)
        name = values.get("name")
        here = f"{where}: {kind} {name}"
        if kind == "input-node":
            inputs[name] = int(values.get("dim", 0))
        elif kind == "component-node":
            if "component" not in values or "input" not in values:
                raise EsgdError(f"{here}: needs component= and input=")
            nodes[name] = (values["component"], parse_descriptor(values["input"], here))
        elif kind == "output-node":
            outputs[name] = (parse_descriptor(values.get("input", ""), here), values.get("objective", "linear"))
        else:
            raise EsgdError(f"{where}: line {lineno}: {kind} is not supported (input-node, component-node and "
                            f"output-node are)")
        if not name:
            raise EsgdError(f"{where}: line {lineno}: {kind} without name=")
    return inputs, nodes, outputs


def parse_nnet3_text(text: str, where: str) -> Nnet3Graph:
    """Parse the <Nnet3> section of a text model."""
    config, _, rest = text.partition("<NumComponents>")
    inputs, nodes, outputs = parse_config_lines(config.splitlines()[1:], where, 2)
    components = {m.group(1): Component(m.group(2), _component_fields(m.group(3)))
                  for m in re.finditer(r"<ComponentName>\s+(\S+)\s+<(\w+)>(.*?)</\2>", rest, re.S)}
    if not inputs or not outputs:
        raise EsgdError(f"{where}: no input-node or no output-node lines (not an nnet3 model?)")
    for name, (component, _) in nodes.items():
        if component not in components:
            raise EsgdError(f"{where}: component-node {name} uses an undefined component {component}")
    return Nnet3Graph(inputs, nodes, outputs, components, where)


# ---- components as torch modules ---------------------------------------------------------------------------

class FixedLinear(nn.Module):
    """x W^T + b with W and b buffers, not parameters (FixedAffineComponent: Kaldi's LDA, never trained)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class AffineLayer(nn.Module):
    """Affine / linear / TDNN layer: the input at time offsets `offsets` side by side, times W, plus b; `linear`
    an nn.Linear (trained) or a FixedLinear."""

    def __init__(self, linear: nn.Linear | FixedLinear, offsets: tuple[int, ...] = (0,)):
        super().__init__()
        self.linear, self.offsets = linear, tuple(offsets)

    @classmethod
    def of(cls, weight: np.ndarray, bias: np.ndarray | None, offsets: tuple[int, ...] = (0,),
           fixed: bool = False) -> "AffineLayer":
        """The layer with these values (float32)."""
        if fixed:
            bias = np.zeros(len(weight), np.float32) if bias is None else bias
            return cls(FixedLinear(torch.tensor(weight, dtype=torch.float32),
                                   torch.tensor(bias, dtype=torch.float32)), offsets)
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight))
            if bias is not None:
                linear.bias.copy_(torch.from_numpy(bias))
        return cls(linear, offsets)

    @property
    def fixed(self) -> bool:
        return isinstance(self.linear, FixedLinear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.offsets != (0,):
            first, n = self.offsets[0], x.shape[1] - (self.offsets[-1] - self.offsets[0])
            x = torch.cat([x[:, o - first:o - first + n] for o in self.offsets], dim=-1)
        return self.linear(x)


class ScaleOffset(nn.Module):
    """x * scale + offset per block of `scale`'s size (BatchNormComponent in test mode)."""

    def __init__(self, scale: np.ndarray, offset: np.ndarray):
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(scale.astype(np.float32)))
        self.register_buffer("offset", torch.from_numpy(offset.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = x.reshape(*x.shape[:-1], -1, len(self.scale))
        return (blocks * self.scale + self.offset).reshape(x.shape)


class RmsNormalize(nn.Module):
    """NormalizeComponent: each block of a row scaled to root-mean-square `target_rms`."""

    def __init__(self, target_rms: float, block_dim: int):
        super().__init__()
        self.target_rms, self.block_dim = target_rms, block_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = x.reshape(*x.shape[:-1], -1, self.block_dim)
        mean_square = blocks.pow(2).mean(-1, keepdim=True).clamp_min(SQUARED_NORM_FLOOR)
        return (blocks * (self.target_rms * mean_square.rsqrt())).reshape(x.shape)


def _vector(component: Component, tag: str, where: str) -> np.ndarray:
    value = component.matrix(tag, where)
    if value is None:
        raise EsgdError(f"{where}: no <{tag}>")
    return value.reshape(-1)


def _affine(component: Component, where: str) -> AffineLayer:
    weight = component.matrix("Params" if component.kind == "LinearComponent" else "LinearParams", where)
    if weight is None or weight.ndim != 2:
        raise EsgdError(f"{where}: no weight matrix")
    bias = None if component.kind == "LinearComponent" else component.matrix("BiasParams", where)
    bias = None if bias is None or bias.size == 0 else bias.reshape(-1)
    if bias is not None and len(bias) != len(weight):
        raise EsgdError(f"{where}: {len(bias)} biases for {len(weight)} outputs")
    offsets = (0,)
    if component.kind == "TdnnComponent":
        offsets = tuple(int(v) for v in _vector(component, "TimeOffsets", where))
        if not offsets or list(offsets) != sorted(set(offsets)) or weight.shape[1] % len(offsets):
            raise EsgdError(f"{where}: <TimeOffsets> {list(offsets)} do not fit {weight.shape[1]} inputs")
    return AffineLayer.of(weight, bias, offsets, fixed=component.kind == "FixedAffineComponent")


def component_module(component: Component, where: str, final: bool = False) -> nn.Module:
    """The torch module computing `component`; a final Softmax as its log (`final`)."""
    kind = component.kind
    if kind in AFFINE:
        return _affine(component, where)
    if kind in ACTIVATIONS:
        return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[ACTIVATIONS[kind]]()
    if kind in IDENTITY:
        return nn.Identity()
    if kind == "LogSoftmaxComponent" or (kind == "SoftmaxComponent" and final):
        return nn.LogSoftmax(dim=-1)
    if kind == "SoftmaxComponent":
        return nn.Softmax(dim=-1)
    if kind == "BatchNormComponent":
        mean, var = _vector(component, "StatsMean", where), _vector(component, "StatsVar", where)
        scale = component.scalar("TargetRms", 1.0, where) / np.sqrt(var.astype(np.float64)
                                                                    + component.scalar("Epsilon", 1e-3, where))
        return ScaleOffset(scale, -mean * scale)
    if kind == "NormalizeComponent":
        if component.fields.get("AddLogStddev", "F").split()[:1] == ["T"]:
            raise EsgdError(f"{where}: NormalizeComponent with <AddLogStddev> T is not supported")
        dim = int(component.scalar("InputDim", 0, where) or component.scalar("Dim", 0, where))
        return RmsNormalize(component.scalar("TargetRms", 1.0, where),
                            int(component.scalar("BlockDim", dim, where)))
    raise EsgdError(f"{where}: {kind} is not supported")


def _module_dims(module: nn.Module) -> tuple[int, int] | None:
    """(input, output) dims of an affine layer (input per time offset), None for dim-preserving modules."""
    if isinstance(module, AffineLayer):
        return module.linear.in_features // len(module.offsets), module.linear.out_features
    return None


# ---- the network -------------------------------------------------------------------------------------------

class Nnet3Network(nn.Module):
    """One output node of an nnet3 graph as a torch module (see the module doc)."""

    def __init__(self, graph: Nnet3Graph, output: str = "output", layers: dict[str, nn.Module] | None = None):
        """`layers`: the module of each component node (by node name) instead of the graph's components."""
        super().__init__()
        where = graph.where
        if output not in graph.outputs:
            raise EsgdError(f"{where}: no output-node {output!r} (has {', '.join(graph.outputs)})")
        self.output_desc = graph.outputs[output][0]
        self.order = _topological_order(graph, self.output_desc)
        self.input_names = sorted((n for n in graph.inputs if n in self._used(graph)),
                                  key=lambda n: (n != "input", n))
        self.input_dims = [graph.inputs[n] for n in self.input_names]
        self.descs = {name: graph.nodes[name][1] for name in self.order}
        if layers is None:
            layers = self._component_modules(graph)
        self.layers = nn.ModuleDict({str(i): layers[n] for i, n in enumerate(self.order)})
        self.index = {name: str(i) for i, name in enumerate(self.order)}
        self.dims = self._check_dims(where)
        self.output_dim = self._desc_dim(self.output_desc)
        requested = self._requests({}, unbounded=True)
        self.left_context = max([0] + [-requested[n][0] for n in self.input_names if n in requested])
        self.right_context = max([0] + [requested[n][1] - 1 for n in self.input_names if n in requested])
        self._plans: dict[int, dict] = {}

    def _component_modules(self, graph: Nnet3Graph) -> dict[str, nn.Module]:
        unsupported = sorted({f"{graph.nodes[n][0]} ({graph.components[graph.nodes[n][0]].kind})" for n in self.order
                              if graph.components[graph.nodes[n][0]].kind not in SUPPORTED})
        if unsupported:
            raise EsgdError(f"{graph.where}: unsupported components: {', '.join(unsupported)}")
        last = self.output_desc.name if self.output_desc.op == "node" else None
        return {n: component_module(graph.components[graph.nodes[n][0]], f"{graph.where}: component "
                                    f"{graph.nodes[n][0]}", final=n == last) for n in self.order}

    @property
    def frame_dim(self) -> int:
        return sum(self.input_dims)

    @property
    def splice(self) -> int:
        return self.left_context + 1 + self.right_context

    def _used(self, graph: Nnet3Graph) -> set[str]:
        return _node_names(self.output_desc).union(*(_node_names(graph.nodes[n][1]) for n in self.order))

    def _offsets(self, name: str) -> tuple[int, ...]:
        layer = self.layers[self.index[name]]
        return layer.offsets if isinstance(layer, AffineLayer) else (0,)

    def _desc_dim(self, desc: Desc) -> int:
        if desc.op == "node":
            return self.dims[desc.name]
        dims = [self._desc_dim(p) for p in desc.parts]
        if desc.op == "append":
            return sum(dims)
        if desc.op == "sum" and len(set(dims)) != 1:
            raise EsgdError(f"Sum of parts of dims {dims}")
        return dims[0]

    def _check_dims(self, where: str) -> dict[str, int]:
        self.dims = dict(zip(self.input_names, self.input_dims))
        for name in self.order:
            try:
                width = self._desc_dim(self.descs[name])
            except EsgdError as err:
                raise EsgdError(f"{where}: component-node {name}: {err}") from None
            dims = _module_dims(self.layers[self.index[name]])
            if dims is not None and dims[0] != width:
                raise EsgdError(f"{where}: component-node {name}: its input has dim {width}, its component takes "
                                f"{dims[0]}")
            self.dims[name] = dims[1] if dims is not None else width
        return self.dims

    # computable ranges and requests are half-open time intervals [lo, hi)
    def _computable(self, lo: int, hi: int) -> dict[str, tuple[int, int]]:
        """Where each node can be computed from inputs over [lo, hi)."""
        ranges = {name: (lo, hi) for name in self.input_names}
        for name in self.order:
            lo, hi = self._desc_range(self.descs[name], ranges)
            offsets = self._offsets(name)
            ranges[name] = (lo - offsets[0], hi - offsets[-1])
        return ranges

    def _desc_range(self, desc: Desc, ranges: dict) -> tuple[int, int]:
        if desc.op == "node":
            return ranges[desc.name]
        if desc.op == "ifdefined":
            return -INF, INF
        inner = [self._desc_range(p, ranges) for p in desc.parts]
        if desc.op == "offset":
            return inner[0][0] - int(desc.value), inner[0][1] - int(desc.value)
        if desc.op == "replace":
            return (-INF, INF) if inner[0][0] <= desc.value < inner[0][1] else (0, 0)
        return max(r[0] for r in inner), min(r[1] for r in inner)

    def _requests(self, ranges: dict, unbounded: bool = False, span: tuple[int, int] = (0, 1)) -> dict:
        """Time range each node must be computed over for the output over `span`."""
        requested: dict[str, tuple[int, int]] = {}

        def request(desc: Desc, lo: int, hi: int) -> None:
            if lo >= hi:
                return
            if desc.op == "node":
                old = requested.get(desc.name)
                requested[desc.name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
            elif desc.op == "offset":
                request(desc.parts[0], lo + int(desc.value), hi + int(desc.value))
            elif desc.op == "replace":
                request(desc.parts[0], int(desc.value), int(desc.value) + 1)
            elif desc.op == "ifdefined":  # no part of the context (as in Kaldi): zeros where not computable
                if not unbounded:
                    inner = self._desc_range(desc.parts[0], ranges)
                    request(desc.parts[0], max(lo, inner[0]), min(hi, inner[1]))
            else:
                for part in desc.parts:
                    request(part, lo, hi)

        request(self.output_desc, *span)
        for name in reversed(self.order):
            if name in requested:
                offsets = self._offsets(name)
                lo, hi = requested[name]
                request(self.descs[name], lo + offsets[0], hi + offsets[-1])
        return requested

    def _plan(self, frames: int) -> dict:
        plan = self._plans.get(frames)
        if plan is None:
            ranges = self._computable(-self.left_context, frames - self.left_context)
            span = (0, frames - self.splice + 1)
            lo, hi = self._desc_range(self.output_desc, ranges)
            if span[0] >= span[1] or lo > span[0] or hi < span[1]:
                raise EsgdError(f"nnet3 network: {frames} frames cannot give an output (context "
                                f"{self.left_context} + {self.right_context})")
            plan = {"ranges": ranges, "requests": self._requests(ranges, span=span), "span": span}
            self._plans[frames] = plan
        return plan

    def _evaluate(self, desc: Desc, lo: int, hi: int, values: dict, ranges: dict) -> torch.Tensor:
        if desc.op == "node":
            value, start = values[desc.name]
            return value[:, lo - start:hi - start]
        if desc.op == "offset":
            return self._evaluate(desc.parts[0], lo + int(desc.value), hi + int(desc.value), values, ranges)
        if desc.op == "replace":
            one = self._evaluate(desc.parts[0], int(desc.value), int(desc.value) + 1, values, ranges)
            return one.expand(-1, hi - lo, -1)
        if desc.op == "ifdefined":  # zeros where undefined (padding, not an in-place write: vmap-able)
            inner = self._desc_range(desc.parts[0], ranges)
            a, b = max(lo, inner[0]), min(hi, inner[1])
            if a >= b:
                first = next(iter(values.values()))[0]
                return first.new_zeros(first.shape[0], hi - lo, self._desc_dim(desc))
            return F.pad(self._evaluate(desc.parts[0], a, b, values, ranges), (0, 0, a - lo, hi - b))
        parts = [self._evaluate(p, lo, hi, values, ranges) for p in desc.parts]
        if desc.op == "append":
            return torch.cat(parts, dim=-1)
        if desc.op == "scale":
            return parts[0] * desc.value
        return torch.stack(parts).sum(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.dim() == 2
        if flat:
            x = x.reshape(x.shape[0], -1, self.frame_dim)
        plan = self._plan(x.shape[1])
        values, column = {}, 0
        for name, dim in zip(self.input_names, self.input_dims):
            values[name] = (x[..., column:column + dim], -self.left_context)
            column += dim
        for name in self.order:
            if name in plan["requests"]:
                lo, hi = plan["requests"][name]
                offsets = self._offsets(name)
                inputs = self._evaluate(self.descs[name], lo + offsets[0], hi + offsets[-1], values, plan["ranges"])
                values[name] = (self.layers[self.index[name]](inputs), lo)
        out = self._evaluate(self.output_desc, *plan["span"], values, plan["ranges"])
        return out[:, 0] if flat else out


def _topological_order(graph: Nnet3Graph, output: Desc) -> list[str]:
    """Component nodes the output depends on, each after the nodes it reads; a cycle is refused."""
    order, state = [], {}

    def visit(name: str, path: tuple) -> None:
        if name in graph.inputs or state.get(name) == "done":
            return
        if name not in graph.nodes:
            raise EsgdError(f"{graph.where}: descriptor names an unknown node {name!r}")
        if state.get(name) == "active":
            raise EsgdError(f"{graph.where}: recurrent connection {' -> '.join(path + (name,))} (recurrent "
                            f"networks are not supported)")
        state[name] = "active"
        for dependency in sorted(_node_names(graph.nodes[name][1])):
            visit(dependency, path + (name,))
        state[name] = "done"
        order.append(name)

    for name in sorted(_node_names(output)):
        visit(name, ())
    return order


# ---- rewrites and the acoustic-model import ---------------------------------------------------------------

def fold_fixed_affine(graph: Nnet3Graph) -> Nnet3Graph:
    """Fold each FixedAffineComponent (Kaldi's LDA) into the affine component that is its only reader and reads
    only it; the fixed node disappears from the graph."""
    readers: dict[str, list[str]] = {}
    for name, (_, desc) in graph.nodes.items():
        for used in _node_names(desc):
            readers.setdefault(used, []).append(name)
    for out_desc, _ in graph.outputs.values():
        for used in _node_names(out_desc):
            readers.setdefault(used, []).append("")
    for name, (component_name, desc) in list(graph.nodes.items()):
        fixed = graph.components[component_name]
        users = readers.get(name, [])
        if fixed.kind != "FixedAffineComponent" or len(users) != 1 or not users[0]:
            continue
        user = users[0]
        user_component, user_desc = graph.nodes[user]
        affine = graph.components[user_component]
        if user_desc != Desc("node", name=name) or affine.kind not in ("AffineComponent",
                                                                          "NaturalGradientAffineComponent"):
            continue
        where = f"{graph.where}: component {component_name}"
        w1, b1 = _affine(fixed, where).linear, _affine(affine, f"{graph.where}: component {user_component}").linear
        with torch.no_grad():
            weight = (b1.weight.double() @ w1.weight.double()).float()
            bias = (b1.weight.double() @ w1.bias.double() + b1.bias.double()).float()
        merged = f"{component_name}+{user_component}"
        graph.components[merged] = Component("AffineComponent", {"LinearParams": _text_matrix(weight.tolist()),
                                                                 "BiasParams": _text_vector(bias.tolist())})
        graph.nodes[user] = (merged, desc)
        del graph.nodes[name]
        graph.folded.append(component_name)
    return graph


def _as_feed_forward(network: Nnet3Network) -> tuple[DNNConfig, FeedForwardDNN] | None:
    """A FeedForwardDNN computing the same, when the network is a centred splice of one input followed by
    affine + activation layers and a final affine (+ log-softmax); None otherwise."""
    if network.input_names != ["input"] or network.left_context != network.splice - 1 - (network.splice - 1) // 2:
        return None
    layers = [network.layers[network.index[n]] for n in network.order]
    if isinstance(layers[-1], nn.LogSoftmax):
        layers = layers[:-1]
    affines, activations = layers[0::2], layers[1::2]
    names = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
    if (len(affines) != len(activations) + 1
            or not all(isinstance(a, AffineLayer) and a.offsets == (0,) and not a.fixed and a.linear.bias is not None
                       for a in affines)
            or not all(type(a) in names for a in activations)):
        return None
    splice = Desc("append", parts=tuple(Desc("node", name="input") if o == 0 else
                                        Desc("offset", parts=(Desc("node", name="input"),), value=o)
                                        for o in range(-network.left_context, network.right_context + 1)))
    first = network.descs[network.order[0]]
    chain = all(network.descs[b] == Desc("node", name=a) for a, b in zip(network.order, network.order[1:]))
    if not chain or network.output_desc != Desc("node", name=network.order[-1]) or first not in (
            splice, Desc("node", name="input")):
        return None
    config = DNNConfig(feat_dim=network.input_dims[0], splice=network.splice,
                       hidden=[a.linear.out_features for a in affines[:-1]],
                       activations=[names[type(a)] for a in activations], num_targets=affines[-1].linear.out_features)
    model = FeedForwardDNN(config)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for linear, affine in zip(linears, affines):
            linear.weight.copy_(affine.linear.weight)
            linear.bias.copy_(affine.linear.bias)
    return config, model


def read_nnet3_graph(path: str | Path) -> Nnet3Graph:
    """The parsed graph of a text nnet3 model file (a binary one is refused with its conversion command)."""
    path = Path(path)
    return parse_nnet3_text(_check_text(path), str(path))


def declared_input(network: Nnet3Network) -> dict:
    """The nnet input (esgd_asr.hybrid.prepare.NnetInput fields) an imported network declares: its context as a
    splice, online i-vectors (every 10 frames, Kaldi's default) where it has an i-vector input, and identity
    normalisation statistics (a Kaldi model normalises its own input)."""
    dim = network.frame_dim
    return {"kind": "dnn", "left_context": network.left_context, "right_context": network.right_context,
            "ivector_period": 10 if len(network.input_names) > 1 else 0,
            "global_stats": ((0.0,) * dim + (1.0,), (1.0,) * dim + (0.0,))}


def read_nnet3_model(path: str | Path, output: str = "output") -> tuple[DNNConfig | None, nn.Module, dict]:
    """An nnet3 acoustic model (cross-entropy output ending in a (log-)softmax): (DNNConfig, FeedForwardDNN) where
    it is one, else (None, Nnet3Network), and its declared nnet input."""
    graph = read_nnet3_graph(path)
    if output not in graph.outputs:
        raise EsgdError(f"{path}: no output-node {output!r} (has {', '.join(graph.outputs)})")
    desc = graph.outputs[output][0]
    last = graph.components[graph.nodes[desc.name][0]].kind if desc.op == "node" and desc.name in graph.nodes \
        else None
    if last not in SOFTMAX:
        chain = " (a chain model: its outputs are chain pdf scores at frame-subsampling 3, not senone posteriors " \
                "of a GMM tree; use a cross-entropy model)" if "output-xent" in graph.outputs else ""
        raise EsgdError(f"{path}: output-node {output!r} does not end in a softmax or log-softmax{chain}")
    network = Nnet3Network(graph, output)  # the FixedAffine parts kept apart: fixed in a population of it
    if network.input_names[:1] != ["input"] or len(network.input_names) > 2:
        raise EsgdError(f"{path}: expected the input-node 'input' (features) and at most one more (i-vectors), "
                        f"got {', '.join(network.input_names)}")
    folded = graph if not any(c.kind == "FixedAffineComponent" for c in graph.components.values()) else \
        fold_fixed_affine(copy.deepcopy(graph))
    feed_forward = _as_feed_forward(Nnet3Network(folded, output))
    config, module = feed_forward if feed_forward is not None else (None, network)
    return config, module.eval(), declared_input(network)


# ---- export ------------------------------------------------------------------------------------------------

def _text_matrix(rows) -> str:
    return "[\n" + "\n".join("  " + " ".join(f"{v:.9g}" for v in row) for row in rows) + " ]"


def _text_vector(values) -> str:
    return "[ " + " ".join(f"{v:.9g}" for v in values) + " ]"


def _affine_text(name: str, weight: torch.Tensor, bias: torch.Tensor) -> str:
    return (f"<ComponentName> {name} <NaturalGradientAffineComponent> <MaxChange> 0.75 <LearningRate> 0.001 "
            f"<LinearParams>  {_text_matrix(weight.tolist())}\n<BiasParams>  {_text_vector(bias.tolist())}\n"
            f"<RankIn> 20 <RankOut> 80 <UpdatePeriod> 4 <NumSamplesHistory> 2000 <Alpha> 4 "
            f"</NaturalGradientAffineComponent> ")


def _nonlinearity_text(name: str, kind: str, dim: int) -> str:
    return (f"<ComponentName> {name} <{kind}> <Dim> {dim} <ValueAvg>  [ ]\n<DerivAvg>  [ ]\n<Count> 0 "
            f"<NumDimsSelfRepaired> 0 <NumDimsProcessed> 0 <SelfRepairScale> 1e-05 </{kind}> ")


def _nnet3_text(lines: list[str], components: list[str]) -> str:
    return ("<Nnet3> \n" + "\n".join(lines) + f"\n\n<NumComponents> {len(components)} \n" + "\n".join(components)
            + "\n</Nnet3> \n")


def nnet3_dnn_text(config: DNNConfig, module: FeedForwardDNN, global_stats=()) -> str:
    """Kaldi nnet3 text (as `nnet3-copy --binary=false` writes it) of a FeedForwardDNN: the spliced input as an
    `Append` of offsets, one NaturalGradientAffineComponent per layer with its nonlinearity, a final
    LogSoftmaxComponent (a cross-entropy model, output node `output`). The global normalisation `global_stats`
    (Kaldi CMVN stats of the network input's frames, applied with variances) is folded into the first affine
    layer, so the model reads the front end's features as they are."""
    from esgd_asr.features.cmvn import cmvn_offset_scale  # torch only

    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    weight, bias = linears[0].weight.detach().double(), linears[0].bias.detach().double()
    if global_stats:
        offset, scale = cmvn_offset_scale(torch.tensor(global_stats, dtype=torch.float64), True, "global stats")
        bias = bias + weight @ offset.repeat(config.splice)
        weight = weight * scale.repeat(config.splice)
    left = (config.splice - 1) // 2
    splice = ", ".join("input" if o == 0 else f"Offset(input, {o})" for o in range(-left, config.splice - left))
    kinds = {"relu": ("relu", "RectifiedLinearComponent"), "sigmoid": ("sigmoid", "SigmoidComponent"),
             "tanh": ("tanh", "TanhComponent")}
    nodes, components, previous = [f"input-node name=input dim={config.feat_dim}"], [], f"Append({splice})"
    for i, linear in enumerate(linears):
        name = f"affine{i + 1}" if i < len(config.activations) else "output.affine"
        w, b = (weight, bias) if i == 0 else (linear.weight.detach(), linear.bias.detach())
        nodes.append(f"component-node name={name} component={name} input={previous}")
        components.append(_affine_text(name, w, b))
        previous = name
        prefix, kind = kinds[config.activations[i]] if i < len(config.activations) else ("output.log-softmax",
                                                                                          "LogSoftmaxComponent")
        name = f"{prefix}{i + 1}" if i < len(config.activations) else prefix
        nodes.append(f"component-node name={name} component={name} input={previous}")
        components.append(_nonlinearity_text(name, kind, linear.out_features))
        previous = name
    return _nnet3_text(nodes + [f"output-node name=output input={previous} objective=linear"], components)


def descriptor_text(desc: Desc) -> str:
    """A descriptor as nnet3 config text (Kaldi's Sum of more than two parts nested in twos)."""
    inner = [descriptor_text(p) for p in desc.parts]
    if desc.op == "node":
        return desc.name
    if desc.op == "offset":
        return f"Offset({inner[0]}, {int(desc.value)})"
    if desc.op == "replace":
        return f"ReplaceIndex({inner[0]}, t, {int(desc.value)})"
    if desc.op == "scale":
        return f"Scale({desc.value:.9g}, {inner[0]})"
    if desc.op == "ifdefined":
        return f"IfDefined({inner[0]})"
    if desc.op == "sum":
        text = inner[-1]
        for part in reversed(inner[:-1]):
            text = f"Sum({part}, {text})"
        return text
    return f"Append({', '.join(inner)})"


def nnet3_config_lines(network: Nnet3Network) -> list[str]:
    """The config lines of `network`: its inputs, each component node reading a component of its own name, and
    the output node `output`."""
    return ([f"input-node name={n} dim={d}" for n, d in zip(network.input_names, network.input_dims)]
            + [f"component-node name={n} component={n} input={descriptor_text(network.descs[n])}"
               for n in network.order]
            + [f"output-node name=output input={descriptor_text(network.output_desc)} objective=linear"])


def _component_text(name: str, layer: nn.Module, dim: int) -> str:
    """Kaldi text of the component computing `layer`, whose output has `dim` columns."""
    if isinstance(layer, AffineLayer):
        weight, bias = layer.linear.weight.detach(), layer.linear.bias
        bias_text = _text_vector([] if bias is None else bias.detach().tolist())
        if layer.fixed:
            return (f"<ComponentName> {name} <FixedAffineComponent> <LinearParams>  {_text_matrix(weight.tolist())}"
                    f"\n<BiasParams>  {bias_text}\n</FixedAffineComponent> ")
        if layer.offsets != (0,):
            return (f"<ComponentName> {name} <TdnnComponent> <MaxChange> 0.75 <LearningRate> 0.001 <TimeOffsets> "
                    f"{_text_vector(layer.offsets)}\n<LinearParams>  {_text_matrix(weight.tolist())}\n<BiasParams>  "
                    f"{bias_text}\n<OrthonormalConstraint> 0 <UseNaturalGradient> T <NumSamplesHistory> 2000 "
                    f"<AlphaInOut> 4 4 <RankInOut> 20 20 </TdnnComponent> ")
        if bias is None:
            return (f"<ComponentName> {name} <LinearComponent> <MaxChange> 0.75 <LearningRate> 0.001 <Params>  "
                    f"{_text_matrix(weight.tolist())}\n<OrthonormalConstraint> 0 <UseNaturalGradient> T "
                    f"<RankInOut> 20 20 <Alpha> 4 <NumSamplesHistory> 2000 <UpdatePeriod> 4 </LinearComponent> ")
        return _affine_text(name, weight, bias.detach())
    if isinstance(layer, ScaleOffset):  # test-mode BatchNorm: scale = rms / sqrt(var + eps), offset = -mean scale
        scale, offset = layer.scale.double(), layer.offset.double()
        target_rms = max(1.0, float(scale.max()))   # keeps var = (rms / scale)^2 - eps positive
        return (f"<ComponentName> {name} <BatchNormComponent> <Dim> {dim} <BlockDim> {len(scale)} <Epsilon> 0.001 "
                f"<TargetRms> {target_rms:.9g} <TestMode> T <Count> 1 <StatsMean>  "
                f"{_text_vector((-offset / scale).tolist())}\n<StatsVar>  "
                f"{_text_vector(((target_rms / scale) ** 2 - 0.001).tolist())}\n</BatchNormComponent> ")
    if isinstance(layer, RmsNormalize):
        return (f"<ComponentName> {name} <NormalizeComponent> <InputDim> {dim} <BlockDim> {layer.block_dim} "
                f"<TargetRms> {layer.target_rms:.9g} <AddLogStddev> F </NormalizeComponent> ")
    if isinstance(layer, nn.Identity):
        return f"<ComponentName> {name} <NoOpComponent> <Dim> {dim} <BackpropScale> 1 </NoOpComponent> "
    kinds = {nn.ReLU: "RectifiedLinearComponent", nn.Sigmoid: "SigmoidComponent", nn.Tanh: "TanhComponent",
             nn.LogSoftmax: "LogSoftmaxComponent", nn.Softmax: "SoftmaxComponent"}
    return _nonlinearity_text(name, kinds[type(layer)], dim)


def nnet3_network_text(network: Nnet3Network) -> str:
    """Kaldi nnet3 text of an Nnet3Network (imported, or a member of a population of one): its graph as
    `nnet3_config_lines`, each layer as the component Kaldi computes it with (a log-softmax output stays a
    LogSoftmaxComponent), so that this importer and Kaldi's nnet3 tools read it back to the same outputs."""
    return _nnet3_text(nnet3_config_lines(network),
                       [_component_text(n, network.layers[network.index[n]], network.dims[n]) for n in network.order])
