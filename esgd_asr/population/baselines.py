"""The papers' baselines on the same engine and budget (SGD epochs per member per generation, Ks).

The single-model baseline is `esgd_asr.train.newbob.train_single_model`.
"""
from esgd_asr.population.esgd import ESGD
from esgd_asr.population.optim_pool import OptimizerState


class NoEvolutionESGD(ESGD):
    """ESGD without the evolution step: optimizers redrawn each generation, back-off, no recombination."""

    name = "esgd_no_evolution"

    def evolution_step(self, k: int) -> dict:
        return {}


class PopulationBaseline(ESGD):
    """mu members trained independently: optimizer and hyperparameters drawn once and kept (with their
    optimizer buffers) for the whole run, per-epoch back-off; the best member is the result."""

    name = "population_baseline"

    def sgd_step(self, k: int) -> dict:
        if self.hyper is None:
            self.hyper = self.config.pool.sample(self.population.size, 0, self.rng)
            self.optimizer_state = OptimizerState.zeros_like(self.population.params)
        return self.run_sgd(self.hyper, self.optimizer_state)

    def evolution_step(self, k: int) -> dict:
        return {}

