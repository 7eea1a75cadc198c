"""ESGD with the baseline always inserted: the ESGD paper's PTB variant (NeurIPS 2018, section 4, supplement).

"The first population was initialized by mutation of baseline model. In addition, the baseline was specifically
added to the population before the evolutionary step", and "the backing off was deactivated by 0.3 probability"
(backoff_prob 0.7). So the mu members start as the baseline plus N(0, sigma0^2) noise; before every evolution step
the untrained baseline joins the parents (mu + 1 of them), takes part in the roulette and in the m-elitist
selection of mu survivors from the mu + 1 + lambda, and (the paper's point) the best model held is never worse
than the baseline, even though back-off is relaxed. Everything else is ESGD's.
"""
from collections.abc import Callable

import torch
from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.population.config import ESGDConfig
from esgd_asr.population.engine import Population
from esgd_asr.population.esgd import ESGD
from esgd_asr.population.selection import m_elitist, make_offspring, mixing_matrix, roulette_parents


class BaselineInsertedESGD(ESGD):
    """ESGD whose parents are the mu members plus the fixed baseline at every evolution step."""

    name = "esgd_inserted"

    def __init__(self, config: ESGDConfig, factory: Callable[[], nn.Module], train, valid,
                 baseline: nn.Module | dict, device: torch.device | str = "cpu"):
        super().__init__(config, factory, train, valid, device)
        module = factory()
        try:
            module.load_state_dict(baseline.state_dict() if isinstance(baseline, nn.Module) else baseline)
        except RuntimeError as err:
            raise EsgdError(f"baseline: does not match the model architecture ({str(err).splitlines()[0]})") from err
        self.baseline = Population.from_modules([module], self.device)
        self.baseline_fitness: torch.Tensor | None = None
        self.population = make_offspring(self.baseline, torch.ones(config.mu, 1), config.sigma0, self.noise_rng)

    def baseline_loss(self) -> torch.Tensor:
        if self.baseline_fitness is None:
            self.baseline_fitness = self.evaluate(self.baseline)
        return self.baseline_fitness

    def parent_pool(self) -> Population:
        return self.population.concat(self.baseline)

    def parent_indices(self) -> torch.Tensor:
        return roulette_parents(torch.cat([self.fitness, self.baseline_loss()]), self.config.offspring,
                                self.config.rho, self.rng)

    def evolution_step(self, k: int) -> dict:
        """(mu + 1 / rho + lambda) evolution: the baseline is a parent and a candidate of the selection."""
        pool = self.parent_pool()
        pool_fitness = torch.cat([self.fitness, self.baseline_loss()])
        weights = mixing_matrix(self.parent_indices(), pool.size)
        offspring = make_offspring(pool, weights, self.config.sigma(k), self.noise_rng)
        offspring_fitness = self.evaluate(offspring)
        combined, combined_fitness = pool.concat(offspring), torch.cat([pool_fitness, offspring_fitness])
        keep = m_elitist(combined_fitness, self.config.mu, self.config.elite(self.config.mu), self.rng,
                         f"generation {self.generation + 1} evolution")
        self.population, self.fitness = combined.select(keep), combined_fitness[keep]
        finite = offspring_fitness[torch.isfinite(offspring_fitness)]
        return {"sigma": self.config.sigma(k), "offspring_selected": int((keep > pool.size - 1).sum()),
                "baseline_selected": int((keep == pool.size - 1).sum()), "baseline": float(self.baseline_loss()[0]),
                "offspring_best": float(finite.min()) if len(finite) else float("nan")}

    def all_members(self) -> tuple[Population, torch.Tensor]:
        if self.fitness is None:
            self.fitness = self.evaluate(self.population)
        return self.population.concat(self.baseline), torch.cat([self.fitness, self.baseline_loss()])

    def set_all_members(self, population: Population, fitness: torch.Tensor) -> None:
        last = population.size - 1
        self.population, self.fitness = population.select(torch.arange(last)), fitness[:last]
        self.baseline, self.baseline_fitness = population.select(torch.tensor([last])), fitness[last:]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "baseline_params": self.baseline.params,
                "baseline_buffers": self.baseline.buffers, "baseline_fitness": self.baseline_fitness}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.baseline = self.on_device(state["baseline_params"], state["baseline_buffers"])
        self.baseline_fitness = state["baseline_fitness"]
