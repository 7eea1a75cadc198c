"""New-bob: back off to the previous weights and halve the learning rate exactly when validation CE rises."""
import pytest
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.models import DNNConfig, FeedForwardDNN
from esgd_asr.population.data import as_tensors, gaussian_clusters
from esgd_asr.population.engine import Population
from esgd_asr.population.newbob import NewBobConfig, newbob_epoch, train_newbob, train_single_model

MODEL = DNNConfig(feat_dim=4, splice=3, hidden=[24], activations=["relu"], num_targets=6)


@pytest.fixture(scope="module")
def data():
    features, targets = gaussian_clusters(600, MODEL.input_dim, MODEL.num_targets, torch.Generator().manual_seed(0),
                                          spread=2.5)
    return (features[:400], targets[:400]), (features[400:], targets[400:])


def test_backs_off_and_halves_exactly_when_validation_rises(data):
    train, valid = data
    torch.manual_seed(0)
    population = Population.from_modules([FeedForwardDNN(MODEL)])
    initial = population.fitness(valid)
    result = train_newbob(population, train, valid, NewBobConfig(lr=3.0, batch_size=16, max_epochs=8),
                          torch.Generator().manual_seed(1), fitness=initial)
    previous_fitness, previous_lr = float(initial), 3.0
    halvings = 0
    for record in result.epochs:
        if record["backed_off"][0]:
            halvings += 1
            assert record["lr"][0] == pytest.approx(previous_lr / 2)
            assert record["fitness"][0] == previous_fitness
        else:
            assert record["lr"][0] == previous_lr and record["fitness"][0] <= previous_fitness
        previous_fitness, previous_lr = record["fitness"][0], record["lr"][0]
    assert 0 < halvings < len(result.epochs)
    assert float(population.fitness(valid)[0]) == pytest.approx(previous_fitness)


def test_weights_after_a_rise_are_the_previous_epochs_exactly(data):
    train, valid = data
    torch.manual_seed(0)
    population = Population.from_modules([FeedForwardDNN(MODEL)])
    start = population.clone()
    result = train_newbob(population, train, valid, NewBobConfig(lr=500.0, batch_size=16, max_epochs=1),
                          torch.Generator().manual_seed(1))
    assert result.epochs[0]["backed_off"] == [True] and result.lr.tolist() == [250.0]
    assert all(torch.equal(population.params[k], start.params[k]) for k in start.params)


def test_stops_at_the_learning_rate_floor(data):
    train, valid = data
    torch.manual_seed(0)
    population = Population.from_modules([FeedForwardDNN(MODEL)])
    result = train_newbob(population, train, valid, NewBobConfig(lr=500.0, batch_size=64, max_epochs=50, min_lr=100.0),
                          torch.Generator().manual_seed(1))
    assert len(result.epochs) < 50 and float(result.lr[0]) < 100.0


def test_single_model_baseline_learns_and_leaves_its_input_untouched(data):
    train, valid = data
    model = FeedForwardDNN(MODEL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained, result = train_single_model(model, train, valid, NewBobConfig(lr=0.1, batch_size=32, max_epochs=4))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.epochs[-1]["fitness"][0] < 1.0
    with torch.no_grad():
        logits = trained(valid[0])
    ce = torch.nn.functional.cross_entropy(logits, valid[1])
    assert float(ce) == pytest.approx(float(result.fitness[0]), abs=1e-5)


def test_bad_settings_and_data_are_reported():
    with pytest.raises(EsgdError, match="halving_factor"):
        NewBobConfig(halving_factor=1.5)
    with pytest.raises(EsgdError, match="valid: features and targets"):
        as_tensors((torch.zeros(3, 2), torch.zeros(4)), name="valid")
    dataset = torch.utils.data.TensorDataset(torch.zeros(3, 2), torch.zeros(3))
    features, targets = as_tensors(dataset)
    assert features.shape == (3, 2) and targets.dtype == torch.long


def test_each_member_backs_off_and_halves_on_its_own_rise(data):
    """One epoch of a population: only the members whose validation CE rose return to their weights and halve."""
    train, valid = data
    torch.manual_seed(0)
    population = Population.from_modules([FeedForwardDNN(MODEL) for _ in range(4)])
    before = population.clone()
    fitness = population.fitness(valid)
    lr = torch.tensor([0.05, 1.0, 0.1, 1500.0])  # member 1 rises to a finite CE, member 3 diverges (NaN)
    new_fitness, new_lr, record = newbob_epoch(population, train, valid, NewBobConfig(batch_size=16),
                                               torch.Generator().manual_seed(1), fitness, lr, 1)
    tried = torch.tensor(record["tried"])
    rose = ~(tried <= fitness)
    assert torch.isfinite(tried[1]) and torch.isnan(tried[3])
    assert rose.tolist() == [False, True, False, True] and record["backed_off"] == rose.tolist()
    assert torch.equal(new_lr, torch.where(rose, lr / 2, lr))
    assert torch.equal(new_fitness, torch.where(rose, fitness, tried))
    for k in before.params:
        assert torch.equal(population.params[k][rose], before.params[k][rose])
    assert not torch.equal(population.params["output.weight"][~rose], before.params["output.weight"][~rose])
    assert float(population.fitness(valid)[1]) == pytest.approx(float(fitness[1]))
