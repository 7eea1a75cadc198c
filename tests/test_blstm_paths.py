"""The BiLSTM population's stacked layout is the nn.LSTM model's: both stacked forwards (one torch.lstm call per
member, and the batched time loop) compute the logits, losses and gradients of the standalone models."""
import torch
import torch.nn.functional as F

from esgd_asr.models import BiLSTM, BLSTMConfig
from esgd_asr.population import stacked
from esgd_asr.population.engine import Population, labelled_positions, stacked_losses

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


def test_recurrence_with_written_out_backward_equals_autograd():
    """The GPU's time loop (_Recurrence: hand-written backward, recurrent weights' gradient in one bmm) gives the
    hidden states and the gradients of autograd through the loop, in both directions."""
    torch.manual_seed(4)
    gates_in, recurrent = torch.randn(3, 4, 9, 20), torch.randn(3, 5, 20) * 0.5
    weights = torch.randn(3, 4, 9, 5)
    for reverse in (False, True):
        results = []
        for run in (lambda g, r: stacked._Recurrence.apply(g, r, reverse),
                    lambda g, r: stacked._recurrence(g.unbind(2), r, reverse)):
            leaves = gates_in.clone().requires_grad_(), recurrent.clone().requires_grad_()
            outputs = run(*leaves)
            (outputs * weights).sum().backward()
            results.append((outputs.detach(), *(leaf.grad for leaf in leaves)))
        for mine, expected in zip(*results):
            assert torch.allclose(mine, expected, atol=1e-5), reverse


def test_label_positions_padded_for_cuda_graphs_give_the_same_losses_and_gradients():
    """On the GPU a training batch's labelled frames are padded (with unlabelled ones) to a multiple of
    GRAPH_LABEL_PADDING so that batches share a CUDA graph: the padding changes neither losses nor gradients."""
    population = Population.from_modules(members(3))
    torch.manual_seed(5)
    features, targets = torch.randn(3, 4, 9, 6), torch.randint(0, 7, (3, 4, 9))
    targets[:, :, :3] = -100
    targets[1, 0] = -100
    results = []
    for pad in (1, 16):
        positions, labels = labelled_positions(targets, 3, per_member=True, pad_to=pad)
        assert positions.shape[1] == (24 if pad == 1 else 32)
        results.append(population._stacked_pass(population.params, features, positions, labels))
    (grads, losses), (padded_grads, padded_losses) = results
    assert torch.allclose(losses, padded_losses, atol=1e-6)
    assert all(torch.allclose(grads[name], padded_grads[name], atol=1e-6) for name in grads)
