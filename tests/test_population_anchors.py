"""ESGD with anchors: the anchor is never lost, bounds every member, is replaced only by a better one."""
import pytest
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.models import DNNConfig, FeedForwardDNN
from esgd_asr.population.anchors import AnchoredESGD
from esgd_asr.population.config import ESGDConfig
from esgd_asr.population.data import gaussian_clusters
from esgd_asr.population.driver import run_algorithm
from esgd_asr.population.engine import Population
from esgd_asr.population.newbob import NewBobConfig, train_single_model
from esgd_asr.population.optim_pool import OptimizerPool
from untimed import untimed

MODEL = DNNConfig(feat_dim=4, splice=3, hidden=[24, 24], activations=["relu", "sigmoid"], num_targets=6)
POOL = OptimizerPool(lr_ranges={"sgd": [0.01, 0.2], "adam": [1e-3, 2e-2]}, batch_sizes=[32, 64])


def factory():
    return FeedForwardDNN(MODEL)


@pytest.fixture(scope="module")
def setup():
    features, targets = gaussian_clusters(900, MODEL.input_dim, MODEL.num_targets, torch.Generator().manual_seed(0),
                                          spread=2.5)
    train, valid = (features[:600], targets[:600]), (features[600:], targets[600:])
    torch.manual_seed(0)
    anchor, _ = train_single_model(factory(), train, valid, NewBobConfig(lr=0.05, batch_size=32, max_epochs=3))
    return train, valid, anchor


def config(**changes):
    values = dict(mu=8, offspring=16, rho=3, sigma0=0.001, sigma_schedule="constant", generations=3, pool=POOL,
                  seed=4, finetune=NewBobConfig(lr=0.01, batch_size=64, max_epochs=2))
    values.update(changes)
    return ESGDConfig(**values)


def test_anchor_never_lost_and_bounds_the_best_member(setup, tmp_path):
    train, valid, anchor = setup
    algorithm = AnchoredESGD(config(rounds=2), factory, train, valid, anchor)
    initial = {k: v.clone() for k, v in anchor.state_dict().items()}
    anchors = []
    for _ in range(algorithm.total_generations):
        record = algorithm.step()
        anchors.append(record["anchor"])
        assert float(algorithm.anchor_fitness[0]) <= float(algorithm.fitness.min())
        assert record["best"] == record["anchor"]
        if algorithm.anchor_replacements == 0:
            assert all(torch.equal(algorithm.anchor.params[k][0], initial[k]) for k in algorithm.anchor.params)
    assert all(later <= earlier for earlier, later in zip(anchors, anchors[1:]))
    assert algorithm.anchor_replacements > 0 and anchors[-1] < anchors[0]
    assert record["round"] == 2
    finish = algorithm.finish()
    assert finish["best"] <= anchors[-1] <= float(algorithm.evaluate(Population.from_modules([anchor]))[0])


def test_resume_across_an_iterated_round_boundary_equals_an_uninterrupted_run(setup, tmp_path):
    train, valid, anchor = setup
    settings = config(rounds=2, generations=2, finetune_each_round=True)
    whole = AnchoredESGD(settings, factory, train, valid, anchor)
    history = run_algorithm(whole, tmp_path / "whole", progress=False, tensorboard=False, plot=False)
    ends = [r for r in history if r.get("generation") == 2][0]
    assert "round_finetune_best" in ends and ends["anchor"] <= ends["round_finetune_best"]
    for stop in (2, 3):   # at the boundary (after the round's fine-tune) and one generation into round 2
        run_algorithm(AnchoredESGD(settings, factory, train, valid, anchor), tmp_path / f"split{stop}",
                      stop_after=stop, progress=False, tensorboard=False, plot=False)
        torch.manual_seed(stop)
        resumed = AnchoredESGD(settings, factory, train, valid, anchor)
        assert untimed(run_algorithm(resumed, tmp_path / f"split{stop}", resume=True, progress=False,
                                     tensorboard=False, plot=False)) == untimed(history)
        assert all(torch.equal(whole.anchor.params[k], resumed.anchor.params[k]) for k in whole.anchor.params)
        assert all(torch.equal(whole.population.params[k], resumed.population.params[k])
                   for k in whole.population.params)


def test_anchor_is_a_parent_with_probability_pa(setup):
    train, valid, anchor = setup
    algorithm = AnchoredESGD(config(offspring=4000), factory, train, valid, anchor)
    algorithm.fitness = algorithm.evaluate(algorithm.population)
    picks = algorithm.parent_indices()
    with_anchor = (picks == algorithm.population.size).any(dim=1).float().mean()
    assert float(with_anchor) == pytest.approx(0.25, abs=0.02)
    assert int((picks == algorithm.population.size).sum(dim=1).max()) == 1


def test_anchor_takes_no_sgd_step(setup):
    train, valid, anchor = setup
    algorithm = AnchoredESGD(config(), factory, train, valid, anchor)
    algorithm.anchor_fitness = algorithm.evaluate(algorithm.anchor)
    algorithm.fitness = algorithm.evaluate(algorithm.population)
    before = algorithm.anchor.clone()
    algorithm.sgd_step(1)
    assert all(torch.equal(before.params[k], algorithm.anchor.params[k]) for k in before.params)


def test_finetune_never_loses_the_best_and_resume_is_exact(setup, tmp_path):
    train, valid, anchor = setup
    whole = AnchoredESGD(config(), factory, train, valid, anchor)
    history = run_algorithm(whole, tmp_path / "whole", progress=False, tensorboard=False, plot=False)
    last_generation = [r for r in history if "generation" in r][-1]
    assert history[-1]["finish"] == "esgd_anchors" and history[-1]["finetune_epochs"] == 2
    assert history[-1]["best"] <= last_generation["best"]
    run_algorithm(AnchoredESGD(config(), factory, train, valid, anchor), tmp_path / "split", stop_after=1,
                  progress=False, tensorboard=False, plot=False)
    resumed = AnchoredESGD(config(), factory, train, valid, anchor)
    assert untimed(run_algorithm(resumed, tmp_path / "split", resume=True, progress=False, tensorboard=False,
                                 plot=False)) == untimed(history)
    assert all(torch.equal(whole.anchor.params[k], resumed.anchor.params[k]) for k in whole.anchor.params)


def test_anchor_of_another_architecture_is_rejected(setup):
    train, valid, _ = setup
    other = FeedForwardDNN(DNNConfig(feat_dim=4, splice=3, hidden=[8], activations=["relu"], num_targets=6))
    with pytest.raises(EsgdError, match="anchor: does not match"):
        AnchoredESGD(config(), factory, train, valid, other)
