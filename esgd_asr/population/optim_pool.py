"""The optimizer pool: per-member optimizer kind and hyperparameters as tensors, and one batched update rule.

SGD, momentum, Nesterov and Adam are one set of in-place tensor ops over the member dimension with per-member
coefficients (UpdateRule); they match torch.optim.SGD / torch.optim.Adam (no weight decay, no dampening).
"""
from dataclasses import dataclass, field

import torch

from esgd_asr.errors import EsgdError

OPTIMIZER_KINDS = ("sgd", "adam")


@dataclass
class OptimizerPool:
    """Ranges the hyperparameters are drawn from each generation (ESGD supplement, Tables 2-3)."""

    kinds: dict[str, float] = field(default_factory=lambda: {"sgd": 0.5, "adam": 0.5})
    lr_ranges: dict[str, list[float]] = field(default_factory=lambda: {"sgd": [1e-4, 2e-3], "adam": [1e-4, 1e-3]})
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

    With `fused` (the default on a GPU when any member has momentum or Adam) each member's step is instead one call of torch's fused multi-tensor
    optimizer kernels (those of torch.optim.SGD / Adam with fused=True) over its parameter slices: one pass that
    reads and writes each weight, gradient and moment once, where the stacked ops above pass over them several
    times (the step is memory-bound at small batches). Same formulas; it differs by float rounding only.
    """

    def __init__(self, hyper: HyperParams, device: torch.device | str, fused: bool | None = None,
                 paths: HyperParams | None = None):
        device = torch.device(device)
        self.members = [(bool(adam), float(lr), float(mu), bool(nest), float(b1), float(b2), float(eps))
                        for adam, lr, mu, nest, b1, b2, eps in zip(
                            (hyper.kind == OPTIMIZER_KINDS.index("adam")).tolist(), hyper.lr.tolist(),
                            hyper.momentum.tolist(), hyper.nesterov.tolist(), hyper.beta1.tolist(),
                            hyper.beta2.tolist(), hyper.eps.tolist())]
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
        # plain SGD is one pass over the stacked tensors already; the fused kernels pay off with moments
        self.fused = (device.type == "cuda" and self.any_momentum) if fused is None else fused

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
    def apply(self, params: dict, grads: dict, state: "OptimizerState") -> None:
        """One step of every member in place."""
        if self.fused:
            return self._apply_fused(params, grads, state)
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

    def _apply_fused(self, params: dict, grads: dict, state: "OptimizerState") -> None:
        state.steps += 1
        names = list(params)
        grads = {name: grad.contiguous() for name, grad in grads.items()}   # the kernels take dense tensors
        views = [list(zip(*[stack[name].unbind(0) for name in names]))
                 for stack in (params, grads, state.first, state.second)]
        steps = state.steps.unbind(0)
        for member, (adam, lr, momentum, nesterov, beta1, beta2, eps) in enumerate(self.members):
            weights, gradients, first, second = (list(v[member]) for v in views)
            if adam:
                torch._fused_adam_(weights, gradients, first, second, [], [steps[member]] * len(names),
                                   amsgrad=False, lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps,
                                   maximize=False)
            else:
                torch._fused_sgd_(weights, gradients, first if momentum else [], weight_decay=0.0,
                                  momentum=momentum, lr=lr, dampening=0.0, nesterov=nesterov, maximize=False,
                                  is_first_step=False)


@torch.no_grad()
def apply_update(params: dict, grads: dict, state: OptimizerState, hyper: HyperParams) -> None:
    """One optimizer step for every member in place: SGD / momentum / Nesterov / Adam chosen per member.

    Builds an UpdateRule each call; loops over many steps should build one rule and call rule.apply.
    """
    UpdateRule(hyper, state.steps.device).apply(params, grads, state)
