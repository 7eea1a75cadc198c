"""Population precision: the bf16 batched-matmul passes track fp32 (with fp32 master weights), the setting is
checked and carried to derived populations, and a population too large for its GPU stops with the sizes named."""
import pytest
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.models import DNNConfig, FeedForwardDNN
from esgd_asr.population import fastpath, memory
from esgd_asr.population.config import ESGDConfig
from esgd_asr.population.data import gaussian_clusters
from esgd_asr.population.engine import Population
from esgd_asr.population.selection import make_offspring

DNN = DNNConfig(feat_dim=4, splice=3, hidden=[16, 12], activations=["relu", "sigmoid"], num_targets=5)


def population_and_data():
    torch.manual_seed(0)
    population = Population.from_modules([FeedForwardDNN(DNN) for _ in range(3)])
    features, targets = gaussian_clusters(96, DNN.input_dim, DNN.num_targets, torch.Generator().manual_seed(1))
    return population, features.view(3, 32, -1), targets.view(3, 32)


def test_bf16_passes_track_fp32_and_keep_fp32_master_weights():
    population, features, targets = population_and_data()
    plan, params = population.plan, population.params
    grads, losses = fastpath.loss_and_grads(plan, params, features, targets, per_member=True)
    low_grads, low_losses = fastpath.loss_and_grads(plan, params, features, targets, per_member=True,
                                                    dtype=torch.bfloat16)
    assert low_losses.dtype == torch.float32 and torch.allclose(low_losses, losses, rtol=2e-2)
    for name, grad in grads.items():
        assert low_grads[name].dtype == torch.float32
        assert torch.allclose(low_grads[name], grad, atol=2e-2 * grad.abs().max()), name
    low = {k: v.to(torch.bfloat16) for k, v in params.items()}   # the copies the optimizer keeps (bf16 training)
    kept_grads, kept_losses = fastpath.loss_and_grads(plan, params, features, targets, per_member=True,
                                                      dtype=torch.bfloat16, low=low)
    assert torch.equal(kept_losses, low_losses)
    for name, grad in kept_grads.items():
        assert grad.dtype == (torch.bfloat16 if grad.dim() == 3 else torch.float32)
        assert torch.equal(grad.float(), low_grads[name]), name
    shared = (features[0], targets[0])
    assert torch.allclose(fastpath.loss_sum(plan, params, *shared, dtype=torch.bfloat16),
                          fastpath.loss_sum(plan, params, *shared), rtol=2e-2)
    fused = {k: v.clone() for k, v in params.items()}
    fastpath.loss_and_grads(plan, fused, features, targets, sgd_lr=torch.tensor([0.1, 0.2, 0.0]), per_member=True,
                            dtype=torch.bfloat16)
    for name, value in fused.items():   # the fused bf16 step: lr x bf16 gradient (rounded once) on fp32 weights
        assert value.dtype == torch.float32
        step = torch.tensor([0.1, 0.2, 0.0]).view(-1, *[1] * (value.dim() - 1)) * low_grads[name]
        assert torch.allclose(value, params[name] - step, atol=1e-2 * float(step.abs().max())), name
        assert torch.equal(value[2], params[name][2])   # lr 0 leaves the member exactly as it was


def test_precision_is_checked_and_carried_on():
    with pytest.raises(EsgdError, match="precision must be one of bf16, tf32, fp32"):
        ESGDConfig(precision="fp16")
    population, _, _ = population_and_data()
    population = Population(population.template, population.params, population.buffers, precision="tf32")
    derived = [population.clone(), population.select(torch.tensor([0])), population.concat(population),
               make_offspring(population, torch.full((2, 3), 1 / 3), 0.01, torch.Generator().manual_seed(0))]
    assert {p.precision for p in derived} == {"tf32"}


def test_a_population_too_large_for_the_gpu_stops_naming_the_sizes(monkeypatch):
    model = FeedForwardDNN(DNN)
    estimate = memory.generation_estimate(model, mu=10, offspring=40, max_batch=32, fitness_members=8,
                                          fitness_chunk=64)
    params = sum(p.numel() for p in model.parameters())
    assert estimate["copies"] == 130 and estimate["weights_gib"] == pytest.approx(130 * params * 4 / 2**30)
    memory.check_fits(model, 10, 40, 32, 8, 64, torch.device("cpu"))   # no check on the CPU
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1024, 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "a small GPU")
    with pytest.raises(EsgdError, match=r"population does not fit on cuda:0 \(a small GPU\): .*130 member copies"
                                        r".*mu=10, lambda=40.* but 0\.0 of 1\.0 GiB free"):
        memory.check_fits(model, 10, 40, 32, 8, 64, torch.device("cuda:0"))
