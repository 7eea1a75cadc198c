"""Population Descent: elitism, fitness-weighted replacements, mutation strength rule, resume, config."""
import math

import pytest
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.models import DNNConfig, FeedForwardDNN
from esgd_asr.population.driver import run_algorithm
from esgd_asr.population.engine import Population
from esgd_asr.population.popdescent import (PopDescentConfig, PopulationDescent, load_popdescent_config, mutate,
                                            normalised_fitness)
from esgd_asr.population.data import gaussian_clusters
from untimed import untimed

MODEL = DNNConfig(feat_dim=4, splice=3, hidden=[24, 24], activations=["relu", "sigmoid"], num_targets=6)


def factory():
    return FeedForwardDNN(MODEL)


@pytest.fixture(scope="module")
def data():
    features, targets = gaussian_clusters(900, MODEL.input_dim, MODEL.num_targets, torch.Generator().manual_seed(0),
                                          spread=2.5)
    return (features[:600], targets[:600]), (features[600:], targets[600:])


def config(**changes):
    values = dict(mu=6, elite=3, generations=4, local_steps=5, batch_size=32, cv_batch=128, lr=0.01,
                  regularization=1e-4, init_spread=0.5, weight_sigma=0.05, seed=2)
    values.update(changes)
    return PopDescentConfig(**values)


def test_selection_keeps_the_elite_untouched_and_replaces_the_weakest(data):
    algorithm = PopulationDescent(config(), factory, *data)
    algorithm.local_update()
    before = algorithm.population.clone()
    lr_before = algorithm.lr.clone()
    loss = torch.tensor([2.0, 0.5, 3.0, 1.0, float("nan"), 0.7])
    record = algorithm.select_and_mutate(loss)
    assert sorted(record["replaced"]) == [0, 2, 4]             # the 3 weakest (the dead one counts as weakest)
    assert 4 not in record["replacements"]                      # F = 0: never drawn
    for slot, index in enumerate([1, 5, 3]):                    # the elite, fittest first, bit for bit
        for name, stack in algorithm.population.params.items():
            assert torch.equal(stack[slot], before.params[name][index])
        assert algorithm.lr[slot] == lr_before[index]
    assert algorithm.fitness[:3].tolist() == pytest.approx([0.5, 0.7, 1.0])


def test_replacements_are_drawn_in_proportion_to_normalised_fitness(data):
    algorithm = PopulationDescent(config(mu=4, elite=1, weight_sigma=0.0), factory, *data)
    loss = torch.tensor([0.0, 1.0, 3.0, 1.0])
    expected = normalised_fitness(loss)
    assert expected.tolist() == pytest.approx([1.0, 0.5, 0.25, 0.5])
    counts = torch.zeros(4)
    for _ in range(400):
        algorithm.population = Population.from_factory(factory, 4, torch.Generator().manual_seed(0))
        algorithm.lr, algorithm.reg = torch.full((4,), 0.01), torch.full((4,), 0.001)
        algorithm.optimizer_state = algorithm.optimizer_state.select(torch.arange(4))
        counts += torch.bincount(torch.tensor(algorithm.select_and_mutate(loss)["replacements"]), minlength=4)
    frequencies = counts / counts.sum()
    assert torch.allclose(frequencies, (expected / expected.sum()).float(), atol=0.03)


def test_mutation_strength_is_proportional_to_one_minus_fitness():
    torch.manual_seed(0)
    population = Population.from_modules([torch.nn.Linear(200, 200) for _ in range(3)])
    before = population.clone()
    settings = PopDescentConfig(weight_sigma=0.1, lr_sigma=1.0, reg_sigma=0.5)
    magnitude = torch.tensor([0.0, 0.25, 0.75])
    rates = torch.full((3,), 1e-3)
    lr, reg = mutate(population, rates, rates, magnitude, settings, torch.Generator().manual_seed(1),
                     torch.Generator().manual_seed(2))
    for index, strength in enumerate(magnitude.tolist()):
        deviation = population.params["weight"][index] - before.params["weight"][index]
        assert float(deviation.std()) == pytest.approx(0.1 * strength, abs=1e-3 if strength == 0 else 0.02 * strength)
    assert lr[0] == rates[0] and reg[0] == rates[0]              # magnitude 0: nothing changes
    # log-normal learning rates: log(lr / lr0) ~ N(0, (lr_sigma * magnitude)^2), checked over many draws
    many = torch.full((20000,), 0.5)
    tiny = Population.from_modules([torch.nn.Linear(1, 1)], fast=False).select(torch.zeros(20000, dtype=torch.long))
    lr, reg = mutate(tiny, torch.full((20000,), 1e-3), torch.full((20000,), 1e-3), many, settings,
                     torch.Generator().manual_seed(3), torch.Generator().manual_seed(4))
    assert float(torch.log(lr / 1e-3).std()) == pytest.approx(0.5, rel=0.03)
    assert float(torch.log(reg / 1e-3).std()) == pytest.approx(0.25, rel=0.03)
    assert abs(float(torch.log(lr / 1e-3).mean())) < 0.02
    assert torch.allclose(normalised_fitness(torch.tensor([0.0, 1.0, math.inf])),
                          torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))


def test_without_local_updates_the_best_member_never_gets_worse(data, tmp_path):
    # fitness on the whole validation set and no gradient steps: only selection + mutation act, and the elite
    # members are kept untouched, so the best cross-validation loss is monotone
    algorithm = PopulationDescent(config(local_steps=0, cv_batch=None, generations=6, weight_sigma=0.2), factory,
                                  *data)
    history = run_algorithm(algorithm, tmp_path, progress=False, tensorboard=False, plot=False)
    best = [r["best"] for r in history if "generation" in r]
    assert all(later <= earlier for earlier, later in zip(best, best[1:])), best
    cv_best = [r["cv_best"] for r in history if "generation" in r]   # the best before each selection
    assert all(later <= earlier for earlier, later in zip(cv_best, cv_best[1:])), cv_best


def test_population_descent_learns_and_adapts_the_learning_rates(data, tmp_path):
    algorithm = PopulationDescent(config(generations=5, init_spread=0.0), factory, *data)
    assert len(set(algorithm.lr.tolist())) == 1                  # all members start at the same rate
    history = run_algorithm(algorithm, tmp_path, progress=False, tensorboard=False, plot=False)
    records = [r for r in history if "generation" in r]
    assert records[-1]["best"] < records[0]["best"]
    assert len(set(records[-1]["lr"])) > 1                      # mutation moved them apart
    assert history[-1]["finish"] == "popdescent" and (tmp_path / "final.pt").exists()


def test_local_update_applies_keras_l2_to_weight_matrices_only(data):
    plain = PopulationDescent(config(local_steps=1, optimizer="sgd", regularization=0.0, init_spread=0.0), factory,
                              *data)
    regularised = PopulationDescent(config(local_steps=1, optimizer="sgd", regularization=0.05, init_spread=0.0),
                                    factory, *data)
    before = plain.population.clone()
    plain.local_update()
    regularised.local_update()   # same seeds: same initial weights and the same batches
    for name, stack in regularised.population.params.items():
        difference = stack - plain.population.params[name]
        if name.endswith("weight"):   # Keras l2(reg): loss + reg * sum(W^2), so the step adds -lr * 2 * reg * W
            assert torch.allclose(difference, -0.01 * 2 * 0.05 * before.params[name], atol=1e-6), name
        else:
            assert torch.equal(difference, torch.zeros_like(difference)), name


def test_resume_after_a_kill_equals_an_uninterrupted_run(data, tmp_path):
    settings = config(generations=4)
    settings.finetune.max_epochs = 1
    whole = PopulationDescent(settings, factory, *data)
    whole_history = run_algorithm(whole, tmp_path / "whole", progress=False, tensorboard=False, plot=False)
    run_algorithm(PopulationDescent(settings, factory, *data), tmp_path / "split", stop_after=2, progress=False,
                  tensorboard=False, plot=False)
    torch.manual_seed(99)
    resumed = PopulationDescent(settings, factory, *data)
    resumed_history = run_algorithm(resumed, tmp_path / "split", resume=True, progress=False, tensorboard=False,
                                    plot=False)
    assert untimed(resumed_history) == untimed(whole_history)
    for name, stack in whole.population.params.items():
        assert torch.equal(stack, resumed.population.params[name]), name
    assert torch.equal(whole.lr, resumed.lr)


def test_config_section_and_errors():
    settings = load_popdescent_config("conf/esgd.yaml", {"mu": 7})
    assert settings.mu == 7 and settings.optimizer == "adam"
    with pytest.raises(EsgdError, match="unknown option 'mew'"):
        load_popdescent_config("conf/esgd.yaml", {"mew": 3})
    with pytest.raises(EsgdError, match="elite"):
        PopDescentConfig(mu=4, elite=4)
