"""ESGD with anchors (Cui et al., Interspeech 2019, Algorithm 1), with iterated rounds and the final fine-tune.

A well-trained anchor joins mu - 1 otherwise randomly initialised members. The anchor takes no SGD step; it is one
of the rho parents of an offspring with probability p_a; m-elitist selection runs over the other parents plus the
offspring (m elite + mu - m - 1 random); when the best selected member beats the anchor the two are exchanged, so
the anchor's loss never increases and bounds every member's from below. After `generations` generations a new
round starts (iterated anchors: "After each round of evolution (in this case 20 generations), the best model can
be used as the initial anchor model for the next round"): the anchor is the best model so far, the other mu - 1
members are randomly initialised again; with `finetune_each_round` each round ends as Algorithm 1 does ("Fine-tune
the last parent population [...] Pick the individual with the best fitness as the final model") and that model
anchors the next round. At the end every model is fine-tuned (Kf epochs of new-bob).
"""
from collections.abc import Callable

import torch
from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.population.config import ESGDConfig
from esgd_asr.population.engine import Population
from esgd_asr.population.esgd import ESGD


class AnchoredESGD(ESGD):
    """ESGD whose population is m elite + (mu - m - 1) random members + the anchor (held apart, never trained)."""

    name = "esgd_anchors"

    def __init__(self, config: ESGDConfig, factory: Callable[[], nn.Module], train, valid,
                 anchor: nn.Module | dict, device: torch.device | str = "cpu"):
        super().__init__(config, factory, train, valid, device)
        module = factory()
        state = anchor.state_dict() if isinstance(anchor, nn.Module) else anchor
        try:
            module.load_state_dict(state)
        except RuntimeError as err:
            raise EsgdError(f"anchor: does not match the model architecture ({str(err).splitlines()[0]})") from err
        self.anchor = Population.from_modules([module], self.device, precision=config.precision)
        self.anchor_fitness: torch.Tensor | None = None
        self.anchor_replacements = 0

    @property
    def trainable_size(self) -> int:
        return self.config.mu - 1

    @property
    def total_generations(self) -> int:
        return self.config.generations * self.config.rounds

    def generation_in_round(self) -> int:
        return self.generation % self.config.generations + 1

    def step(self) -> dict:
        if self.anchor_fitness is None:
            self.anchor_fitness = self.evaluate(self.anchor)
        new_round = self.generation > 0 and self.generation % self.config.generations == 0
        if new_round:
            self.population = Population.from_factory(self.factory, self.trainable_size, self.rng, self.device,
                                                       precision=self.config.precision)
            self.fitness = None
        record = super().step()
        round_over = self.generation % self.config.generations == 0 and self.generation < self.total_generations
        if round_over and self.config.finetune_each_round:
            finetune = self.finetune()
            record["round_finetune_best"] = finetune["best"]
            record["anchor_replaced"] = self.promote_best() or record["anchor_replaced"]
            record.update(self.summary())
            record["seconds"] = round(record["seconds"] + finetune["seconds"], 3)
        record.update({"round": (self.generation - 1) // self.config.generations + 1,
                       "anchor": float(self.anchor_fitness[0]), "anchor_replacements": self.anchor_replacements})
        return record

    def parent_pool(self) -> Population:
        return self.population.concat(self.anchor)

    def parent_indices(self) -> torch.Tensor:
        """Roulette picks among the members; with probability p_a the first parent is the anchor instead."""
        picks = super().parent_indices()
        with_anchor = torch.rand(self.config.offspring, generator=self.rng) < self.config.anchor_prob
        picks[with_anchor, 0] = self.population.size
        return picks

    def evolution_step(self, k: int) -> dict:
        record = super().evolution_step(k)
        record["anchor_replaced"] = self.promote_best()
        return record

    def promote_best(self) -> bool:
        """"If the best fitness is better than the anchor, exchange the anchor and the current best individual";
        returns whether they were exchanged."""
        best = int(torch.argmin(torch.where(torch.isfinite(self.fitness), self.fitness, torch.inf)))
        replaced = bool(self.fitness[best] < self.anchor_fitness[0])
        if replaced:
            old_anchor, old_fitness = self.anchor.member_state(0), self.anchor_fitness.clone()
            self.anchor.set_member(0, self.population.member_state(best))
            self.anchor_fitness = self.fitness[best:best + 1].clone()
            self.population.set_member(best, old_anchor)
            self.fitness[best] = old_fitness[0]
            self.anchor_replacements += 1
        return replaced

    def all_members(self) -> tuple[Population, torch.Tensor]:
        if self.anchor_fitness is None:
            self.anchor_fitness = self.evaluate(self.anchor)
        if self.fitness is None:
            self.fitness = self.evaluate(self.population)
        return self.population.concat(self.anchor), torch.cat([self.fitness, self.anchor_fitness])

    def set_all_members(self, population: Population, fitness: torch.Tensor) -> None:
        last = population.size - 1
        self.population = population.select(torch.arange(last))
        self.anchor = population.select(torch.tensor([last]))
        self.fitness, self.anchor_fitness = fitness[:last], fitness[last:]

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update({"anchor_params": self.anchor.params, "anchor_buffers": self.anchor.buffers,
                      "anchor_fitness": self.anchor_fitness, "anchor_replacements": self.anchor_replacements})
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.anchor = self.on_device(state["anchor_params"], state["anchor_buffers"])
        self.anchor_fitness = state["anchor_fitness"]
        self.anchor_replacements = state["anchor_replacements"]
