"""The optimizer pool: per-member optimizer kind and hyperparameters as tensors, and one batched update rule.

SGD, momentum, Nesterov and Adam are one set of in-place tensor ops over the member dimension with per-member
coefficients (UpdateRule); they match torch.optim.SGD / torch.optim.Adam (no weight decay, no dampening).
"""
import functools
from dataclasses import dataclass, field

import torch

from esgd_asr.errors import EsgdError

OPTIMIZER_KINDS = ("sgd", "adam")


@dataclass
class OptimizerPool:
    """Ranges the hyperparameters are drawn from each generation (ESGD supplement, Tables 2-3); the defaults are
    conf/esgd.yaml's, the papers' lr ranges its presets bn50 and swb300."""

    kinds: dict[str, float] = field(default_factory=lambda: {"sgd": 0.5, "adam": 0.5})
    lr_ranges: dict[str, list[float]] = field(default_factory=lambda: {"sgd": [0.05, 0.5], "adam": [5e-4, 5e-3]})
    lr_decay: float = 0.9
    momentum_prob: float = 0.8
    momentum_range: list[float] = field(default_factory=lambda: [0.1, 0.9])
    nesterov_prob: float = 0.5
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    batch_sizes: list[int] = field(default_factory=lambda: [64, 128, 256, 512])

    def __post_init__(self):
        unknown = sorted(set(self.kinds) - set(OPTIMIZER_KINDS))
        if unknown:
            raise EsgdError(f"optimizer pool: unknown optimizer {unknown[0]!r} (choose from {OPTIMIZER_KINDS})")
        if not self.kinds or sum(self.kinds.values()) <= 0 or min(self.kinds.values()) < 0:
            raise EsgdError("optimizer pool: 'kinds' needs non-negative probabilities with a positive sum")
        for kind in self.kinds:
            low_high = self.lr_ranges.get(kind)
            if low_high is None or len(low_high) != 2 or not 0 < low_high[0] <= low_high[1]:
                raise EsgdError(f"optimizer pool: lr_ranges.{kind} must be [low, high] with 0 < low <= high")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise EsgdError("optimizer pool: batch_sizes must be a non-empty list of positive sizes")

    def sample(self, size: int, generation: int, generator: torch.Generator) -> "HyperParams":
        """Draw an optimizer and its hyperparameters for `size` members; lr ranges scaled by lr_decay**generation."""
        names = list(self.kinds)
        weights = torch.tensor([self.kinds[n] for n in names], dtype=torch.float64)
        choice = torch.multinomial(weights, size, replacement=True, generator=generator)
        kind = torch.tensor([OPTIMIZER_KINDS.index(names[c]) for c in choice.tolist()])
        scale = self.lr_decay ** generation
        low = torch.tensor([self.lr_ranges[names[c]][0] for c in choice.tolist()], dtype=torch.float64) * scale
        high = torch.tensor([self.lr_ranges[names[c]][1] for c in choice.tolist()], dtype=torch.float64) * scale
        lr = low + (high - low) * torch.rand(size, generator=generator, dtype=torch.float64)
        is_sgd = kind == OPTIMIZER_KINDS.index("sgd")
        momentum_on = is_sgd & (torch.rand(size, generator=generator) < self.momentum_prob)
        m_low, m_high = self.momentum_range
        momentum = torch.where(momentum_on, m_low + (m_high - m_low) * torch.rand(size, generator=generator), 0.0)
        nesterov = momentum_on & (torch.rand(size, generator=generator) < self.nesterov_prob)
        batch = torch.tensor(self.batch_sizes)[torch.randint(len(self.batch_sizes), (size,), generator=generator)]
        return HyperParams(kind=kind, lr=lr.float(), momentum=momentum.float(), nesterov=nesterov,
                           beta1=torch.full((size,), self.adam_betas[0]), beta2=torch.full((size,), self.adam_betas[1]),
                           eps=torch.full((size,), self.adam_eps), batch_size=batch)


@dataclass
class HyperParams:
    """Per-member optimizer settings, one entry per member in every tensor (kept on the CPU)."""

    kind: torch.Tensor        # index into OPTIMIZER_KINDS
    lr: torch.Tensor
    momentum: torch.Tensor    # 0 = plain SGD
    nesterov: torch.Tensor    # bool
    beta1: torch.Tensor
    beta2: torch.Tensor
    eps: torch.Tensor
    batch_size: torch.Tensor

    @classmethod
    def plain_sgd(cls, size: int, lr: float, batch_size: int) -> "HyperParams":
        """Every member on plain SGD with one learning rate and batch size (baselines, fine-tune)."""
        return cls(kind=torch.zeros(size, dtype=torch.long), lr=torch.full((size,), float(lr)),
                   momentum=torch.zeros(size), nesterov=torch.zeros(size, dtype=torch.bool),
                   beta1=torch.full((size,), 0.9), beta2=torch.full((size,), 0.999), eps=torch.full((size,), 1e-8),
                   batch_size=torch.full((size,), int(batch_size), dtype=torch.long))

    def variant(self) -> torch.Tensor:
        """Per member 0 plain SGD, 1 SGD with momentum, 2 Adam."""
        adam = self.kind == OPTIMIZER_KINDS.index("adam")
        return torch.where(adam, 2, (self.momentum != 0).long())

    def select(self, indices: torch.Tensor) -> "HyperParams":
        indices = indices.cpu()
        return HyperParams(**{name: value[indices] for name, value in vars(self).items()})

    def describe(self, index: int) -> dict:
        """One member's settings as plain values, for the logs."""
        kind = OPTIMIZER_KINDS[int(self.kind[index])]
        described = {"optimizer": kind, "lr": float(self.lr[index]), "batch_size": int(self.batch_size[index])}
        if kind == "sgd":
            described.update(momentum=float(self.momentum[index]), nesterov=bool(self.nesterov[index]))
        return described

    def state_dict(self) -> dict:
        return {name: value.clone() for name, value in vars(self).items()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "HyperParams":
        return cls(**{name: value.clone() for name, value in state.items()})


class OptimizerState:
    """Per-member optimizer buffers stacked like the parameters: momentum / Adam first moment, second moment, steps."""

    def __init__(self, first: dict, second: dict, steps: torch.Tensor):
        self.first, self.second, self.steps = first, second, steps

    @classmethod
    def zeros_like(cls, params: dict) -> "OptimizerState":
        size = next(iter(params.values())).shape[0]
        device = next(iter(params.values())).device
        return cls({k: torch.zeros_like(v) for k, v in params.items()},
                   {k: torch.zeros_like(v) for k, v in params.items()}, torch.zeros(size, device=device))

    def select(self, indices: torch.Tensor) -> "OptimizerState":
        indices = indices.to(self.steps.device)
        return OptimizerState({k: v[indices] for k, v in self.first.items()},
                              {k: v[indices] for k, v in self.second.items()}, self.steps[indices])

    def scatter(self, indices: torch.Tensor, part: "OptimizerState") -> None:
        """Write the members of `part` back at `indices`."""
        indices = indices.to(self.steps.device)
        for name in self.first:
            self.first[name][indices] = part.first[name]
            self.second[name][indices] = part.second[name]
        self.steps[indices] = part.steps

    def clone(self) -> "OptimizerState":
        return OptimizerState({k: v.clone() for k, v in self.first.items()},
                              {k: v.clone() for k, v in self.second.items()}, self.steps.clone())

    def restore(self, mask: torch.Tensor, snapshot: "OptimizerState") -> None:
        """Members where `mask` is true take back their buffers from `snapshot` (back-off)."""
        mask = mask.to(self.steps.device)
        for mine, saved in [(self.first, snapshot.first), (self.second, snapshot.second)]:
            for name, stack in mine.items():
                stack.copy_(torch.where(mask.view(-1, *([1] * (stack.dim() - 1))), saved[name], stack))
        self.steps.copy_(torch.where(mask, snapshot.steps, self.steps))

    def state_dict(self) -> dict:
        return {"first": self.first, "second": self.second, "steps": self.steps}


class UpdateRule:
    """The per-member coefficients of one optimizer step, built once per group (not per step).

    SGD, momentum, Nesterov and Adam are one set of in-place tensor ops over the stacked tensors:
        first  <- a1 * first + c1 * grad                 (momentum buffer / Adam first moment)
        second <- b2 * second + (1 - b2) * grad^2        (Adam members only; SGD members keep 0)
        param  <- param - lr * (f * first + g * grad) / (s * sqrt(second) + e)
    SGD: a1 = momentum, c1 = 1, f = 1 (g = 0) or Nesterov f = momentum, g = 1, s = 0, e = 1.
    Adam: a1 = beta1, c1 = 1 - beta1, f = 1 / (1 - beta1^t), g = 0, s = 1 / sqrt(1 - beta2^t), e = eps.
    Branches no member of the group uses are skipped, so plain SGD is one fused pass per parameter tensor; with
    Adam members the step is five passes (lerp / mul-add of the moments, sqrt, scale-shift, addcdiv), the
    -lr * f factor folded into the denominator, since a full pass over mu stacked models is what costs.

    With `fused` (the default on a GPU) the step is instead stacked_step: the same formulas written as one
    expression per tensor, compiled on the GPU into one kernel per stacked tensor that reads and writes each
    weight, gradient and moment once for all members (the step is memory-bound at small batches); it also refreshes
    the bf16 copies of the weights that the next pass computes with (`low`). Same formulas; float rounding only.
    """

    def __init__(self, hyper: HyperParams, device: torch.device | str, fused: bool | None = None,
                 paths: HyperParams | None = None):
        device = torch.device(device)
        # which branches run is decided by `paths` (a group these members are part of), so that a member's
        # arithmetic does not depend on the part of its group that a process holds
        paths = hyper if paths is None else paths
        path_adam = paths.kind.cpu() == OPTIMIZER_KINDS.index("adam")
        self.any_adam = bool(path_adam.any())
        self.all_adam = bool(path_adam.all())
        path_momentum = torch.where(path_adam, 0.0, paths.momentum.cpu().float())
        self.any_momentum = bool((path_momentum != 0).any()) or self.any_adam
        self.any_nesterov = bool((paths.nesterov.cpu() & ~path_adam).any())
        self.uniform_lr = float(paths.lr[0]) if bool((paths.lr == paths.lr[0]).all()) else None
        is_adam = hyper.kind.cpu() == OPTIMIZER_KINDS.index("adam")
        momentum = torch.where(is_adam, 0.0, hyper.momentum.cpu().float())
        nesterov = hyper.nesterov.cpu() & ~is_adam
        beta1, beta2 = hyper.beta1.cpu().float(), hyper.beta2.cpu().float()
        self.plain_sgd = not self.any_momentum   # every member plain SGD (no momentum, no Adam)
        # the fused step's calls: runs of members of one kind (plain SGD, momentum, Adam), each touching only the
        # buffers its kind uses; members not ordered by kind (sgd.train_epochs orders them) take one call
        variant = hyper.variant()
        edges = [0, *(torch.nonzero(variant[1:] != variant[:-1]).flatten() + 1).tolist(), len(variant)]
        self.runs = [(start, stop, int(variant[start]) > 0, int(variant[start]) == 2)
                     for start, stop in zip(edges, edges[1:])]
        if len(self.runs) > 3:
            self.runs = [(0, len(variant), self.any_momentum, self.any_adam)]
        self.fused = device.type == "cuda" if fused is None else fused

        def put(values):
            return values.to(device=device, dtype=torch.float32)

        self.is_adam = put(is_adam)
        self.lr = put(hyper.lr.cpu())
        self.sgd_lr = self.uniform_lr if self.uniform_lr is not None else self.lr   # float or (mu,) tensor
        self.first_decay = put(torch.where(is_adam, beta1, momentum))
        self.first_gain = put(torch.where(is_adam, 1 - beta1, 1.0))
        self.nesterov_gain = put(torch.where(nesterov, momentum, 1.0))   # f of SGD members
        self.nesterov_grad = put(nesterov.float())                       # g
        self.second_gain = put(torch.where(is_adam, 1 - beta2, 0.0))     # SGD members: second stays 0
        self.beta1, self.beta2, self.eps = put(beta1), put(beta2), put(hyper.eps.cpu())

    @staticmethod
    def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def apply(self, params: dict, grads: dict, state: "OptimizerState", low: dict | None = None) -> None:
        """One step of every member in place; `low` (fused only): compute-dtype copies of params, refreshed."""
        if self.fused:
            return self._apply_fused(params, grads, state, low)
        state.steps += 1
        step_grad = -self.lr * self.nesterov_grad
        if self.any_adam:
            adam = self.is_adam > 0
            # param += first / d with d = (s * sqrt(second) + e) / (-lr * f): SGD members s = 0, e = 1
            step_first = -self.lr * torch.where(adam, 1 / (1 - self.beta1 ** state.steps), self.nesterov_gain)
            still = step_first == 0   # a member with lr 0 does not move: d = inf
            denom_scale = torch.where(still, 0.0, torch.where(adam, 1 / (1 - self.beta2 ** state.steps).sqrt(), 0.0)
                                      / step_first)
            denom_shift = torch.where(still, torch.inf, torch.where(adam, self.eps, 1.0) / step_first)
        else:
            step_first = -self.lr * self.nesterov_gain
        for name, param in params.items():
            grad = grads[name]
            if not self.any_momentum:
                # plain SGD for every member: param <- param - lr * grad (first stays unused, as torch.optim)
                if self.uniform_lr is not None:
                    param.add_(grad, alpha=-self.uniform_lr)
                else:
                    param.addcmul_(grad, self._per_member(-self.lr, param))
                continue
            first = state.first[name]
            if self.any_nesterov:
                param.addcmul_(grad, self._per_member(step_grad, param))
            if self.all_adam:
                first.lerp_(grad, self._per_member(self.first_gain, first))
            elif not self.any_adam:
                torch.addcmul(grad, first, self._per_member(self.first_decay, first), out=first)
            else:
                first.mul_(self._per_member(self.first_decay, first)).addcmul_(
                    grad, self._per_member(self.first_gain, first))
            if not self.any_adam:
                param.addcmul_(first, self._per_member(step_first, param))
                continue
            second = state.second[name]
            second.lerp_(grad.square(), self._per_member(self.second_gain, second))
            denom = second.sqrt()
            torch.addcmul(self._per_member(denom_shift, denom), denom, self._per_member(denom_scale, denom),
                          out=denom)
            param.addcdiv_(first, denom)

    def _apply_fused(self, params: dict, grads: dict, state: "OptimizerState", low: dict | None) -> None:
        state.steps += 1
        names = list(params)
        compiled = state.steps.is_cuda
        stacks = [[part[n] for n in names] for part in (params, grads, state.first, state.second, low or params)]
        coefficients = [state.steps, self.lr, self.first_decay, self.first_gain, self.nesterov_gain,
                        self.nesterov_grad, self.second_gain, self.beta1, self.beta2, self.eps, self.is_adam]
        for start, stop, momentum, adam in self.runs:
            tensors = [[t[start:stop] for t in stack] for stack in stacks]
            values = [t[start:stop] for t in coefficients]
            if compiled:   # one kernel per tensor shape for any member count
                for tensor in [*(t for stack in tensors for t in stack), *values]:
                    torch._dynamo.maybe_mark_dynamic(tensor, 0)
            step = _compiled_step(momentum, adam) if compiled else functools.partial(
                stacked_step, momentum=momentum, adam=adam)
            step(*tensors[:4], tensors[4] if low is not None else None, *values)


def stacked_step(params: list, grads: list, firsts: list, seconds: list, lows: list | None, steps: torch.Tensor,
                 lr, first_decay, first_gain, nesterov_gain, nesterov_grad, second_gain, beta1, beta2, eps, is_adam,
                 momentum: bool, adam: bool) -> None:
    """UpdateRule's step over stacked tensors (members first) with per-member coefficients (members,), as one
    expression per tensor: gradients of any float dtype are read as fp32; `momentum` / `adam`: whether any member
    has a first / second moment (else those buffers are not touched); `lows` receive the new weights cast."""
    adam_member = is_adam > 0
    step_first = torch.where(adam_member, -lr / (1 - beta1 ** steps), -lr * nesterov_gain)
    step_grad = -lr * nesterov_grad
    denom_scale = torch.where(adam_member, (1 - beta2 ** steps).rsqrt(), 0.0)
    denom_shift = torch.where(adam_member, eps, 1.0)
    for index, (param, grad) in enumerate(zip(params, grads)):
        shape = (-1, *([1] * (param.dim() - 1)))
        grad = grad.float()
        if not momentum:
            new = param - lr.view(shape) * grad
        else:
            first = first_decay.view(shape) * firsts[index] + first_gain.view(shape) * grad
            firsts[index].copy_(first)
            update = step_first.view(shape) * first + step_grad.view(shape) * grad
            if adam:
                second = seconds[index] + second_gain.view(shape) * (grad * grad - seconds[index])
                seconds[index].copy_(second)
                update = update / (denom_scale.view(shape) * second.sqrt() + denom_shift.view(shape))
            new = param + update
        param.copy_(new)
        if lows is not None:
            lows[index].copy_(new)


def _plain_step(*args):
    stacked_step(*args, momentum=False, adam=False)


def _momentum_step(*args):
    stacked_step(*args, momentum=True, adam=False)


def _adam_step(*args):
    stacked_step(*args, momentum=True, adam=True)


@functools.cache
def _compiled_step(momentum: bool, adam: bool):
    """stacked_step compiled for one kind, each kind its own function: torch.compile keeps a few graphs per function
    (with and without weight copies, one member and more) and would fall back to eager beyond them."""
    return torch.compile(_adam_step if adam else _momentum_step if momentum else _plain_step)


@torch.no_grad()
def apply_update(params: dict, grads: dict, state: OptimizerState, hyper: HyperParams) -> None:
    """One optimizer step for every member in place: SGD / momentum / Nesterov / Adam chosen per member.

    Builds an UpdateRule each call; loops over many steps should build one rule and call rule.apply.
    """
    UpdateRule(hyper, state.steps.device).apply(params, grads, state)
