"""The population engine: mu members of one architecture as stacked tensors with a leading member dimension.

Forward, loss and gradients of all members are computed at once, so a generation costs about one large model
rather than mu small ones: models made of Linear layers and element-wise activations (FeedForwardDNN) take the
direct batched-matmul path of `fastpath.py`, the BiLSTM the stacked forward of `stacked.py`; any other module is one
`torch.func.vmap` over `functional_call` on a template module; the last two are differentiated by autograd.
Members are extracted or inserted as state dicts / nn.Modules (e.g. an anchor).
"""
import copy
import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from esgd_asr.errors import EsgdError
from esgd_asr.population import fastpath, graphed, stacked
from esgd_asr.population.precision import check_precision, compute_dtype, precision_scope

Tensors = dict[str, torch.Tensor]
GRAPH_LABEL_PADDING = 256   # labelled frames of a training batch on the GPU are padded to a multiple of this


def member_loss(template: nn.Module, params: Tensors, buffers: Tensors, features, targets) -> torch.Tensor:
    """Mean cross-entropy of one member over the frames of a batch (targets -100 are ignored)."""
    logits = functional_call(template, (params, buffers), (features,))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def member_loss_sum(template: nn.Module, params: Tensors, buffers: Tensors, features, targets) -> torch.Tensor:
    """Summed cross-entropy of one member over a batch, for chunked validation."""
    logits = functional_call(template, (params, buffers), (features,))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")


def stacked_losses(logits: torch.Tensor, targets: torch.Tensor, per_member: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed and mean cross-entropy per member (mu,) from stacked logits (mu, ..., classes) of one shared batch, or
    of each member's own batch with `per_member` (targets (mu, ...)); targets -100 are ignored; the mean is nan
    without labelled frames, as F.cross_entropy's."""
    members, classes = logits.shape[0], logits.shape[-1]
    targets = targets.reshape(members, -1) if per_member else targets.reshape(1, -1).expand(members, -1)
    per_frame = F.cross_entropy(logits.reshape(-1, classes), targets.reshape(-1), reduction="none")
    sums = per_frame.view(members, -1).sum(dim=1)
    return sums, sums / (targets != -100).sum(dim=1)


def labelled_positions(targets: torch.Tensor, members: int, per_member: bool = False, pad_to: int = 1
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The labelled frames (targets != -100) of a batch as flattened positions, (K,) of the batch all members share,
    or with `per_member` (mu, K) of each member's own batch (padded with unlabelled positions), and their targets
    (mu, K). With `pad_to`, K of `per_member` positions is rounded up to a multiple of it (at most all frames), so
    that batches of slightly different label counts share one CUDA graph."""
    if not per_member:
        flat = targets.reshape(-1)
        positions = torch.nonzero(flat != -100).squeeze(1)
        return positions, flat[positions].expand(members, -1)
    flat = targets.reshape(members, -1)
    count = min(-(-int((flat != -100).sum(dim=1).max()) // pad_to) * pad_to, flat.shape[1])
    positions = torch.argsort((flat == -100).to(torch.uint8), dim=1, stable=True)[:, :count]
    return positions, torch.gather(flat, 1, positions)


class Population:
    """Stacked parameters (`params`) and buffers (`buffers`) of `size` members sharing a template module.

    `fast`: None (default) uses the batched-matmul path whenever the template is a Linear chain (fastpath.py) and
    the stacked forward for a BiLSTM (stacked.py), False forces the generic vmap path (for comparisons; not for a
    BiLSTM, whose nn.LSTM vmap cannot batch: it keeps the stacked forward), True requires the batched-matmul path.
    `precision` (precision.py): bf16, tf32 or fp32 passes on a GPU; the CPU computes in fp32 whatever it says.
    """

    def __init__(self, template: nn.Module, params: Tensors, buffers: Tensors, fast: bool | None = None,
                 precision: str = "fp32"):
        sizes = {t.shape[0] for t in [*params.values(), *buffers.values()]}
        if len(sizes) != 1:
            raise EsgdError(f"population: stacked tensors disagree on the member count {sorted(sizes)}")
        self.template = template
        self.path_choice = fast   # passed on to the populations made from this one, as is the precision
        self.precision = check_precision(precision)
        self.params = params
        self.buffers = buffers
        # functions of the template, not bound methods: a population refers to nothing that refers back to it, so
        # its tensors and CUDA graphs are freed as soon as it is dropped, not at the next cyclic garbage collection
        loss, loss_sum = functools.partial(member_loss, template), functools.partial(member_loss_sum, template)
        self._loss_fn = vmap(loss, in_dims=(0, 0, None, None), randomness="different")
        self._own_batch_loss_fn = vmap(loss, in_dims=(0, 0, 0, 0), randomness="different")
        self._forward_fn = vmap(loss_sum, in_dims=(0, 0, None, None), randomness="different")
        self.plan = None if fast is False else fastpath.linear_plan(template)
        if fast and self.plan is None:
            raise EsgdError(f"population: no batched-matmul path for {type(template).__name__} (Linear chains only)")
        self.fast = self.plan is not None
        self.stacked = None if self.fast else stacked.stacked_forward(template)
        self._workspace = self._eval_workspace = None
        self._graphed_pass = graphed.GraphedPass()

    @classmethod
    def from_modules(cls, modules: list[nn.Module], device: torch.device | str | None = None,
                     fast: bool | None = None, precision: str = "fp32") -> "Population":
        """Stack the weights of modules of one architecture (copies; the modules are left untouched)."""
        if not modules:
            raise EsgdError("population: needs at least one member")
        device = torch.device(device) if device is not None else next(modules[0].parameters()).device
        params, buffers = stack_module_state(modules)
        params = {k: v.detach().to(device, copy=True) for k, v in params.items()}
        buffers = {k: v.detach().to(device, copy=True) for k, v in buffers.items()}
        template = copy.deepcopy(modules[0]).to("meta")
        return cls(template, params, buffers, fast, precision)

    @classmethod
    def from_factory(cls, factory: Callable[[], nn.Module], size: int, generator: torch.Generator,
                     device: torch.device | str = "cpu", fast: bool | None = None, precision: str = "fp32",
                     keep: range | None = None) -> "Population":
        """`size` freshly initialised members; the initialisation is seeded from `generator` (reproducible). `keep`:
        only these of them (each made, the others dropped at once: a process's block of a population)."""
        if size < 1:
            raise EsgdError(f"population: size must be at least 1, got {size}")
        keep = range(size) if keep is None else keep
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            modules = [module for index in range(size) for module in [factory()] if index in keep]
        return cls.from_modules(modules, device, fast, precision)

    @property
    def size(self) -> int:
        return next(iter(self.params.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def num_parameters(self) -> int:
        """Parameters of one member."""
        return sum(t[0].numel() for t in self.params.values())

    def member_state(self, index: int) -> Tensors:
        """A cloned state dict of one member (parameters and buffers, named as in the module)."""
        return {k: v[index].clone() for k, v in [*self.params.items(), *self.buffers.items()]}

    def set_member(self, index: int, state: Tensors) -> None:
        """Overwrite one member from a state dict of the same architecture."""
        expected = set(self.params) | set(self.buffers)
        if set(state) != expected:
            missing = sorted(expected - set(state)) or sorted(set(state) - expected)
            raise EsgdError(f"population: state dict does not match the architecture (key {missing[0]!r})")
        for name, stack in [*self.params.items(), *self.buffers.items()]:
            if state[name].shape != stack.shape[1:]:
                raise EsgdError(f"population: {name} has shape {tuple(state[name].shape)}, "
                                f"expected {tuple(stack.shape[1:])}")
            stack[index].copy_(state[name])

    def to_module(self, index: int, like: nn.Module) -> nn.Module:
        """A standalone copy of `like` (same architecture) carrying member `index`'s weights."""
        module = copy.deepcopy(like)
        module.load_state_dict(self.member_state(index))
        return module

    def select(self, indices: torch.Tensor) -> "Population":
        """A new population of the members at `indices` (repeats allowed), copying the tensors."""
        indices = indices.to(self.device)
        return Population(self.template, {k: v[indices] for k, v in self.params.items()},
                          {k: v[indices] for k, v in self.buffers.items()}, self.path_choice,
                          self.precision)

    def concat(self, other: "Population") -> "Population":
        """Members of self followed by the members of other."""
        return Population(self.template, {k: torch.cat([v, other.params[k]]) for k, v in self.params.items()},
                          {k: torch.cat([v, other.buffers[k]]) for k, v in self.buffers.items()}, self.path_choice,
                          self.precision)

    def clone(self) -> "Population":
        return Population(self.template, {k: v.clone() for k, v in self.params.items()},
                          {k: v.clone() for k, v in self.buffers.items()}, self.path_choice,
                          self.precision)

    def restore(self, mask: torch.Tensor, snapshot: "Population") -> None:
        """Members where `mask` is true take back their tensors from `snapshot` (back-off), exactly."""
        for mine, saved in [(self.params, snapshot.params), (self.buffers, snapshot.buffers)]:
            for name, stack in mine.items():
                shaped = mask.to(stack.device).view(-1, *([1] * (stack.dim() - 1)))
                stack.copy_(torch.where(shaped, saved[name], stack))

    def compute_weights(self, params: Tensors) -> Tensors | None:
        """Copies of `params` in the compute dtype for the batched-matmul passes (bf16 on a GPU), which
        loss_and_grads takes as `low` and UpdateRule.apply keeps current; None when the passes compute in fp32."""
        dtype = compute_dtype(self.precision, self.device)
        if self.plan is None or dtype is None:
            return None
        return {k: v.to(dtype) for k, v in params.items()}

    def loss_and_grads(self, params: Tensors, buffers: Tensors, features, targets, reuse_buffers: bool = False,
                       per_member: bool = False, low: Tensors | None = None) -> tuple[Tensors, torch.Tensor]:
        """Gradients (stacked like params) and mean losses (members,) for one shared batch, or with `per_member`
        for each member's own batch (features and targets with a leading member dimension), all members at once.

        `reuse_buffers`: the returned gradients may live in buffers that the next call with it overwrites (a
        training loop that consumes them at once saves the allocations). `low`: compute_weights() of params,
        current (the weight gradients then come in that dtype)."""
        if self.plan is not None:
            if reuse_buffers and self._workspace is None:
                self._workspace = fastpath.Workspace()
            with precision_scope(self.precision, features.device):
                return fastpath.loss_and_grads(self.plan, params, features, targets,
                                               self._workspace if reuse_buffers else None, per_member=per_member,
                                               dtype=compute_dtype(self.precision, features.device), low=low)
        grads, losses = self._autograd_loss_and_grads(params, buffers, features, targets, per_member)
        if self.stacked is not None and features.is_cuda and not reuse_buffers:
            grads = {k: v.clone() for k, v in grads.items()}   # the CUDA graph's next replay overwrites its outputs
        return grads, losses

    def _autograd_loss_and_grads(self, params: Tensors, buffers: Tensors, features, targets, per_member: bool = False
                                 ) -> tuple[Tensors, torch.Tensor]:
        """The stacked (or vmap'd) forward, differentiated by plain autograd: every member's loss depends on its
        own slice of the stacked parameters only, so the gradient of the summed losses is the stack of the
        members' gradients (several times faster than vmap over grad_and_value, whose per-op transform overhead
        dominates). The stacked pass runs as a CUDA graph on the GPU (graphed.py); its gradients are the graph's."""
        if self.stacked is not None:
            members = next(iter(params.values())).shape[0]
            positions, labels = labelled_positions(targets, members, per_member, GRAPH_LABEL_PADDING
                                                   if features.is_cuda else 1)
            grads, losses = self._graphed_pass(self._stacked_pass, params, features, positions, labels)
            return grads, losses.clone()
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        with torch.enable_grad(), precision_scope(self.precision, features.device, autocast=True):
            loss_fn = self._own_batch_loss_fn if per_member else self._loss_fn
            losses = loss_fn(leaves, buffers, features, targets)
            grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        return dict(zip(leaves, grads)), losses.detach()

    def _stacked_pass(self, params: Tensors, features, positions, labels) -> tuple[Tensors, torch.Tensor]:
        """Gradients and mean losses of the stacked forward on the labelled `positions` (_stacked_losses_at); free
        of host synchronisation, so that it can be captured as a CUDA graph."""
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        with torch.enable_grad(), precision_scope(self.precision, features.device, autocast=True):
            losses = self._stacked_losses_at(leaves, features, positions, labels)[1]
            grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        return dict(zip(leaves, grads)), losses.detach()

    def sgd_step(self, params: Tensors, buffers: Tensors, features, targets,
                 lr: float | torch.Tensor, per_member: bool = False) -> torch.Tensor:
        """One plain-SGD step (no momentum) of every member in place, param <- param - lr * grad; `lr` is a float
        or a (members,) tensor; `per_member` as in loss_and_grads. Returns the mean losses before the step. On the
        batched-matmul path the update is fused into the weight-gradient GEMMs (no gradient is materialised)."""
        if self.plan is not None:
            if self._workspace is None:
                self._workspace = fastpath.Workspace()
            with precision_scope(self.precision, features.device):
                return fastpath.loss_and_grads(self.plan, params, features, targets, self._workspace, sgd_lr=lr,
                                               per_member=per_member,
                                               dtype=compute_dtype(self.precision, features.device))[1]
        grads, losses = self._autograd_loss_and_grads(params, buffers, features, targets, per_member)
        with torch.no_grad():
            for name, param in params.items():
                if isinstance(lr, torch.Tensor):
                    param.sub_(lr.to(param.device, param.dtype).view(-1, *([1] * (param.dim() - 1))) * grads[name])
                else:
                    param.sub_(grads[name], alpha=float(lr))
        return losses

    def loss_sums(self, params: Tensors, buffers: Tensors, features, targets) -> torch.Tensor:
        """Summed cross-entropy (members,) of one batch, without gradients."""
        with precision_scope(self.precision, features.device, autocast=self.plan is None):
            return self._loss_sums(params, buffers, features, targets)

    def _loss_sums(self, params: Tensors, buffers: Tensors, features, targets) -> torch.Tensor:
        if self.plan is not None:
            # on the CPU, reuse the evaluation buffers across chunks (see fastpath.Workspace); the GPU's caching
            # allocator does that already without pinning the memory
            if features.device.type == "cpu" and self._eval_workspace is None:
                self._eval_workspace = fastpath.Workspace()
            workspace = self._eval_workspace if features.device.type == "cpu" else None
            return fastpath.loss_sum(self.plan, params, features, targets, workspace,
                                     dtype=compute_dtype(self.precision, features.device))
        if self.stacked is not None:
            return self._stacked_losses(params, features, targets)[0]
        return self._forward_fn(params, buffers, features, targets)

    def _stacked_losses(self, params: Tensors, features, targets, per_member: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """stacked_losses of the stacked forward, its senone layer run on the labelled frames only."""
        members = next(iter(params.values())).shape[0]
        return self._stacked_losses_at(params, features, *labelled_positions(targets, members, per_member))

    def _stacked_losses_at(self, params: Tensors, features, positions, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """stacked_losses on the labelled `positions` (labelled_positions: (K,) of a batch shared by all members, or
        (mu, K) of each member's own batch) and their `labels` (mu, K)."""
        logits = self.stacked(params, features, positions.dim() == 1, positions)
        # compiled on the GPU: the softmax reads the bf16 logits once instead of going through fp32 copies of them
        return stacked.compiled_on_gpu(stacked_losses, logits)(logits, labels, per_member=True)

    @torch.no_grad()
    def fitness(self, data, chunk_size: int = 4096, member_chunk: int | None = None) -> torch.Tensor:
        """Validation cross-entropy of every member, (size,), batched over members, chunked over data."""
        features, targets = data
        frames = int((targets != -100).sum())
        if frames == 0:
            raise EsgdError("fitness: the validation set has no labelled frames")
        member_chunk = member_chunk or self.size
        totals = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        for first in range(0, self.size, member_chunk):
            members = slice(first, first + member_chunk)
            params = {k: v[members] for k, v in self.params.items()}
            params = self.compute_weights(params) or params   # cast once for all data chunks
            buffers = {k: v[members] for k, v in self.buffers.items()}
            for start in range(0, features.shape[0], chunk_size):
                stop = start + chunk_size
                totals[members] += self.loss_sums(params, buffers, features[start:stop], targets[start:stop]).double()
        return (totals / frames).float()
