"""Direct stacked forward passes for populations of models the batched-matmul path does not cover (the BiLSTM).

The population stacks a BiLSTM's own parameters (nn.LSTM's `lstm.weight_ih_l0`, ... with a leading member
dimension), so a member converts to and from a standalone model without any change of values. Two forwards over
the stacked (mu, ...) parameters, both differentiated by ordinary autograd (a member's loss depends on its own
slice only, so the gradient of the summed losses is the stack of the members' gradients):

- fused (the GPU, any single model, fitness passes and small mini-batches on the CPU): each member's LSTM layers
  are one `torch.lstm` call on its parameter slices (cuDNN on the GPU, oneDNN on the CPU); the bottleneck and the
  senone output layer of all members are batched matmuls. Under CUDA autocast the LSTM runs in the autocast dtype
  too (fp32 master weights).
- batched (a population training on mini-batches of more than 16 chunks on the CPU): the recurrence of all
  members at once, one (mu, batch, cells) x (mu, cells, 4 cells) bmm per step; the input projections of a layer
  are one GEMM over all time steps (for the first layer, when every member sees the same input, one
  (batch * time, in) x (in, mu * 4 cells) product). Per step this launches the ops of one model instead of mu models'.

`stacked_forward(template)` returns `forward(params, features, shared=True, positions=None) -> logits (mu, batch,
time, targets)` (features (batch, time, in) shared by all members, or with shared=False (mu, batch, time, in)), or
None. With `positions` (flattened batch * time indices, (K,) for all members or (mu, K) per member) the senone layer
runs on those frames only -> (mu, K, targets): the chunks' context frames carry no targets, and the senone layer
and its softmax over every frame were half the work of a fitness pass.
"""
import warnings
from collections.abc import Callable

import torch

from esgd_asr.models.blstm import lstm_parameter_names

Tensors = dict[str, torch.Tensor]
StackedForward = Callable[..., torch.Tensor]

# member slices of the stacked weights are not cuDNN's flat buffer: it packs them per call (a copy of the weights,
# small next to the step's matmuls) and would warn about that on every call
warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk of memory")


def _lstm_direction(params: Tensors, names: list[str], inputs: torch.Tensor, shared: bool,
                    reverse: bool) -> torch.Tensor:
    """One direction of one layer for every member: inputs (batch, time, in) when `shared` by all members, else
    (mu, batch, time, in) -> (mu, batch, time, cells). Gate order (input, forget, cell, output) as nn.LSTM's."""
    w_in, w_h, b_in, b_h = (params[name] for name in names)
    members, gates4, width = w_in.shape
    batch, steps = inputs.shape[-3], inputs.shape[-2]
    bias = (b_in + b_h).unsqueeze(1)                                          # (mu, 1, 4H)
    if shared:
        flat = torch.mm(inputs.reshape(batch * steps, width), w_in.reshape(members * gates4, width).t())
        gates_in = flat.view(batch * steps, members, gates4).transpose(0, 1) + bias
    else:
        gates_in = torch.baddbmm(bias, inputs.reshape(members, batch * steps, width), w_in.transpose(1, 2))
    # one view per step: unbind's backward stacks the step gradients once, where indexing a step would
    # scatter each into a zero-filled copy of the whole (mu, batch, time, 4 cells) tensor
    gates_in = gates_in.view(members, batch, steps, gates4).unbind(dim=2)
    cells = gates4 // 4
    hidden = inputs.new_zeros(members, batch, cells)
    cell = inputs.new_zeros(members, batch, cells)
    recurrent = w_h.transpose(1, 2)
    outputs = []
    for step in range(steps):
        t = steps - 1 - step if reverse else step
        gates = torch.baddbmm(gates_in[t], hidden, recurrent)
        i, f, g, o = gates.chunk(4, dim=-1)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        hidden = torch.sigmoid(o) * torch.tanh(cell)
        outputs.append(hidden)
    if reverse:
        outputs.reverse()
    return torch.stack(outputs, dim=2)


def batched_lstm(params: Tensors, num_layers: int, features: torch.Tensor, shared: bool) -> torch.Tensor:
    """The BiLSTM layers of all members with batched matmuls per time step -> (mu, batch, time, 2 cells)."""
    names = lstm_parameter_names(num_layers)
    hidden = features
    for layer in range(num_layers):
        hidden = torch.cat([_lstm_direction(params, names[8 * layer + 4 * d:8 * layer + 4 * d + 4], hidden, shared,
                                            reverse=d == 1) for d in (0, 1)], dim=-1)
        shared = False
    return hidden


def fused_lstm(params: Tensors, num_layers: int, features: torch.Tensor, shared: bool) -> torch.Tensor:
    """The BiLSTM layers of each member as one torch.lstm call (cuDNN / oneDNN) -> (mu, batch, time, 2 cells)."""
    names = lstm_parameter_names(num_layers)
    members, cells = params[names[1]].shape[0], params[names[1]].shape[-1]
    dtype = features.dtype
    if features.is_cuda and torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
    outputs = []
    for member in range(members):
        inputs = (features if shared else features[member]).to(dtype)
        weights = [params[name][member].to(dtype) for name in names]
        zeros = inputs.new_zeros(2 * num_layers, inputs.shape[0], cells)
        outputs.append(torch.lstm(inputs, (zeros, zeros), weights, True, num_layers, 0.0, torch.is_grad_enabled(),
                                  True, True)[0])
    return torch.stack(outputs)


FUSED_CPU_MAX_BATCH = 16


def _fused_on_cpu(features: torch.Tensor) -> bool:
    """Whether oneDNN's LSTM, member after member, beats the batched recurrence on the CPU. Measured on the default
    BiLSTM (2 x 64 cells, chunks of 41 frames, 4-8 members, one thread): without gradients (the fitness) it is
    1.3-1.6 x faster at any batch; in training 1.3-1.4 x faster at 8-16 chunks a member and 10-15 % slower at
    32-64, where the batched bmm per step amortises its launches."""
    return not torch.is_grad_enabled() or features.shape[-3] <= FUSED_CPU_MAX_BATCH


def _linear(params: Tensors, prefix: str, inputs: torch.Tensor) -> torch.Tensor:
    """(mu, ..., in) -> (mu, ..., out) with each member's weights."""
    weight, bias = params[prefix + "weight"], params[prefix + "bias"]
    members, width = inputs.shape[0], inputs.shape[-1]
    flat = torch.baddbmm(bias.unsqueeze(1), inputs.reshape(members, -1, width), weight.transpose(1, 2))
    return flat.view(*inputs.shape[:-1], weight.shape[1])


def _blstm_forward(num_layers: int) -> StackedForward:
    def forward(params: Tensors, features: torch.Tensor, shared: bool = True,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        members = params["output.weight"].shape[0]
        lstm = fused_lstm if features.is_cuda or members == 1 or _fused_on_cpu(features) else batched_lstm
        hidden = _linear(params, "bottleneck.", lstm(params, num_layers, features, shared))
        if positions is None:
            return _linear(params, "output.", hidden)
        flat = hidden.reshape(members, -1, hidden.shape[-1])
        if positions.dim() == 1:
            flat = flat[:, positions]
        else:
            flat = torch.gather(flat, 1, positions.unsqueeze(-1).expand(-1, -1, flat.shape[-1]))
        return _linear(params, "output.", flat)

    return forward


def stacked_forward(template) -> StackedForward | None:
    """The stacked forward for `template`'s architecture, or None (the engine then vmaps functional_call)."""
    from esgd_asr.models.blstm import BiLSTM

    if type(template) is BiLSTM and not list(template.buffers()):
        return _blstm_forward(template.config.num_layers)
    return None
