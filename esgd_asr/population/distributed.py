"""ESGD, ESGD without evolution and the population baseline with their members sharded over processes.

Each rank holds a contiguous block of the mu members (and of the lambda offspring) and trains it with the batched
engine; every random draw is made whole, from the same seeded generators, on every rank, and each rank keeps its
block's part, so the run is the single-process run with the same seed: the same fitness history and the same
weights (exactly for rho <= 2, whose mixing weights add no rounding). Fitness is gathered to every rank, so
roulette, m-elitist selection and the record are computed identically everywhere; parents and survivors held by
another rank arrive point to point (ranks.Ranks.fetch). The checkpoint is the single-process one: rank 0 gathers
the whole population and writes it, so a run resumes on any number of processes.
"""
import time

import torch

from esgd_asr.errors import EsgdError
from esgd_asr.models.blstm import rename_legacy_keys
from esgd_asr.population.baselines import NoEvolutionESGD, PopulationBaseline
from esgd_asr.population.engine import Population
from esgd_asr.population.esgd import ESGD
from esgd_asr.population.memory import check_fits
from esgd_asr.population.newbob import finished, newbob_epoch
from esgd_asr.population.optim_pool import HyperParams, OptimizerState
from esgd_asr.population.ranks import Ranks
from esgd_asr.population.selection import living, m_elitist, make_offspring, mixing_matrix
from esgd_asr.population.sgd import sgd_with_backoff, train_epochs


class Sharded:
    """Mixin over an ESGD-family trainer: `population` is this rank's block of members (`members`), `fitness`,
    `hyper` and the budget are the whole run's; `whole` is the whole population on rank 0 as of the last
    state_dict() (the driver calls it after every generation), None elsewhere."""

    def __init__(self, config, factory, train, valid, device, ranks: Ranks):
        check_processes(config, ranks.size)
        self.ranks = ranks
        self.main_process = ranks.is_main
        self.members, self.brood = ranks.shard(config.mu), ranks.shard(config.offspring)
        self.whole = None
        super().__init__(config, factory, train, valid, device)

    def check_memory(self, module) -> None:
        """memory.check_fits for this rank's block, with the parents and survivors it fetches."""
        parents = min(self.config.mu, self.config.rho * self.brood.size)
        check_fits(module, self.members.size, self.brood.size, max(self.config.pool.batch_sizes),
                   self.config.fitness_members, self.config.fitness_chunk, self.device, parents + self.members.size)

    def initial_population(self) -> Population:
        """This rank's block of the members of generation 0 (all made in turn, the others dropped)."""
        return Population.from_factory(self.factory, self.config.mu, self.rng, self.device,
                                       precision=self.config.precision,
                                       keep=range(self.members.start, self.members.stop))

    def gather(self, local: torch.Tensor, total: int) -> torch.Tensor:
        return self.ranks.gather_rows(local, total).cpu()

    def evaluate(self, population: Population, total: int | None = None) -> torch.Tensor:
        """The whole run's fitness of this rank's block (of members, or of `total` offspring)."""
        total = total or self.config.mu
        self.eval_frames += total * self.valid_frames
        return self.gather(population.fitness(self.valid, self.config.fitness_chunk, self.config.fitness_members),
                           total)

    def run_sgd(self, hyper: HyperParams, state: OptimizerState) -> dict:
        """ESGD.run_sgd on this rank's block: `hyper` is the whole run's, `state` the block's."""
        backed_off = torch.zeros(self.members.size, dtype=torch.bool)
        for _ in range(self.config.sgd_epochs):
            result = sgd_with_backoff(self.population, state, hyper, self.fitness, self.train,
                                      self.valid, 1, self.config.backoff_prob, self.rng, self.config.fitness_chunk,
                                      self.config.fitness_members, self.epoch_samples, self.members)
            self.eval_frames += self.config.mu * self.valid_frames
            self.fitness = self.gather(result.fitness, self.config.mu)
            backed_off |= result.backed_off
            self.member_frames += result.frames
            self.sgd_frames += self.config.mu * result.frames
        best = int(torch.argmin(torch.where(torch.isfinite(self.fitness), self.fitness, torch.inf)))
        living(self.fitness, f"generation {self.generation + 1} after the SGD step")
        return {"backed_off": int(self.gather(backed_off, self.config.mu).sum()),
                "best_optimizer": hyper.describe(best),
                "optimizers": [hyper.describe(i) for i in range(hyper.lr.shape[0])]}

    def breed(self, k: int) -> tuple[Population, torch.Tensor]:
        """This rank's block of the offspring, from parents fetched from the ranks that hold them; their fitness is
        the whole brood's."""
        picks = self.parent_indices()
        wanted = [sorted(set(picks[brood.rows].flatten().tolist()))
                  for brood in self.ranks.shards(self.config.offspring)]
        parents = self.fetch(self.population, self.ranks.blocks(self.config.mu), wanted)
        column = {index: position for position, index in enumerate(wanted[self.ranks.rank])}
        columns = torch.tensor([[column[p] for p in row] for row in picks[self.brood.rows].tolist()])
        offspring = make_offspring(parents, mixing_matrix(columns, parents.size), self.config.sigma(k), self.noise_rng,
                                   self.brood)
        if self.config.offspring_sgd_epochs:
            hyper = self.config.pool.sample(self.config.offspring, k, self.rng)
            state = OptimizerState.zeros_like(offspring.params)
            for _ in range(self.config.offspring_sgd_epochs):
                frames = train_epochs(offspring, state, hyper, self.train, 1, self.rng, self.epoch_samples, self.brood)
                self.sgd_frames += self.config.offspring * frames
        return offspring, self.evaluate(offspring, self.config.offspring)

    def evolution_step(self, k: int) -> dict:
        """ESGD.evolution_step: the survivors of the m-elitist selection are fetched to the ranks of their slots."""
        offspring, offspring_fitness = self.breed(k)
        mu = self.config.mu
        combined_fitness = torch.cat([self.fitness, offspring_fitness])
        keep = m_elitist(combined_fitness, mu, self.config.elite(mu), self.rng,
                         f"generation {self.generation + 1} evolution")
        held = [members + [mu + i for i in brood] for members, brood in
                zip(self.ranks.blocks(mu), self.ranks.blocks(self.config.offspring))]
        wanted = [keep[shard.rows].tolist() for shard in self.ranks.shards(mu)]
        self.population = self.fetch(self.population.concat(offspring), held, wanted)
        self.fitness = combined_fitness[keep]
        finite = offspring_fitness[torch.isfinite(offspring_fitness)]
        return {"sigma": self.config.sigma(k), "offspring_selected": int((keep >= mu).sum()),
                "offspring_best": float(finite.min()) if len(finite) else float("nan")}

    def fetch(self, population: Population, held: list[list[int]], wanted: list[list[int]]) -> Population:
        """A population of the members `wanted[rank]` (Ranks.fetch) of this rank."""
        tensors = self.ranks.fetch({**{("p", k): v for k, v in population.params.items()},
                                    **{("b", k): v for k, v in population.buffers.items()}}, held, wanted)
        return Population(population.template, {k: tensors["p", k] for k in population.params},
                          {k: tensors["b", k] for k in population.buffers}, population.path_choice,
                          population.precision)

    def all_members(self) -> tuple[Population | None, torch.Tensor]:
        return self.whole, self.fitness

    def finetune(self) -> dict:
        """ESGD.finetune on this rank's block, the new-bob record gathered."""
        start = time.perf_counter()
        schedule, mu = self.config.finetune, self.config.mu
        fitness, lr = self.fitness, torch.full((mu,), float(schedule.lr))
        epochs = []
        while not finished(schedule, lr, len(epochs)):
            local_fitness, local_lr, record = newbob_epoch(self.population, self.train, self.valid, schedule, self.rng,
                                                           fitness, lr, len(epochs) + 1,
                                                           self.config.fitness_chunk, self.epoch_samples, self.members)
            fitness, lr = self.gather(local_fitness, mu), self.gather(local_lr, mu)
            record.update(fitness=fitness.tolist(), lr=lr.tolist(),
                          backed_off=self.gather(torch.tensor(record["backed_off"]), mu).tolist(),
                          tried=self.gather(torch.tensor(record["tried"]), mu).tolist())
            epochs.append(record)
            self.eval_frames += mu * self.valid_frames
            self.member_frames += record["frames"]
            self.sgd_frames += mu * record["frames"]
        self.fitness = fitness
        return {"finetune_epochs": len(epochs), "best": float(fitness[torch.isfinite(fitness)].min()),
                "finetune": epochs, **self.budget(), "seconds": round(time.perf_counter() - start, 3)}

    def state_dict(self) -> dict:
        """The single-process checkpoint of the whole run; a collective (every rank calls it): rank 0's holds the
        whole population and optimizer state, the others' none."""
        state = ESGD.state_dict(self)
        members = self.ranks.gather_to_main({**{("params", k): v for k, v in self.population.params.items()},
                                             **{("buffers", k): v for k, v in self.population.buffers.items()}},
                                            self.config.mu)
        saved = None if self.optimizer_state is None else self.optimizer_state.state_dict()
        optimizer = None if saved is None else self.ranks.gather_to_main(
            {**{(part, k): v for part in ("first", "second") for k, v in saved[part].items()},
             ("steps", None): saved["steps"]}, self.config.mu)
        if members is None:
            return {**state, "params": None, "buffers": None, "optimizer_state": None}
        for part in ("params", "buffers"):
            state[part] = {k: members[part, k] for k in state[part]}
        self.whole = Population(self.population.template, state["params"], state["buffers"],
                                self.population.path_choice, self.population.precision)
        if optimizer is not None:
            state["optimizer_state"] = {**{part: {k: optimizer[part, k] for k in saved[part]}
                                           for part in ("first", "second")}, "steps": optimizer["steps", None]}
        return state

    def load_state_dict(self, state: dict) -> None:
        """Resume from a checkpoint of any number of processes: this rank's block goes to its device, rank 0 keeps
        the whole population where it was read (all_members)."""
        rows = self.members.rows
        saved = state["optimizer_state"]
        ESGD.load_state_dict(self, {
            **state, "params": {k: v[rows] for k, v in state["params"].items()},
            "buffers": {k: v[rows] for k, v in state["buffers"].items()},
            "optimizer_state": None if saved is None else {
                **{part: {k: v[rows] for k, v in saved[part].items()} for part in ("first", "second")},
                "steps": saved["steps"][rows]}})
        self.whole = None if not self.ranks.is_main else Population(
            self.population.template, rename_legacy_keys(state["params"]), state["buffers"],
            self.population.path_choice, self.population.precision)


class ShardedESGD(Sharded, ESGD):
    pass


class ShardedNoEvolutionESGD(Sharded, NoEvolutionESGD):
    pass


class ShardedPopulationBaseline(Sharded, PopulationBaseline):
    pass


SHARDED = {"esgd": ShardedESGD, "no-evolution": ShardedNoEvolutionESGD, "population": ShardedPopulationBaseline}


def check_processes(config, processes: int) -> None:
    if processes > min(config.mu, config.offspring):
        raise EsgdError(f"distributed run: {processes} processes for mu {config.mu} and lambda {config.offspring}: "
                        "each process needs at least one member and one offspring")


def check_distributable(name: str, settings, processes: int) -> None:
    """Refuse in one line a run of algorithm `name` that cannot be sharded over `processes`: the algorithms that
    hold a model beside the population (anchored, iterated, inserted) and the non-ESGD ones run in one process."""
    if name not in SHARDED:
        raise EsgdError(f"--algorithm {name} runs in one process only (distributed: {', '.join(SHARDED)})")
    check_processes(settings, processes)


def build_sharded(name: str, settings, factory, train, valid, ranks: Ranks, device="cpu"):
    """The trainer `name` with its members sharded over `ranks`."""
    check_distributable(name, settings, ranks.size)
    return SHARDED[name](settings, factory, train, valid, device, ranks)
