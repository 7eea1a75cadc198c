"""Direct stacked forward passes for populations of models the batched-matmul path does not cover (the BiLSTM).

The forward of all mu members is written over the stacked (mu, ...) parameters with batched matmuls: the input
projections of a layer are one GEMM over all time steps (for the first layer, when every member sees the same
input, as in the fitness, one (batch * time, in) x (in, mu * 4 cells) product), the recurrence one
(mu, batch, cells) x (mu, cells, 4 cells) bmm per step. The engine differentiates it with ordinary autograd; a member's loss depends on its own
slice only, so the gradient of the summed losses is the stack of the members' gradients. Per step this launches
the ops of one model instead of mu models' (a per-member loop) or vmap's batching-rule dispatch.

`stacked_forward(template)` returns `forward(params, features, shared=True) -> logits (mu, batch, time, targets)`
(features (batch, time, in) shared by all members, or with shared=False (mu, batch, time, in)), or None.
"""
from collections.abc import Callable

import torch

Tensors = dict[str, torch.Tensor]


def _lstm_direction(params: Tensors, prefix: str, inputs: torch.Tensor, shared: bool, reverse: bool) -> torch.Tensor:
    """One direction of one layer for every member: inputs (batch, time, in) when `shared` by all members, else
    (mu, batch, time, in) -> (mu, batch, time, cells). Gate order (input, forget, cell, output)."""
    w_in, b_in = params[prefix + "input_gates.weight"], params[prefix + "input_gates.bias"]
    w_h, b_h = params[prefix + "hidden_gates.weight"], params[prefix + "hidden_gates.bias"]
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


def _linear(params: Tensors, prefix: str, inputs: torch.Tensor) -> torch.Tensor:
    """(mu, ..., in) -> (mu, ..., out) with each member's weights."""
    weight, bias = params[prefix + "weight"], params[prefix + "bias"]
    members, width = inputs.shape[0], inputs.shape[-1]
    flat = torch.baddbmm(bias.unsqueeze(1), inputs.reshape(members, -1, width), weight.transpose(1, 2))
    return flat.view(*inputs.shape[:-1], weight.shape[1])


def _blstm_forward(num_layers: int) -> Callable[[Tensors, torch.Tensor, bool], torch.Tensor]:
    def forward(params: Tensors, features: torch.Tensor, shared: bool = True) -> torch.Tensor:
        hidden = features
        for layer in range(num_layers):
            hidden = torch.cat([_lstm_direction(params, f"layers.{layer}.{d}.", hidden, shared, reverse=d == 1)
                                for d in (0, 1)], dim=-1)
            shared = False
        return _linear(params, "output.", _linear(params, "bottleneck.", hidden))

    return forward


def stacked_forward(template) -> Callable[[Tensors, torch.Tensor, bool], torch.Tensor] | None:
    """The stacked forward for `template`'s architecture, or None (the engine then vmaps functional_call)."""
    from esgd_asr.models.blstm import BiLSTM

    if type(template) is BiLSTM and not list(template.buffers()):
        return _blstm_forward(len(template.layers))
    return None
