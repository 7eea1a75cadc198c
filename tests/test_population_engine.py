"""The batched engine equals a per-member loop: losses, gradients, one step of every optimizer kind, fitness."""
import copy

import pytest
import torch
import torch.nn.functional as F

from esgd_asr.errors import EsgdError
from esgd_asr.models import BiLSTM, BLSTMConfig, DNNConfig, FeedForwardDNN
from esgd_asr.population.data import gaussian_clusters
from esgd_asr.population.engine import Population
from esgd_asr.population.optim_pool import HyperParams, OptimizerPool, OptimizerState, apply_update
from esgd_asr.population.sgd import epoch_orders, sgd_with_backoff, train_epochs

DNN = DNNConfig(feat_dim=4, splice=3, hidden=[16, 12], activations=["relu", "sigmoid"], num_targets=5)
BLSTM = BLSTMConfig(input_dim=6, num_layers=2, cells=5, bottleneck=4, num_targets=5, chunk=7)


def make_members(config, size, seed=0):
    torch.manual_seed(seed)
    model_class = FeedForwardDNN if isinstance(config, DNNConfig) else BiLSTM
    return [model_class(config) for _ in range(size)]


def data_for(config, count=64, seed=1):
    generator = torch.Generator().manual_seed(seed)
    if isinstance(config, DNNConfig):
        return gaussian_clusters(count, config.input_dim, config.num_targets, generator)
    return gaussian_clusters(count, config.input_dim, config.num_targets, generator, frames=config.chunk)


def mixed_hyper():
    """Four members: plain SGD, momentum, Nesterov, Adam."""
    hyper = HyperParams.plain_sgd(4, lr=0.05, batch_size=16)
    hyper.kind[3] = 1
    hyper.lr[3] = 0.01
    hyper.momentum[1:3] = torch.tensor([0.7, 0.5])
    hyper.nesterov[2] = True
    return hyper


def reference_optimizer(module, hyper, index):
    if hyper.describe(index)["optimizer"] == "adam":
        return torch.optim.Adam(module.parameters(), lr=float(hyper.lr[index]), betas=(0.9, 0.999), eps=1e-8)
    return torch.optim.SGD(module.parameters(), lr=float(hyper.lr[index]), momentum=float(hyper.momentum[index]),
                           nesterov=bool(hyper.nesterov[index]))


def loss_of(module, features, targets):
    logits = module(features)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@pytest.mark.parametrize("config", [DNN, BLSTM], ids=["dnn", "blstm"])
def test_losses_and_gradients_equal_a_member_loop(config):
    members = make_members(config, 3)
    population = Population.from_modules(members)
    features, targets = data_for(config)
    grads, losses = population.loss_and_grads(population.params, population.buffers, features, targets)
    for index, module in enumerate(members):
        module.zero_grad()
        loss = loss_of(module, features, targets)
        loss.backward()
        assert torch.allclose(losses[index], loss, atol=1e-5)
        for name, parameter in module.named_parameters():
            assert torch.allclose(grads[name][index], parameter.grad, atol=1e-5), name


@pytest.mark.parametrize("config,members_used", [(DNN, [0, 1, 2, 3]), (BLSTM, [0, 1, 2, 3]), (DNN, [3, 3]),
                                                  (DNN, [0, 2])], ids=["dnn", "blstm", "adam-only", "sgd-only"])
def test_two_steps_of_each_optimizer_kind_equal_torch_optim(config, members_used):
    members = make_members(config, len(members_used))
    population = Population.from_modules(members)
    hyper = mixed_hyper().select(torch.tensor(members_used))
    state = OptimizerState.zeros_like(population.params)
    features, targets = data_for(config)
    references = [copy.deepcopy(m) for m in members]
    optimizers = [reference_optimizer(m, hyper, i) for i, m in enumerate(references)]
    for step in range(2):
        batch = slice(step * 16, step * 16 + 16)
        grads, _ = population.loss_and_grads(population.params, population.buffers, features[batch], targets[batch])
        apply_update(population.params, grads, state, hyper)
        for module, optimizer in zip(references, optimizers):
            optimizer.zero_grad()
            loss_of(module, features[batch], targets[batch]).backward()
            optimizer.step()
    for index, module in enumerate(references):
        for name, parameter in module.named_parameters():
            assert torch.allclose(population.params[name][index], parameter.detach(), atol=1e-5), (index, name)


def test_a_member_with_zero_learning_rate_does_not_move():
    members = make_members(DNN, 4)
    population = Population.from_modules(members)
    hyper = mixed_hyper()
    hyper.lr[1] = hyper.lr[3] = 0.0   # momentum and Adam members
    before = population.clone()
    train_epochs(population, OptimizerState.zeros_like(population.params), hyper, data_for(DNN), 1,
                 torch.Generator().manual_seed(0))
    for name, stack in population.params.items():
        assert torch.equal(stack[[1, 3]], before.params[name][[1, 3]]), name
        assert not torch.equal(stack[0], before.params[name][0]), name


@pytest.mark.parametrize("config", [DNN, BLSTM], ids=["dnn", "blstm"])
def test_each_member_trains_on_its_own_batch_order_as_if_alone(config):
    members = make_members(config, 4)
    hyper = mixed_hyper()
    hyper.batch_size = torch.tensor([16, 32, 16, 32])
    data = data_for(config)
    grouped = Population.from_modules(members)
    frames = train_epochs(grouped, OptimizerState.zeros_like(grouped.params), hyper, data, 2,
                          torch.Generator().manual_seed(5), samples=48)
    assert frames == 2 * 48 * (config.chunk if config is BLSTM else 1)
    orders = epoch_orders(torch.Generator().manual_seed(5), 2, 4, 64, 48)
    assert len({tuple(order.tolist()) for order in orders[0]}) == 4          # no two members share a shuffle
    for index, module in enumerate(members):
        reference = copy.deepcopy(module)
        optimizer = reference_optimizer(reference, hyper, index)
        for epoch in range(2):
            order = orders[epoch, index]
            for start in range(0, 48, int(hyper.batch_size[index])):
                batch = order[start:start + int(hyper.batch_size[index])]
                optimizer.zero_grad()
                loss_of(reference, data[0][batch], data[1][batch]).backward()
                optimizer.step()
        for name, parameter in reference.named_parameters():
            assert torch.allclose(grouped.params[name][index], parameter.detach(), atol=2e-5), (index, name)


def test_fitness_is_validation_cross_entropy_chunked():
    members = make_members(BLSTM, 3)
    population = Population.from_modules(members)
    features, targets = data_for(BLSTM, count=10)
    targets[0, :3] = -100  # padding frames are ignored
    fitness = population.fitness((features, targets), chunk_size=3, member_chunk=2)
    for index, module in enumerate(members):
        with torch.no_grad():
            expected = loss_of(module, features, targets)
        assert fitness[index] == pytest.approx(float(expected), abs=1e-5)


def test_member_get_set_and_module_extraction():
    members = make_members(DNN, 3)
    population = Population.from_modules(members)
    population.set_member(0, members[2].state_dict())
    module = population.to_module(0, members[0])
    features, _ = data_for(DNN, count=5)
    assert torch.equal(module(features), members[2](features))
    with pytest.raises(EsgdError, match="shape"):
        population.set_member(1, FeedForwardDNN(DNNConfig(feat_dim=4, splice=3, hidden=[16, 13],
                                                          activations=["relu", "sigmoid"],
                                                          num_targets=5)).state_dict())


def test_backoff_restores_exact_previous_weights():
    population = Population.from_modules(make_members(DNN, 4))
    train, valid = data_for(DNN, count=64), data_for(DNN, count=32, seed=9)
    hyper = HyperParams.plain_sgd(4, lr=50.0, batch_size=8)  # diverges: every member gets worse
    hyper.lr[0] = 1e-9                                      # ... but this one cannot get worse by much
    before = population.clone()
    fitness = population.fitness(valid)
    result = sgd_with_backoff(population, OptimizerState.zeros_like(population.params), hyper, fitness, train, valid,
                              epochs=1, backoff_prob=1.0, generator=torch.Generator().manual_seed(0))
    for index in torch.nonzero(result.backed_off).flatten().tolist():
        for name in population.params:
            assert torch.equal(population.params[name][index], before.params[name][index])
    assert result.backed_off[1:].all()
    assert torch.all(result.fitness <= fitness)


def test_pool_draws_follow_the_configured_ranges():
    pool = OptimizerPool()
    hyper = pool.sample(4000, generation=3, generator=torch.Generator().manual_seed(0))
    sgd = hyper.kind == 0
    scale = 0.9 ** 3
    (sgd_low, sgd_high), adam_high = pool.lr_ranges["sgd"], pool.lr_ranges["adam"][1]
    assert hyper.lr[sgd].min() >= sgd_low * scale * 0.999 and hyper.lr[sgd].max() <= sgd_high * scale * 1.001
    assert hyper.lr[~sgd].max() <= adam_high * scale * 1.001
    with_momentum = hyper.momentum > 0
    assert not with_momentum[~sgd].any()
    assert with_momentum[sgd].float().mean() == pytest.approx(0.8, abs=0.03)
    assert hyper.nesterov[with_momentum].float().mean() == pytest.approx(0.5, abs=0.04)
    assert not hyper.nesterov[~with_momentum].any()
    assert set(hyper.batch_size.tolist()) == {64, 128, 256, 512}
    assert hyper.momentum[with_momentum].min() >= 0.1 and hyper.momentum.max() <= 0.9


def test_batched_matmul_path_equals_the_vmap_path():
    from torch import nn
    members = make_members(DNN, 3)
    fast, generic = Population.from_modules(members), Population.from_modules(members, fast=False)
    assert fast.fast and not generic.fast
    features, targets = data_for(DNN)
    targets[:5] = -100
    grads, losses = fast.loss_and_grads(fast.params, fast.buffers, features, targets, reuse_buffers=True)
    expected_grads, expected_losses = generic.loss_and_grads(generic.params, generic.buffers, features, targets)
    assert torch.allclose(losses, expected_losses, atol=1e-6)
    for name in grads:
        assert torch.allclose(grads[name], expected_grads[name], atol=1e-6), name
    assert torch.allclose(fast.fitness((features, targets), chunk_size=7), generic.fitness((features, targets)),
                          atol=1e-6)
    # a plain nn.Sequential with tanh and a bias-free layer takes the fast path too
    torch.manual_seed(0)
    chain = [nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 5, bias=False)) for _ in range(2)]
    fast, generic = Population.from_modules(chain), Population.from_modules(chain, fast=False)
    assert fast.fast
    grads, _ = fast.loss_and_grads(fast.params, fast.buffers, features, targets)
    expected_grads, _ = generic.loss_and_grads(generic.params, generic.buffers, features, targets)
    for name in grads:
        assert torch.allclose(grads[name], expected_grads[name], atol=1e-6), name
    assert Population.from_modules(make_members(BLSTM, 2)).fast is False
    with pytest.raises(EsgdError, match="batched-matmul"):
        Population.from_modules(make_members(BLSTM, 2), fast=True)


def test_stacked_blstm_population_keeps_its_path_and_equals_the_members():
    members = make_members(BLSTM, 3)
    stacked, forced = Population.from_modules(members), Population.from_modules(members, fast=False)
    assert stacked.stacked is not None and forced.stacked is not None   # vmap cannot batch nn.LSTM
    assert stacked.select(torch.tensor([2, 0])).stacked is not None
    features, targets = data_for(BLSTM)
    targets[0, :4] = -100
    expected = torch.stack([loss_of(m, features, targets) for m in members])
    _, losses = stacked.loss_and_grads(stacked.params, stacked.buffers, features, targets)
    assert torch.allclose(losses, expected, atol=1e-6)
    sums = torch.stack([F.cross_entropy(m(features).reshape(-1, 5), targets.reshape(-1), reduction="sum")
                        for m in members])
    assert torch.allclose(stacked.fitness((features, targets), chunk_size=5), sums / (targets != -100).sum(),
                          atol=1e-6)


@pytest.mark.parametrize("lrs", [[0.05] * 4, [0.05, 0.01, 0.2, 0.0]], ids=["uniform-lr", "per-member-lr"])
def test_fused_sgd_epoch_equals_the_vmap_path_and_torch_optim(lrs):
    members = make_members(DNN, 4)
    hyper = HyperParams.plain_sgd(4, lr=0.05, batch_size=16)
    hyper.lr = torch.tensor(lrs)
    data = data_for(DNN)
    fast, generic = Population.from_modules(members), Population.from_modules(members, fast=False)
    for population in (fast, generic):
        train_epochs(population, OptimizerState.zeros_like(population.params), hyper, data, 2,
                     torch.Generator().manual_seed(3))
    for name in fast.params:
        assert torch.allclose(fast.params[name], generic.params[name], atol=1e-5), name
    # and each member equals torch.optim.SGD on its own batches
    orders = epoch_orders(torch.Generator().manual_seed(3), 2, 4, 64, None)
    for index, module in enumerate(members):
        reference = copy.deepcopy(module)
        optimizer = torch.optim.SGD(reference.parameters(), lr=lrs[index])
        for order in orders[:, index]:
            for start in range(0, 64, 16):
                batch = order[start:start + 16]
                optimizer.zero_grad()
                loss_of(reference, data[0][batch], data[1][batch]).backward()
                optimizer.step()
        for name, parameter in reference.named_parameters():
            assert torch.allclose(fast.params[name][index], parameter.detach(), atol=1e-5), (index, name)


def test_mixed_optimizers_epoch_equal_on_both_paths_with_reused_buffers():
    members = make_members(DNN, 4)
    hyper = mixed_hyper()
    data = data_for(DNN)
    results = []
    for fast in (None, False):
        population = Population.from_modules(members, fast=fast)
        state = OptimizerState.zeros_like(population.params)
        train_epochs(population, state, hyper, data, 2, torch.Generator().manual_seed(1))
        results.append((population, state))
    (fast, fast_state), (generic, generic_state) = results
    for name in fast.params:
        assert torch.allclose(fast.params[name], generic.params[name], atol=1e-5), name
        assert torch.allclose(fast_state.second[name], generic_state.second[name], atol=1e-7), name
    assert torch.equal(fast_state.steps, generic_state.steps)


def test_a_dropped_population_is_freed_without_the_cyclic_garbage_collector():
    """Nothing a population holds refers back to it, so its tensors (and on the GPU its CUDA graphs' memory) go
    when the last reference does, not at some later cyclic collection."""
    import gc
    import weakref

    enabled = gc.isenabled()
    gc.disable()
    try:
        blstm = BiLSTM(BLSTMConfig(input_dim=3, num_layers=1, cells=2, bottleneck=2, num_targets=4, chunk=3))
        for module in (torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)), blstm):
            population = Population.from_modules([module, module])
            dropped = weakref.ref(population)
            del population
            assert dropped() is None, type(module).__name__
    finally:
        if enabled:
            gc.enable()
