"""The papers' baselines on the same engine and the same per-member budget (K x Ks + Kf epochs).

The single-model baseline is `esgd_asr.population.newbob.train_single_model` (steps/train_nnet.sh).
"""
from esgd_asr.population.esgd import ESGD
from esgd_asr.population.optim_pool import HyperParams, OptimizerState


class NoEvolutionESGD(ESGD):
    """ESGD without the evolution step ("ablation experiments where the evolution step is removed from ESGD"):
    optimizers redrawn each generation, back-off, no recombination."""

    name = "esgd_no_evolution"

    def evolution_step(self, k: int) -> dict:
        return {}


class PopulationBaseline(ESGD):
    """mu members trained independently. NeurIPS 2018, section 4: "The optimizers together with their
    hyper-parameters are randomly decided at the beginning and then fixed for the rest of the training with a
    pre-determined training schedule." Here: optimizer, lr, momentum, Nesterov and batch size are drawn once (from
    the pool's ranges of generation 1) and kept with their optimizer buffers; the pre-determined schedule decays
    the lr by the pool's gamma every generation, lr_k = lr_1 * gamma^(k - 1), the annealing ESGD applies to its
    lr ranges (supplement: "annealed over generations"), fixed in advance, whatever the fitness does. Each epoch
    backs off a member that got worse, as ESGD's SGD step; the same Kf-epoch fine-tune ends the run."""

    name = "population_baseline"

    def sgd_step(self, k: int) -> dict:
        if self.hyper is None:
            self.hyper = self.config.pool.sample(self.trainable_size, 1, self.rng)
            self.optimizer_state = OptimizerState.zeros_like(self.population.params)
        scheduled = HyperParams(**{**vars(self.hyper), "lr": self.hyper.lr * self.config.pool.lr_decay ** (k - 1)})
        return self.run_sgd(scheduled, self.optimizer_state)

    def evolution_step(self, k: int) -> dict:
        return {}
