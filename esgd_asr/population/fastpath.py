"""A direct batched path for populations of models made of Linear layers and element-wise activations.

For such models (FeedForwardDNN, or an nn.Sequential of nn.Linear / ReLU / Sigmoid / Tanh / Identity) the forward
pass of all mu members is a chain of batched matmuls over the stacked (mu, out, in) weights and the backward pass
is written out by hand: no vmap, no functional_call, no autograd graph. When every member sees the same batch (the
fitness) the first layer is one large GEMM (batch, in) x (in, mu * out); in training each member sees its own batch
(`per_member`: features (mu, batch, in)) and the first layer is a batched matmul like the others. The input
gradient of the first layer is never computed. The cross-entropy gradient is softmax - one-hot, scaled by
1 / (labelled frames), as in F.cross_entropy(reduction="mean", ignore_index=-100). Results equal the vmap path
(and a per-member loop) to float32 rounding.

With a compute `dtype` (bf16, precision.py) the weights and inputs are cast once per pass and the matmuls run in
it, with fp32 master weights: the log-softmax and its gradient are fp32, the weight gradients are rounded to bf16
once and applied to the fp32 weights in fp32 (the rounding torch.autocast does). On the GPU the cross-entropy and its
gradient are one compiled expression (cross_entropy_and_grad) and a training loop passes the bf16 weight copies that
the optimizer keeps (`low`) instead of casting every step.

`linear_plan(template)` returns None for any other module; the engine then uses the generic vmap path.
"""
from dataclasses import dataclass

import torch
from torch import nn

from esgd_asr.population.stacked import compiled_on_gpu

Tensors = dict[str, torch.Tensor]
ACTIVATION_NAMES = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Identity: None}


@dataclass(frozen=True)
class LinearLayer:
    weight: str               # name of the (out, in) weight in the module's state dict
    bias: str | None          # name of the bias, or None
    activation: str | None    # relu / sigmoid / tanh applied after the affine map, or None


def _flatten(module: nn.Module, prefix: str) -> list | None:
    """The Linear / activation leaves of `module` in forward order, or None when it is not a plain chain."""
    if isinstance(module, nn.Linear):
        return [("linear", prefix)]
    if type(module) in ACTIVATION_NAMES:
        return [("activation", ACTIVATION_NAMES[type(module)])]
    if isinstance(module, nn.Sequential):
        items = []
        for name, child in module.named_children():
            sub = _flatten(child, f"{prefix}{name}.")
            if sub is None:
                return None
            items += sub
        return items
    return None


def linear_plan(template: nn.Module) -> tuple[LinearLayer, ...] | None:
    """The layers of a Linear-chain model (FeedForwardDNN or a plain nn.Sequential), else None."""
    from esgd_asr.models.dnn import FeedForwardDNN

    if type(template) is FeedForwardDNN:
        items = _flatten(template.hidden, "hidden.")
        if items is None:
            return None
        items = items + [("linear", "output.")]
    elif type(template) is nn.Sequential:
        items = _flatten(template, "")
    else:
        return None
    if not items or items[0][0] != "linear" or any(len(list(m.buffers())) for m in template.modules()):
        return None
    layers = []
    for kind, value in items:
        if kind == "linear":
            module = template.get_submodule(value[:-1]) if value else template
            layers.append([value + "weight", value + "bias" if module.bias is not None else None, None])
        elif value is not None:
            if layers[-1][2] is not None:  # two activations in a row: not supported here
                return None
            layers[-1][2] = value
    return tuple(LinearLayer(*layer) for layer in layers)


class Workspace:
    """Buffers reused from one training step to the next, keyed by role and shape.

    On the CPU a fresh tensor above glibc's mmap threshold (32 MB) is page-faulted in on every step, which costs
    as much as a large matmul; reusing the buffers (out= variants) avoids that. On the GPU the caching allocator
    already reuses memory, the workspace merely saves allocator calls.
    """

    def __init__(self):
        self.buffers: dict = {}

    def get(self, key, shape, like: torch.Tensor) -> torch.Tensor:
        shape = tuple(shape)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.shape != shape or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = torch.empty(shape, dtype=like.dtype, device=like.device)
            self.buffers[key] = buffer
        return buffer


def _new(workspace: Workspace | None, key, shape, like: torch.Tensor) -> torch.Tensor:
    if workspace is None:
        return torch.empty(tuple(shape), dtype=like.dtype, device=like.device)
    return workspace.get(key, shape, like)


def _activate(values: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation == "relu":
        return values.relu_()
    if activation == "sigmoid":
        return values.sigmoid_()
    if activation == "tanh":
        return values.tanh_()
    return values


def _activation_backward(grad: torch.Tensor, output: torch.Tensor, activation: str | None) -> torch.Tensor:
    """d loss / d pre-activation from d loss / d output and the activation's output, in place on `grad`."""
    if activation == "relu":
        return torch.ops.aten.threshold_backward.grad_input(grad, output, 0, grad_input=grad)
    if activation == "sigmoid":
        return torch.ops.aten.sigmoid_backward.grad_input(grad, output, grad_input=grad)
    if activation == "tanh":
        return torch.ops.aten.tanh_backward.grad_input(grad, output, grad_input=grad)
    return grad


def cast(params: Tensors, features: torch.Tensor, dtype: torch.dtype | None) -> tuple[Tensors, torch.Tensor]:
    """The weights and inputs of a pass in the compute dtype (unchanged when None)."""
    if dtype is None:
        return params, features
    return {k: v.to(dtype) for k, v in params.items()}, features.to(dtype)


def forward(plan, params: Tensors, features: torch.Tensor, keep: bool = False, workspace: Workspace | None = None,
            per_member: bool = False):
    """Logits (mu, batch, classes) of every member; with `keep` also the layer outputs the backward needs.
    Computes in the dtype of `params` and `features` (see cast()).

    A shared input (batch, in) makes the first layer one GEMM (batch, in) x (in, mu * out), viewed as
    (mu, batch, out); per-member inputs (mu, batch, in) and every other layer are batched matmuls over the members.
    """
    outputs = []
    hidden = features
    batch = features.shape[-2]
    for index, layer in enumerate(plan):
        weight = params[layer.weight]
        bias = params[layer.bias] if layer.bias else None
        members, out, width = weight.shape
        if index == 0 and not per_member:
            flat = _new(workspace, ("out", index), (batch, members * out), weight)
            if bias is None:
                torch.mm(features, weight.reshape(members * out, width).t(), out=flat)
            else:
                torch.addmm(bias.reshape(members * out), features, weight.reshape(members * out, width).t(), out=flat)
            hidden = flat.view(batch, members, out).transpose(0, 1)
        else:
            result = _new(workspace, ("out", index), (members, batch, out), weight)
            if bias is None:
                hidden = torch.bmm(hidden, weight.transpose(1, 2), out=result)
            else:
                hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2), out=result)
        hidden = _activate(hidden, layer.activation)
        if keep:
            outputs.append(hidden)
    return hidden, outputs


def _flat_inputs(features: torch.Tensor, targets: torch.Tensor, per_member: bool = False):
    """Frames as rows: (frames, in) / (frames,) shared, (mu, frames, in) / (mu, frames) per member."""
    if per_member:
        members = features.shape[0]
        return features.reshape(members, -1, features.shape[-1]), targets.reshape(members, -1)
    return features.reshape(-1, features.shape[-1]), targets.reshape(-1)


def cross_entropy_and_grad(logits: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-entropy of stacked logits (mu, frames, classes) and its gradient as one expression, compiled on the
    GPU into a pass over the logits that never writes fp32 copies of them: losses (mu,) = -sum of weight x
    log-softmax at `index`, gradient (softmax - one-hot) x weight x scale in the dtype of the logits. index: targets
    (mu or 1, frames, 1); weight: (labelled / labelled frames) (mu or 1, frames, 1); scale (mu, 1, 1)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    losses = -(log_probs.gather(-1, index.expand(logits.shape[0], -1, -1)) * weight).sum(dim=(1, 2))
    one_hot = torch.arange(logits.shape[-1], device=logits.device) == index
    return losses, ((log_probs.exp() - one_hot.float()) * (weight * scale)).to(logits.dtype)


def cross_entropy_sums(logits: torch.Tensor, index: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (mu,) over the labelled frames, index and labelled (1, frames, 1) (compiled on the GPU)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return -(log_probs.gather(-1, index.expand(logits.shape[0], -1, -1)) * labelled).sum(dim=(1, 2))


def loss_and_grads(plan, params: Tensors, features: torch.Tensor, targets: torch.Tensor,
                   workspace: Workspace | None = None, sgd_lr: float | torch.Tensor | None = None,
                   per_member: bool = False, dtype: torch.dtype | None = None, low: Tensors | None = None
                   ) -> tuple[Tensors, torch.Tensor]:
    """Mean cross-entropy (mu,) and its gradients, stacked like `params`, for one batch shared by all members, or
    with `per_member` for each member's own batch (features (mu, batch, in), targets (mu, batch)).

    With a `workspace` the gradients and intermediates live in its buffers, valid until the next call with it.
    With `sgd_lr` (a float, or a (mu,) tensor of per-member learning rates) the plain-SGD step
    param <- param - lr * grad is fused into the weight-gradient GEMMs (W.baddbmm_(-lr * dZ^T, H)) and applied in
    place; no gradient is materialised and the returned dict is empty. `dtype`: the compute dtype (module doc);
    `low`: the weights already in it (the copies UpdateRule keeps), which saves the cast, and then the weight
    gradients come back in it too (the optimizer reads them as fp32).
    """
    features, targets = _flat_inputs(features, targets, per_member)
    master = params
    if low is None:
        params, features = cast(params, features, dtype)
    else:
        params, features = low, features.to(dtype)
    logits, outputs = forward(plan, params, features, keep=True, workspace=workspace, per_member=per_member)
    members = logits.shape[0]
    labelled = (targets != -100).expand(members, -1) if per_member else (targets != -100).view(1, -1)
    frames = labelled.sum(dim=1, keepdim=True)
    index = torch.where(labelled, targets, 0).expand(members, -1).unsqueeze(-1)
    fp32 = master[plan[-1].weight]
    weight = (labelled.to(fp32.dtype) / frames).unsqueeze(-1)   # nan without labelled frames, as F.cross_entropy
    fused = sgd_lr is not None
    alpha = 1.0
    scale = torch.ones(members, 1, 1, device=fp32.device)
    if fused and isinstance(sgd_lr, torch.Tensor):
        scale = -sgd_lr.to(fp32.device, fp32.dtype).view(-1, 1, 1)   # grad carries -lr_m / frames
    elif fused:
        alpha = -float(sgd_lr)
    if logits.is_cuda:
        losses, grad = compiled_on_gpu(cross_entropy_and_grad, logits)(logits, index, weight, scale)
    else:   # the CPU keeps its in-place passes over reused buffers (and the figures measured with them)
        grad = torch.log_softmax(logits, dim=-1, dtype=fp32.dtype,
                                 out=_new(workspace, "log_probs", logits.shape, fp32))
        picked = grad.gather(-1, index)
        losses = -(picked * weight).sum(dim=(1, 2))
        grad.exp_()                                                 # softmax
        grad.scatter_add_(-1, index, torch.full_like(picked, -1.0))
        grad.mul_(weight * scale)
        if dtype is not None:
            grad = grad.to(dtype)
    grads = {}
    for position in range(len(plan) - 1, -1, -1):
        layer = plan[position]
        weight_tensor = params[layer.weight]
        if position < len(plan) - 1:
            grad = _activation_backward(grad, outputs[position], layer.activation)
        below = None
        if position > 0:  # the gradient flowing down uses the weights before this step's update
            below = torch.bmm(grad, weight_tensor,
                              out=_new(workspace, ("back", position), outputs[position - 1].shape, grad))
            inputs = outputs[position - 1]
        else:
            inputs = features if per_member else features.unsqueeze(0).expand(grad.shape[0], *features.shape)
        if fused and dtype is None:
            # with per-member rates grad already carries -lr_m (the chain rule is linear in the scale)
            if layer.bias:
                master[layer.bias].add_(grad.sum(dim=1), alpha=alpha)
            master[layer.weight].baddbmm_(grad.transpose(1, 2), inputs, alpha=alpha)
        elif fused:
            if layer.bias:
                master[layer.bias].add_(grad.sum(dim=1, dtype=fp32.dtype), alpha=alpha)
            master[layer.weight].add_(torch.bmm(grad.transpose(1, 2), inputs), alpha=alpha)
        else:
            if layer.bias:
                grads[layer.bias] = torch.sum(grad, dim=1, dtype=fp32.dtype, out=_new(
                    workspace, ("grad", layer.bias), master[layer.bias].shape, fp32))
            if dtype is None or low is not None:
                grads[layer.weight] = torch.bmm(grad.transpose(1, 2), inputs, out=_new(
                    workspace, ("grad", layer.weight), weight_tensor.shape, grad))
            else:
                weight_grad = _new(workspace, ("grad", layer.weight), weight_tensor.shape, fp32)
                grads[layer.weight] = weight_grad.copy_(torch.bmm(grad.transpose(1, 2), inputs))
        grad = below
    return ({} if fused else {name: grads[name] for name in master}), losses


def loss_sum(plan, params: Tensors, features: torch.Tensor, targets: torch.Tensor,
             workspace: Workspace | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Summed cross-entropy over the labelled frames of a batch, per member (mu,); `dtype` as in loss_and_grads
    (params may already be in it: the fitness casts each member chunk's weights once, not once per data chunk)."""
    features, targets = _flat_inputs(features, targets)
    fp32 = params[plan[-1].weight]   # on the CPU (never cast ahead) the fp32 weights
    logits, _ = forward(plan, *cast(params, features, dtype), workspace=workspace)
    labelled = targets != -100
    index = torch.where(labelled, targets, 0).view(1, -1, 1)
    if logits.is_cuda:
        return compiled_on_gpu(cross_entropy_sums, logits)(logits, index, labelled.view(1, -1, 1).float())
    log_probs = torch.log_softmax(logits, dim=-1, dtype=fp32.dtype,
                                  out=_new(workspace, "log_probs", logits.shape, fp32))
    picked = log_probs.gather(-1, index.expand(logits.shape[0], -1, 1)).squeeze(-1)
    return -(picked * labelled.to(picked.dtype)).sum(dim=1)
