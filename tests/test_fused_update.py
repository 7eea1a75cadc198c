"""The fused optimizer step (torch's multi-tensor SGD / Adam kernels per member, the GPU default) equals the
stacked-ops step for every optimizer kind, over several steps."""
import torch

from esgd_asr.population.optim_pool import HyperParams, OptimizerState, UpdateRule


def test_fused_step_equals_the_stacked_ops_step():
    hyper = HyperParams.plain_sgd(5, lr=0.05, batch_size=16)   # plain SGD, momentum, Nesterov, Adam, Adam lr 0
    hyper.kind[3:] = 1
    hyper.lr[3:] = torch.tensor([0.01, 0.0])
    hyper.momentum[1:3] = torch.tensor([0.7, 0.5])
    hyper.nesterov[2] = True
    generator = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(5, 4, 3, generator=generator), "b": torch.randn(5, 4, generator=generator)}
    copies = {k: v.clone() for k, v in params.items()}
    states = OptimizerState.zeros_like(params), OptimizerState.zeros_like(copies)
    stacked, fused = UpdateRule(hyper, "cpu"), UpdateRule(hyper, "cpu", fused=True)
    assert not stacked.fused
    for _ in range(3):
        grads = {k: torch.randn(v.shape, generator=generator) for k, v in params.items()}
        stacked.apply(params, grads, states[0])
        fused.apply(copies, {k: v.clone() for k, v in grads.items()}, states[1])
    for name in params:
        assert torch.allclose(copies[name], params[name], atol=1e-6), name
        # a plain-SGD member's buffer is unused (the stacked ops keep its last gradient there)
        assert torch.allclose(states[1].first[name][1:], states[0].first[name][1:], atol=1e-6), name
        assert torch.allclose(states[1].second[name], states[0].second[name], atol=1e-6), name
    assert torch.equal(states[1].steps, states[0].steps)
