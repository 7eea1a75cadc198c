"""The BiLSTM population's stacked layout is the nn.LSTM model's: both stacked forwards (one torch.lstm call per
member, and the batched time loop) compute the logits, losses and gradients of the standalone models."""
import torch
import torch.nn.functional as F

from esgd_asr.models import BiLSTM, BLSTMConfig
from esgd_asr.population import stacked
from esgd_asr.population.engine import Population, stacked_losses

CONFIG = BLSTMConfig(input_dim=6, num_layers=2, cells=5, bottleneck=4, num_targets=7, chunk=9)


def members(count):
    torch.manual_seed(0)
    return [BiLSTM(CONFIG) for _ in range(count)]


def test_stacked_layout_converts_to_and_from_models_exactly():
    models = members(3)
    population = Population.from_modules(models)
    for index, model in enumerate(models):
        back = population.to_module(index, BiLSTM(CONFIG))
        assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values()))


def test_both_lstm_forwards_equal_nn_lstm_with_gradients():
    models = members(2)
    population = Population.from_modules(models)
    torch.manual_seed(1)
    features = torch.randn(3, 9, 6)
    per_member = torch.randn(2, 3, 9, 6)
    targets = torch.randint(0, 7, (2, 3, 9))
    reference = torch.stack([m.lstm(features)[0] for m in models])
    reference_own = torch.stack([m.lstm(x)[0] for m, x in zip(models, per_member)])
    losses = torch.stack([F.cross_entropy(m(x).reshape(-1, 7), t.reshape(-1))
                          for m, x, t in zip(models, per_member, targets)])
    losses.sum().backward()
    for lstm in (stacked.fused_lstm, stacked.batched_lstm):
        assert torch.allclose(lstm(population.params, 2, features, True), reference, atol=1e-6)
        assert torch.allclose(lstm(population.params, 2, per_member, False), reference_own, atol=1e-6)
        leaves = {k: v.detach().clone().requires_grad_() for k, v in population.params.items()}
        hidden = lstm(leaves, 2, per_member, False)
        logits = stacked._linear(leaves, "output.", stacked._linear(leaves, "bottleneck.", hidden))
        mine = stacked_losses(logits, targets, per_member=True)[1]
        assert torch.allclose(mine, losses.detach(), atol=1e-6)
        mine.sum().backward()
        for name, leaf in leaves.items():
            expected = torch.stack([dict(m.named_parameters())[name].grad for m in models])
            assert torch.allclose(leaf.grad, expected, atol=1e-6), (lstm.__name__, name)


def test_single_model_training_step_equals_torch_optim():
    model = members(1)[0]
    population = Population.from_modules([model])
    torch.manual_seed(2)
    features, targets = torch.randn(4, 9, 6), torch.randint(0, 7, (4, 9))
    population.sgd_step(population.params, population.buffers, features, targets, 0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(features).reshape(-1, 7), targets.reshape(-1)).backward()
    optimizer.step()
    for name, value in model.state_dict().items():
        assert torch.allclose(population.params[name][0], value, atol=1e-7), name


def test_losses_and_gradients_with_unlabelled_context_frames_equal_the_models():
    """The engine runs the senone layer on the labelled frames only: with context frames (-100) at other places
    in each member's own batch, and in a shared batch, its losses and gradients are the standalone models'."""
    models = members(3)
    population = Population.from_modules(models)
    torch.manual_seed(3)
    own, shared = torch.randn(3, 4, 9, 6), torch.randn(4, 9, 6)
    targets = torch.randint(0, 7, (3, 4, 9))
    targets[0, :, :2] = -100
    targets[1, :, 6:] = -100
    targets[2, 1] = -100
    for features, batch_targets, per_member in [(own, targets, True), (shared, targets[1], False)]:
        inputs = features if per_member else features.expand(3, -1, -1, -1)
        labels = batch_targets if per_member else batch_targets.expand(3, -1, -1)
        for model in models:
            model.zero_grad()
        losses = torch.stack([F.cross_entropy(m(x).reshape(-1, 7), t.reshape(-1))
                              for m, x, t in zip(models, inputs, labels)])
        losses.sum().backward()
        grads, mine = population.loss_and_grads(population.params, population.buffers, features, batch_targets,
                                                per_member=per_member)
        assert torch.allclose(mine, losses.detach(), atol=1e-6)
        for name, grad in grads.items():
            expected = torch.stack([dict(m.named_parameters())[name].grad for m in models])
            assert torch.allclose(grad, expected, atol=1e-6), (per_member, name)
    sums = population.loss_sums(population.params, population.buffers, shared, targets[2])
    expected = torch.stack([F.cross_entropy(m(shared).reshape(-1, 7), targets[2].reshape(-1), reduction="sum")
                            for m in models])
    assert torch.allclose(sums, expected.detach(), atol=1e-5)
