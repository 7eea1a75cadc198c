"""ESGD (Algorithm 1): elitist monotonicity, roulette, sigma schedule, dead members, resume, baselines."""
import logging

import pytest
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.models import DNNConfig, FeedForwardDNN
from esgd_asr.population.baselines import NoEvolutionESGD, PopulationBaseline
from esgd_asr.population.config import ESGDConfig, load_esgd_config
from esgd_asr.population.data import gaussian_clusters
from esgd_asr.population.driver import run_algorithm
from esgd_asr.population.engine import Population
from esgd_asr.population.esgd import ESGD, random_subset
from esgd_asr.population.newbob import NewBobConfig, train_newbob
from esgd_asr.population.optim_pool import OptimizerPool
from esgd_asr.population.selection import m_elitist, roulette, roulette_parents, roulette_probabilities
from untimed import untimed

MODEL = DNNConfig(feat_dim=4, splice=3, hidden=[24, 24], activations=["relu", "sigmoid"], num_targets=6)
POOL = OptimizerPool(lr_ranges={"sgd": [0.01, 0.2], "adam": [1e-3, 2e-2]}, batch_sizes=[32, 64])


def factory():
    return FeedForwardDNN(MODEL)


@pytest.fixture(scope="module")
def data():
    features, targets = gaussian_clusters(900, MODEL.input_dim, MODEL.num_targets, torch.Generator().manual_seed(0),
                                          spread=2.5)
    return (features[:600], targets[:600]), (features[600:], targets[600:])


def config(**changes):
    values = dict(mu=8, offspring=16, rho=2, generations=4, pool=POOL, seed=3,
                  finetune=NewBobConfig(lr=0.01, batch_size=64, max_epochs=1))
    values.update(changes)
    return ESGDConfig(**values)


def test_theorem_1_elite_mean_never_increases_even_when_sgd_steps_fail(data, tmp_path):
    # learning rates far too large for this task: many SGD epochs make members worse and are backed off; the
    # m-elitist selection must still keep the mean loss of the best m from rising (NeurIPS 2018, Theorem 1)
    rough = OptimizerPool(lr_ranges={"sgd": [0.5, 4.0], "adam": [0.05, 0.5]}, lr_decay=1.0, batch_sizes=[32, 64])
    algorithm = ESGD(config(generations=6, pool=rough, sigma0=0.05), factory, *data)
    history = run_algorithm(algorithm, tmp_path, progress=False, tensorboard=False, plot=False)
    records = [r for r in history if "generation" in r]
    assert sum(r["backed_off"] for r in records) >= 6       # the back-offs the theorem relies on did happen
    elite = [r["elite_mean"] for r in records]
    best = [r["best"] for r in records]
    assert all(later <= earlier for earlier, later in zip(elite, elite[1:])), elite
    assert all(later <= earlier for earlier, later in zip(best, best[1:])), best
    assert elite[-1] < elite[0]  # it learns


def test_roulette_picks_in_proportion_to_reciprocal_loss():
    fitness = torch.tensor([0.5, 1.0, 2.0, 4.0, float("nan")])
    expected = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.0]) / 15.0
    assert torch.allclose(roulette_probabilities(fitness), expected.double())
    draws = 60000
    counts = torch.bincount(roulette(fitness, draws, torch.Generator().manual_seed(0)), minlength=5).double()
    assert counts[4] == 0
    expected_counts = expected[:4].double() * draws
    chi_square = float(((counts[:4] - expected_counts) ** 2 / expected_counts).sum())
    assert chi_square < 16.27  # chi-square, 3 degrees of freedom, p = 0.001


def test_parents_of_an_offspring_are_distinct_and_drawn_by_roulette():
    fitness = torch.tensor([0.5, 1.0, 2.0, 4.0, float("nan")])
    picks = roulette_parents(fitness, 30000, 2, torch.Generator().manual_seed(1))
    assert picks.shape == (30000, 2)
    assert bool((picks[:, 0] != picks[:, 1]).all()) and not bool((picks == 4).any())
    counts = torch.bincount(picks[:, 0], minlength=4).double()[:4]
    expected = torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64) / 15.0 * 30000
    assert float(((counts - expected) ** 2 / expected).sum()) < 16.27  # first spin: the plain roulette wheel
    # the second spin is proportional among the members not picked first: P(1 | 0 first) = 4 / 7
    after_best = picks[picks[:, 0] == 0, 1]
    assert float((after_best == 1).double().mean()) == pytest.approx(4 / 7, abs=0.02)
    # fewer living members than rho: independent spins
    lonely = roulette_parents(torch.tensor([1.0, float("inf")]), 5, 2, torch.Generator().manual_seed(0))
    assert lonely.tolist() == [[0, 0]] * 5


def test_m_elitist_keeps_the_best_and_fills_at_random_from_the_rest():
    fitness = torch.tensor([5.0, 1.0, float("nan"), 3.0, 0.5, 4.0, 2.0, 6.0])
    kept = m_elitist(fitness, size=4, elite=2, generator=torch.Generator().manual_seed(0))
    assert kept[:2].tolist() == [4, 1]
    assert len(set(kept.tolist())) == 4 and 2 not in kept.tolist()
    seen = set()
    for seed in range(40):
        seen |= set(m_elitist(fitness, 4, 2, torch.Generator().manual_seed(seed))[2:].tolist())
    assert seen == {0, 3, 5, 6, 7}


def test_sigma_follows_its_schedule(data, tmp_path):
    assert [config(sigma0=0.01).sigma(k) for k in (1, 2, 4)] == [0.01, 0.005, 0.0025]
    assert config(sigma0=0.001, sigma_schedule="constant").sigma(7) == 0.001
    history = run_algorithm(ESGD(config(generations=3, sigma0=0.03), factory, *data), tmp_path, progress=False,
                            tensorboard=False, plot=False)
    assert [r["sigma"] for r in history if "generation" in r] == pytest.approx([0.03, 0.015, 0.01])


def test_offspring_noise_has_the_scheduled_strength(data):
    algorithm = ESGD(config(offspring=4, sigma0=0.5), factory, *data)
    algorithm.fitness = algorithm.evaluate(algorithm.population)
    parents = torch.zeros(4, 2, dtype=torch.long)  # every offspring = member 0 + noise
    algorithm.parent_indices = lambda: parents
    offspring, _ = algorithm.breed(k=2)
    deviation = torch.cat([(offspring.params[n] - algorithm.population.params[n][0]).flatten()
                           for n in offspring.params])
    assert float(deviation.std()) == pytest.approx(0.25, rel=0.05)


def test_dead_members_are_never_selected_and_all_dead_raises(data, caplog):
    algorithm = ESGD(config(), factory, *data)
    with torch.no_grad():
        algorithm.population.params["output.weight"][[0, 1]] = float("nan")
    with caplog.at_level(logging.WARNING):
        algorithm.step()
    assert "dead" in caplog.text
    assert torch.isfinite(algorithm.fitness).all()
    dead = ESGD(config(), factory, *data)
    for stack in dead.population.params.values():
        stack.fill_(float("nan"))
    with pytest.raises(EsgdError, match="all 8 members have a non-finite validation loss"):
        dead.step()


@pytest.mark.parametrize("algorithm_class", [ESGD, PopulationBaseline], ids=["esgd", "population_baseline"])
def test_resume_after_a_kill_equals_an_uninterrupted_run(data, tmp_path, algorithm_class):
    settings = config(generations=4, offspring_sgd_epochs=1)
    settings.finetune.max_epochs = 1
    whole = algorithm_class(settings, factory, *data)
    whole_history = run_algorithm(whole, tmp_path / "whole", progress=False, tensorboard=False, plot=False)
    first = algorithm_class(settings, factory, *data)
    run_algorithm(first, tmp_path / "split", stop_after=2, progress=False, tensorboard=False, plot=False)
    torch.manual_seed(1234)  # a new process has other global RNG states; the checkpoint restores them
    resumed = algorithm_class(settings, factory, *data)
    resumed_history = run_algorithm(resumed, tmp_path / "split", resume=True, progress=False, tensorboard=False,
                                    plot=False)
    assert untimed(resumed_history) == untimed(whole_history)
    for name, stack in whole.population.params.items():
        assert torch.equal(stack, resumed.population.params[name]), name
    assert torch.equal(whole.fitness, resumed.fitness)


def test_resume_after_a_crash_inside_a_generation_equals_an_uninterrupted_run(data, tmp_path):
    settings = config(generations=3)
    whole = ESGD(settings, factory, *data)
    whole_history = run_algorithm(whole, tmp_path / "whole", progress=False, tensorboard=False, plot=False)
    crashing = ESGD(settings, factory, *data)
    evolve = crashing.evolution_step

    def crash_in_generation_two(k):
        if crashing.generation == 1:  # its SGD step has already changed the members and drawn from the RNGs
            raise RuntimeError("killed")
        return evolve(k)

    crashing.evolution_step = crash_in_generation_two
    with pytest.raises(RuntimeError, match="killed"):
        run_algorithm(crashing, tmp_path / "split", progress=False, tensorboard=False, plot=False)
    resumed = ESGD(settings, factory, *data)
    assert untimed(run_algorithm(resumed, tmp_path / "split", resume=True, progress=False, tensorboard=False,
                                 plot=False)) == untimed(whole_history)
    for name, stack in whole.population.params.items():
        assert torch.equal(stack, resumed.population.params[name]), name


def test_fitness_is_the_whole_validation_set_unless_a_subset_is_asked_for(data):
    whole = ESGD(config(), factory, *data)
    assert torch.equal(whole.valid[1], data[1][1])
    subset = ESGD(config(fitness_frames=50), factory, *data)
    again = ESGD(config(fitness_frames=50), factory, *data)
    assert subset.valid[0].shape[0] == 50 and torch.equal(again.valid[1], subset.valid[1])  # one fixed draw (seed)
    chunks = (torch.zeros(40, 7, 3), torch.zeros(40, 7, dtype=torch.long))       # BiLSTM chunks of 7 frames
    assert random_subset(chunks, 70, torch.Generator().manual_seed(0))[0].shape == (10, 7, 3)
    assert random_subset(chunks, None, torch.Generator())[0].shape[0] == 40


def test_every_from_scratch_row_gets_the_single_baselines_budget_in_frames(data, tmp_path):
    settings = config(generations=2, epoch_frames=200)
    settings.finetune.max_epochs = 1
    records = {}
    for algorithm_class in (ESGD, NoEvolutionESGD, PopulationBaseline):
        history = run_algorithm(algorithm_class(settings, factory, *data), tmp_path / algorithm_class.name,
                                progress=False, tensorboard=False, plot=False)
        records[algorithm_class.name] = history
    single = train_newbob(Population.from_modules([factory()]), data[0], data[1],
                          NewBobConfig(lr=0.05, batch_size=64, max_epochs=3, min_lr=0, epoch_frames=200),
                          torch.Generator().manual_seed(0))
    single_frames = sum(r["frames"] for r in single.epochs)
    assert {r[-1]["member_frames"] for r in records.values()} == {single_frames}
    assert records["esgd"][-1]["sgd_frames"] == 8 * single_frames
    # ESGD evaluates its offspring too: more fitness frames than the baselines for the same SGD budget
    assert records["esgd"][-1]["eval_frames"] > records["esgd_no_evolution"][-1]["eval_frames"]
    assert "offspring_selected" not in records["esgd_no_evolution"][0]


def test_population_baseline_keeps_its_draw_on_a_predetermined_schedule(data, tmp_path):
    baseline = PopulationBaseline(config(generations=3), factory, *data)
    drawn, lrs = [], []
    for _ in range(3):
        optimizers = baseline.step()["optimizers"]
        drawn.append([{k: v for k, v in o.items() if k != "lr"} for o in optimizers])
        lrs.append(torch.tensor([o["lr"] for o in optimizers]))
    assert drawn[0] == drawn[1] == drawn[2]
    assert torch.allclose(lrs[1], lrs[0] * POOL.lr_decay) and torch.allclose(lrs[2], lrs[0] * POOL.lr_decay ** 2)
    redrawn = NoEvolutionESGD(config(generations=2), factory, *data)
    first, second = redrawn.step()["optimizers"], redrawn.step()["optimizers"]
    assert first != second


def test_run_directory_holds_logs_plot_and_final_model(data, tmp_path):
    run_algorithm(ESGD(config(generations=2), factory, *data), tmp_path, progress=False)
    lines = (tmp_path / "history.tsv").read_text().splitlines()
    assert lines[0].startswith("generation\tbest\tmean\telite_mean") and len(lines) == 3
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 3  # 2 generations + fine-tune
    assert (tmp_path / "fitness.png").stat().st_size > 0
    assert any((tmp_path / "tensorboard").iterdir())
    model = factory()
    model.load_state_dict(torch.load(tmp_path / "final.pt"))


def test_config_file_presets_and_bad_options(tmp_path):
    settings = load_esgd_config("conf/esgd.yaml", "bn50_anchors", {"pool.lr_decay": 0.8, "mu": 12})
    assert (settings.rho, settings.sigma0, settings.mu, settings.pool.lr_decay) == (3, 0.001, 12, 0.8)
    written_as_text = load_esgd_config("conf/esgd.yaml",
                                       overrides={"sigma0": "5e-4", "pool.lr_ranges.adam": ["1e-4", 0.01]})
    assert written_as_text.sigma0 == 5e-4 and written_as_text.pool.lr_ranges["adam"] == [1e-4, 0.01]  # YAML 1.1 text
    with pytest.raises(EsgdError, match="unknown option 'muu'"):
        load_esgd_config("conf/esgd.yaml", overrides={"muu": 3})
    merged = load_esgd_config("conf/esgd.yaml", "anchors,blstm_batches")   # presets merge in order
    assert (merged.rho, merged.pool.batch_sizes, merged.finetune.batch_size) == (3, [8, 16, 32, 64], 16)
    with pytest.raises(EsgdError, match="no preset 'nope'"):
        load_esgd_config("conf/esgd.yaml", "anchors,nope")
    with pytest.raises(EsgdError, match="elite_fraction"):
        load_esgd_config("conf/esgd.yaml", overrides={"elite_fraction": 0})
