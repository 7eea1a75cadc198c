"""Direct stacked forward passes for populations of models the batched-matmul path does not cover (the BiLSTM).

The population stacks a BiLSTM's own parameters (nn.LSTM's `lstm.weight_ih_l0`, ... with a leading member
dimension), so a member converts to and from a standalone model without any change of values. Two forwards over
the stacked (mu, ...) parameters, both differentiated by autograd (a member's loss depends on its own slice only,
so the gradient of the summed losses is the stack of the members' gradients):

- fused (any single model; on the CPU fitness passes and small mini-batches): each member's LSTM layers are one
  `torch.lstm` call on its parameter slices (cuDNN on the GPU, oneDNN on the CPU); the bottleneck and the senone
  output layer of all members are batched matmuls. Under CUDA autocast the LSTM runs in the autocast dtype too
  (fp32 master weights).
- batched (populations on the GPU; on the CPU training on mini-batches of more than 16 chunks): the recurrence of
  all members at once, one (mu, batch, cells) x (mu, cells, 4 cells) bmm per step; the input projections of a
  layer are one GEMM over all time steps (for the first layer, when every member sees the same input, one
  (batch * time, in) x (in, mu * 4 cells) product). Per step this launches the ops of one model instead of mu
  models'. On the GPU each step's gate non-linearities are one compiled kernel (torch.compile) and training runs
  the loop with its backward written out (_Recurrence; the engine replays the whole pass as a CUDA graph).

`stacked_forward(template)` returns `forward(params, features, shared=True, positions=None) -> logits (mu, batch,
time, targets)` (features (batch, time, in) shared by all members, or with shared=False (mu, batch, time, in)), or
None. With `positions` (flattened batch * time indices, (K,) for all members or (mu, K) per member) the senone layer
runs on those frames only -> (mu, K, targets): the chunks' context frames carry no targets, and the senone layer
and its softmax over every frame were half the work of a fitness pass.
"""
import functools
import warnings
from collections.abc import Callable

import torch

from esgd_asr.models.blstm import lstm_parameter_names

Tensors = dict[str, torch.Tensor]
StackedForward = Callable[..., torch.Tensor]

# member slices of the stacked weights are not cuDNN's flat buffer: it packs them per call (a copy of the weights,
# small next to the step's matmuls) and would warn about that on every call
warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk of memory")


def _lstm_cell(gates: torch.Tensor, cell: torch.Tensor):
    """One step's gate non-linearities: gates (..., 4 cells) in nn.LSTM's order (input, forget, cell, output) and the
    previous cell state -> the new hidden state (in the dtype of gates), cell state and the four gate activations."""
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    cell = f * cell + i * g
    return (o * torch.tanh(cell)).to(gates.dtype), cell, (i, f, g, o)


def _lstm_cell_backward(activations, cell: torch.Tensor, previous_cell: torch.Tensor, grad_hidden: torch.Tensor,
                        grad_cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """_lstm_cell's backward: the step's gate activations and cell states (new and previous), the gradients of the
    new hidden and cell states -> the gradients of the gates' pre-activations and of the previous cell state."""
    i, f, g, o = activations
    tanh_cell = torch.tanh(cell)
    grad_cell = grad_cell + grad_hidden * o * (1 - tanh_cell * tanh_cell)
    grad_gates = torch.cat([grad_cell * g * i * (1 - i), grad_cell * previous_cell * f * (1 - f),
                            grad_cell * i * (1 - g * g), grad_hidden * tanh_cell * o * (1 - o)], dim=-1)
    return grad_gates.to(i.dtype), grad_cell * f


@functools.cache
def _compiled(function):
    return torch.compile(function)


def compiled_on_gpu(function, like: torch.Tensor):
    """`function` compiled by torch.compile for a GPU tensor `like` (fused kernels in place of a chain of
    element-wise ones and of fp32 copies), as it is on the CPU."""
    return _compiled(function) if like.is_cuda else function


def _recurrence(gates_in, recurrent: torch.Tensor, reverse: bool, cell_fn=_lstm_cell, keep: list | None = None):
    """The time loop of one LSTM direction for all members: gates_in[t] (mu, batch, 4 cells) the input projections
    and biases of step t, recurrent (mu, cells, 4 cells) -> hidden states (mu, batch, time, cells). `keep`
    receives each step's gate activations and cell state in time order."""
    steps = len(gates_in)
    members, batch, gates4 = gates_in[0].shape
    hidden = gates_in[0].new_zeros(members, batch, gates4 // 4)
    cell = torch.zeros_like(hidden, dtype=torch.float32)
    outputs = [None] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        hidden, cell, activations = cell_fn(torch.baddbmm(gates_in[t], hidden, recurrent), cell)
        outputs[t] = hidden
        if keep is not None:
            keep.append((activations, cell))
    if keep is not None and reverse:
        keep.reverse()
    return torch.stack(outputs, dim=2)


class _Recurrence(torch.autograd.Function):
    """_recurrence with its backward written out, the GPU's path: gates_in (mu, batch, time, 4 cells), recurrent
    (mu, cells, 4 cells) in the compute dtype -> hidden states (mu, batch, time, cells). The backward runs the loop
    in reverse, one fused element-wise kernel and one bmm a step, and takes the recurrent weights' gradient as one
    bmm over all steps afterwards; autograd's would be a bmm, a cast and an fp32 sum a step."""

    @staticmethod
    def forward(ctx, gates_in: torch.Tensor, recurrent: torch.Tensor, reverse: bool) -> torch.Tensor:
        kept = []
        outputs = _recurrence(gates_in.unbind(2), recurrent, reverse, compiled_on_gpu(_lstm_cell, gates_in), kept)
        ctx.reverse, ctx.kept = reverse, kept
        ctx.save_for_backward(outputs, recurrent)
        return outputs

    @staticmethod
    def backward(ctx, grad_outputs: torch.Tensor):
        outputs, recurrent = ctx.saved_tensors
        steps = outputs.shape[2]
        cell_backward = compiled_on_gpu(_lstm_cell_backward, outputs)
        grad_gates = [None] * steps
        grad_hidden = torch.zeros_like(outputs[:, :, 0])
        grad_cell = torch.zeros_like(ctx.kept[0][1])
        weights = recurrent.transpose(1, 2)
        before = 1 if ctx.reverse else -1                        # the step the forward ran just before t
        for t in (range(steps) if ctx.reverse else range(steps - 1, -1, -1)):
            activations, cell = ctx.kept[t]
            previous_cell = ctx.kept[t + before][1] if 0 <= t + before < steps else torch.zeros_like(cell)
            grad_gates[t], grad_cell = cell_backward(activations, cell, previous_cell,
                                                     grad_outputs[:, :, t] + grad_hidden, grad_cell)
            grad_hidden = torch.bmm(grad_gates[t], weights)
        ctx.kept = None
        grad_gates = torch.stack(grad_gates, dim=2)
        previous = torch.zeros_like(outputs)                     # the hidden state each step read
        if ctx.reverse:
            previous[:, :, :-1] = outputs[:, :, 1:]
        else:
            previous[:, :, 1:] = outputs[:, :, :-1]
        members, cells = outputs.shape[0], outputs.shape[-1]
        grad_recurrent = torch.bmm(previous.view(members, -1, cells).transpose(1, 2),
                                   grad_gates.view(members, -1, 4 * cells))
        return grad_gates, grad_recurrent, None


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
    gates_in = gates_in.view(members, batch, steps, gates4)
    recurrent = w_h.transpose(1, 2).to(gates_in.dtype)                      # cast once, not at every step
    if inputs.is_cuda and torch.is_grad_enabled():
        return _Recurrence.apply(gates_in, recurrent, reverse)
    # one view per step: unbind's backward stacks the step gradients once, where indexing a step would
    # scatter each into a zero-filled copy of the whole (mu, batch, time, 4 cells) tensor
    return _recurrence(gates_in.unbind(dim=2), recurrent, reverse, compiled_on_gpu(_lstm_cell, inputs))


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


def _fused(features: torch.Tensor, members: int) -> bool:
    """Whether the LSTM layers run member after member as torch.lstm (else the batched recurrence): for a single
    model and, on the CPU, for passes without gradients (the fitness) and training batches of up to
    FUSED_CPU_MAX_BATCH chunks. Measured on the CPU on the default BiLSTM (2 x 64 cells, chunks of 41 frames,
    4-8 members, one thread): oneDNN without gradients is 1.3-1.6 x faster at any batch; in training 1.3-1.4 x
    faster at 8-16 chunks a member and 10-15 % slower at 32-64, where the batched bmm per step amortises its
    launches. On the GPU populations take the batched recurrence (compiled cells; training as a CUDA graph)."""
    if members == 1:
        return True
    if features.is_cuda:
        return False
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
        lstm = fused_lstm if _fused(features, members) else batched_lstm
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
