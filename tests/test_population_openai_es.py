"""OpenAI-ES: the estimate follows the true gradient, seeds-only reconstruction, antithetic offsets, centred-rank
fitness shaping, weight decay, resume."""
import pytest
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.models import DNNConfig, FeedForwardDNN
from esgd_asr.population.driver import run_algorithm
from esgd_asr.population.openai_es import (OpenAIES, OpenAIESConfig, bucket_bounds, centered_ranks, correlation,
                                           direct_gradient, load_openai_es_config, noise_matrix, noise_table,
                                           reconstruct_gradient, sample_perturbations, shape_fitness)
from esgd_asr.population.data import gaussian_clusters
from untimed import untimed

MODEL = DNNConfig(feat_dim=4, splice=3, hidden=[16], activations=["relu"], num_targets=4)


def factory():
    return FeedForwardDNN(MODEL)


def quadratic_rewards(theta, eps, sigma, scale, offset=0.0):
    """r = -f(theta +- sigma eps) with f(x) = 0.5 sum scale * x^2, for (pairs, P) eps -> (pairs, 2)."""
    theta, eps, scale = theta.double(), eps.double(), scale.double()

    def reward(x):
        return -(0.5 * scale * x * x).sum(dim=1) + offset
    return torch.stack([reward(theta + sigma * eps), reward(theta - sigma * eps)], dim=1)


@pytest.mark.parametrize("bucket_size", [None, 7], ids=["full", "limited"])
def test_estimate_on_a_quadratic_points_along_the_true_gradient(bucket_size):
    generator = torch.Generator().manual_seed(0)
    dims = 30
    theta = torch.randn(dims, generator=generator)
    scale = torch.rand(dims, generator=generator) + 0.5
    true = -(scale * theta)                                     # gradient of the reward
    table = noise_table(100_000, 5)
    bounds = bucket_bounds(dims, bucket_size)
    assert (bounds[1:] - bounds[:-1]).max() <= (bucket_size or dims)
    cosines = []
    for pairs in (10, 4000):
        perturbations = sample_perturbations(pairs, bounds, len(table), generator)
        eps = noise_matrix(table, perturbations, bounds, dims)
        rewards = quadratic_rewards(theta, eps, 0.002, scale)
        estimate = reconstruct_gradient(table, perturbations, rewards, 0.002, bounds, dims)
        cosines.append(correlation(estimate, true))
    assert cosines[1] > 0.9 and cosines[1] > cosines[0]
    # unbiased scale: the norm matches the true gradient's within a few percent with many samples
    assert float(estimate.norm() / true.norm()) == pytest.approx(1.0, rel=0.15)


def test_reconstruction_from_seeds_and_scalars_equals_the_direct_estimate():
    generator = torch.Generator().manual_seed(1)
    dims, pairs, sigma = 50, 64, 0.002
    table = noise_table(10_000, 9)
    for bucket_size in (None, 12):
        bounds = bucket_bounds(dims, bucket_size)
        perturbations = sample_perturbations(pairs, bounds, len(table), generator)
        rewards = torch.randn(pairs, 2, generator=generator)
        from_scalars = reconstruct_gradient(table, perturbations, rewards, sigma, bounds, dims)
        # the direct computation: explicit offspring noise v = +-sigma eps and their rewards
        eps = noise_matrix(table, perturbations, bounds, dims)
        offspring = torch.cat([sigma * eps, -sigma * eps])
        direct = direct_gradient(offspring, torch.cat([rewards[:, 0], rewards[:, 1]]), sigma, len(bounds) - 1)
        assert torch.allclose(from_scalars, direct, atol=1e-5, rtol=1e-4)


def test_antithetic_pairs_cancel_a_constant_reward_offset():
    generator = torch.Generator().manual_seed(2)
    dims, sigma = 20, 0.002
    theta, scale = torch.randn(dims, generator=generator), torch.ones(dims)
    table = noise_table(5_000, 3)
    bounds = bucket_bounds(dims, None)
    perturbations = sample_perturbations(16, bounds, len(table), generator)
    eps = noise_matrix(table, perturbations, bounds, dims)
    plain = reconstruct_gradient(table, perturbations, quadratic_rewards(theta, eps, sigma, scale), sigma, bounds,
                                 dims)
    shifted = reconstruct_gradient(table, perturbations, quadratic_rewards(theta, eps, sigma, scale, offset=1e3),
                                   sigma, bounds, dims)
    assert torch.allclose(plain, shifted, atol=1e-3 * float(plain.abs().max()))
    # without the antithetic partner the same offset swamps the estimate
    offspring = sigma * eps
    rewards = quadratic_rewards(theta, eps, sigma, scale)[:, 0]
    one_sided = direct_gradient(offspring, rewards + 1e3, sigma) - direct_gradient(offspring, rewards, sigma)
    assert float(one_sided.norm()) > 100 * float(plain.norm())


def test_centered_ranks_span_minus_half_to_half_and_share_ties():
    rewards = torch.tensor([[3.0, -1.0], [10.0, 3.0], [0.5, 7.0]])
    # sorted: -1, 0.5, 3, 3, 7, 10 -> ranks 0, 1, 2.5, 2.5, 4, 5 of 5
    expected = torch.tensor([[2.5, 0.0], [5.0, 2.5], [1.0, 4.0]], dtype=torch.float64) / 5 - 0.5
    assert torch.equal(centered_ranks(rewards), expected)
    assert torch.equal(centered_ranks(torch.full((4, 2), -2.3)), torch.zeros(4, 2, dtype=torch.float64))
    assert torch.equal(shape_fitness(rewards, "none"), rewards)


def test_rank_shaped_estimate_ignores_increasing_transforms_and_a_constant_reward():
    generator = torch.Generator().manual_seed(4)
    dims, sigma = 40, 0.002
    theta, scale = torch.randn(dims, generator=generator), torch.rand(dims, generator=generator) + 0.5
    table = noise_table(20_000, 6)
    bounds = bucket_bounds(dims, None)
    perturbations = sample_perturbations(300, bounds, len(table), generator)
    eps = noise_matrix(table, perturbations, bounds, dims)
    rewards = quadratic_rewards(theta, eps, sigma, scale)

    def estimate(values):
        return reconstruct_gradient(table, perturbations, centered_ranks(values), sigma, bounds, dims)
    shaped = estimate(rewards)
    assert torch.equal(shaped, estimate(torch.exp(rewards / rewards.abs().max()) * 7 + 100))   # same order
    assert correlation(shaped, -(scale * theta)) > 0.5                     # still points along the gradient
    assert not torch.equal(shaped, estimate(-rewards))
    assert torch.count_nonzero(estimate(torch.full_like(rewards, 5.0))) == 0


@pytest.fixture(scope="module")
def data():
    features, targets = gaussian_clusters(600, MODEL.input_dim, MODEL.num_targets, torch.Generator().manual_seed(0),
                                          spread=1.5)
    return (features[:400], targets[:400]), (features[400:], targets[400:])


def settings(**changes):
    values = dict(pairs=200, sigma=0.002, bucket_size=None, noise_table_size=50_000, lr=0.02, batch_size=128,
                  updates_per_generation=4, generations=3, eval_members=128, seed=1)
    values.update(changes)
    return OpenAIESConfig(**values)


def test_es_gradient_correlates_with_sgd_and_the_model_learns(data, tmp_path):
    algorithm = OpenAIES(settings(), factory, *data)
    assert algorithm.num_params == 12 * 16 + 16 + 16 * 4 + 4
    history = run_algorithm(algorithm, tmp_path, progress=False, tensorboard=False, plot=False)
    records = [r for r in history if "generation" in r]
    assert all(r["es_sgd_correlation"] > 0.3 for r in records), [r["es_sgd_correlation"] for r in records]
    assert records[-1]["best"] < records[0]["best"]
    limited = OpenAIES(settings(bucket_size=50, pairs=400), factory, *data)
    assert len(limited.bounds) - 1 == 6
    assert limited.update()["es_sgd_correlation"] > 0.1


def test_rank_shaped_run_with_weight_decay_learns_and_decay_shrinks_theta(data):
    shaped = OpenAIES(settings(fitness_shaping="centered_ranks", weight_decay=0.5), factory, *data)
    start = float(shaped.evaluate()[0])
    for _ in range(12):
        shaped.update()
    assert float(shaped.evaluate()[0]) < start
    plain, decayed = (OpenAIES(settings(fitness_shaping="centered_ranks", weight_decay=w), factory, *data)
                      for w in (0.0, 0.5))
    plain.update()
    decayed.update()   # same draws, so the only difference is the factor 1 - lr * weight_decay
    assert torch.allclose(decayed.theta, plain.theta * (1 - 0.02 * 0.5))


def test_gradient_correlation_is_pearsons_centred_over_the_parameters():
    generator = torch.Generator().manual_seed(3)
    a, b = torch.randn(500, generator=generator), torch.randn(500, generator=generator)
    expected = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert correlation(a, b) == pytest.approx(expected, abs=1e-6)
    assert correlation(a + 10.0, b - 3.0) == pytest.approx(expected, abs=1e-6)   # a cosine would be near 0 or 1


def test_resume_after_a_kill_equals_an_uninterrupted_run(data, tmp_path):
    whole = OpenAIES(settings(), factory, *data)
    whole_history = run_algorithm(whole, tmp_path / "whole", progress=False, tensorboard=False, plot=False)
    run_algorithm(OpenAIES(settings(), factory, *data), tmp_path / "split", stop_after=1, progress=False,
                  tensorboard=False, plot=False)
    resumed = OpenAIES(settings(), factory, *data)
    resumed_history = run_algorithm(resumed, tmp_path / "split", resume=True, progress=False, tensorboard=False,
                                    plot=False)
    assert untimed(resumed_history) == untimed(whole_history)
    assert torch.equal(whole.theta, resumed.theta)


def test_config_section_and_errors():
    config = load_openai_es_config("conf/esgd.yaml", {"pairs": 10})
    assert (config.sigma, config.bucket_size, config.pairs, config.batch_size) == (0.002, None, 10, 50)
    with pytest.raises(EsgdError, match="unknown option"):
        load_openai_es_config("conf/esgd.yaml", {"sigmaa": 1})
    with pytest.raises(EsgdError, match="fitness_shaping must be one of none, centered_ranks"):
        load_openai_es_config("conf/esgd.yaml", {"fitness_shaping": "ranks"})
    with pytest.raises(EsgdError, match="smaller than a bucket"):
        sample_perturbations(2, bucket_bounds(100, None), 50, torch.Generator())
