"""The GPU's fused passes, run eagerly on the CPU in fp32: the stacked optimizer step (stacked_step, compiled on a
GPU) equals torch.optim per member and the stacked-ops step for every optimizer kind and keeps the compute-dtype
weight copies current; the one-expression cross-entropy and its gradient equal F.cross_entropy and autograd."""
import pytest
import torch
import torch.nn.functional as F

from esgd_asr.population import fastpath
from esgd_asr.population.optim_pool import HyperParams, OptimizerState, UpdateRule


def five_optimizers() -> HyperParams:
    """Plain SGD, momentum, Nesterov, Adam, Adam at lr 0."""
    hyper = HyperParams.plain_sgd(5, lr=0.05, batch_size=16)
    hyper.kind[3:] = 1
    hyper.lr[3:] = torch.tensor([0.01, 0.0])
    hyper.momentum[1:3] = torch.tensor([0.7, 0.5])
    hyper.nesterov[2] = True
    return hyper


@pytest.mark.parametrize("members", [slice(0, 5), slice(0, 1), slice(0, 3)], ids=["mixed", "plain", "momentum"])
def test_fused_step_equals_torch_optim_and_the_stacked_ops_step(members):
    hyper = five_optimizers().select(torch.arange(5)[members])
    size = hyper.lr.shape[0]
    generator = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(size, 4, 3, generator=generator), "b": torch.randn(size, 4, generator=generator)}
    copies = {k: v.clone() for k, v in params.items()}
    low = {k: v.to(torch.bfloat16) for k, v in copies.items()}
    modules = [[torch.nn.Parameter(params[k][m].clone()) for k in params] for m in range(size)]
    optimizers = [torch.optim.Adam(p, lr=float(hyper.lr[m])) if hyper.kind[m] else
                  torch.optim.SGD(p, lr=float(hyper.lr[m]), momentum=float(hyper.momentum[m]),
                                  nesterov=bool(hyper.nesterov[m])) for m, p in enumerate(modules)]
    states = OptimizerState.zeros_like(params), OptimizerState.zeros_like(copies)
    stacked, fused = UpdateRule(hyper, "cpu"), UpdateRule(hyper, "cpu", fused=True)
    assert not stacked.fused
    for _ in range(3):
        grads = {k: torch.randn(v.shape, generator=generator) for k, v in params.items()}
        stacked.apply(params, grads, states[0])
        fused.apply(copies, {k: v.clone() for k, v in grads.items()}, states[1], low)
        for m, (module, optimizer) in enumerate(zip(modules, optimizers)):
            for parameter, name in zip(module, params):
                parameter.grad = grads[name][m].clone()
            optimizer.step()
    for index, name in enumerate(params):
        expected = torch.stack([module[index].detach() for module in modules])
        assert torch.allclose(copies[name], expected, atol=1e-6), name
        assert torch.allclose(params[name], expected, atol=1e-6), name
        assert torch.equal(low[name], copies[name].to(torch.bfloat16)), name
        assert torch.allclose(states[1].second[name], states[0].second[name], atol=1e-6), name
    assert torch.equal(states[1].steps, states[0].steps)


def test_one_expression_cross_entropy_equals_autograd():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, 7, generator=generator, requires_grad=True)
    targets = torch.randint(7, (3, 10), generator=generator)
    targets[1, :4] = -100
    labelled = targets != -100
    weight = (labelled.float() / labelled.sum(dim=1, keepdim=True)).unsqueeze(-1)
    index = torch.where(labelled, targets, 0).unsqueeze(-1)
    scale = torch.tensor([1.0, -0.5, 2.0]).view(-1, 1, 1)
    losses, grad = fastpath.cross_entropy_and_grad(logits.detach(), index, weight, scale)
    expected = torch.stack([F.cross_entropy(logits[m], targets[m]) for m in range(3)])
    assert torch.allclose(losses, expected, atol=1e-6)
    (expected_grad,) = torch.autograd.grad((expected * scale.view(-1)).sum(), logits)
    assert torch.allclose(grad, expected_grad, atol=1e-6)
    sums = fastpath.cross_entropy_sums(logits.detach(), index[:1], labelled[:1].float().unsqueeze(-1))
    assert torch.allclose(sums, torch.stack([F.cross_entropy(logits[m], targets[0], reduction="sum")
                                             for m in range(3)]).detach(), atol=1e-5)
