"""ESGD (Cui et al., NeurIPS 2018, Algorithm 1): SGD step with back-off, then (mu/rho + lambda)-ES evolution.

Each generation k: every member draws an optimizer and hyperparameters from the pool and trains Ks epochs with
back-off; then lambda offspring, each the mean of rho distinct roulette-chosen parents plus N(0, sigma_k^2) noise,
sigma_k = sigma_0 / k; m-elitist selection over the mu + lambda keeps the best m and fills mu - m at random.
With back-off and m-elitism the mean loss of the best m members never increases. At the end every member is
fine-tuned (Kf epochs of new-bob: plain SGD, back-off and lr halving). Every member draws its own mini-batch order
(sgd.epoch_orders); an epoch is the whole training set, or `epoch_frames` frames each member draws afresh. The
fitness is the CE on the whole validation set, or (an explicit option) on a fixed draw of `fitness_frames` of it.
The budget is counted in frames: `member_frames` of SGD per member, `sgd_frames` over all members trained,
`eval_frames` of fitness evaluations (forward only), and wall seconds per generation.
"""
import time
from collections.abc import Callable

import torch
from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.models.blstm import rename_legacy_keys
from esgd_asr.population.config import ESGDConfig
from esgd_asr.population.data import Data, as_tensors, samples_for
from esgd_asr.population.engine import Population
from esgd_asr.population.memory import check_fits
from esgd_asr.population.newbob import finished, newbob_epoch
from esgd_asr.population.optim_pool import HyperParams, OptimizerState
from esgd_asr.population.selection import living, m_elitist, make_offspring, mixing_matrix, roulette_parents
from esgd_asr.population.sgd import sgd_with_backoff, train_epochs


class ESGD:
    """Population state and one `step()` per generation; `finish()` fine-tunes; state_dict() for checkpoints."""

    name = "esgd"

    def __init__(self, config: ESGDConfig, factory: Callable[[], nn.Module], train, valid,
                 device: torch.device | str = "cpu"):
        self.config = config
        self.factory = factory
        self.device = torch.device(device)
        self.train = as_tensors(train, self.device, "train")
        self.valid = random_subset(as_tensors(valid, self.device, "valid"), config.fitness_frames,
                                   torch.Generator().manual_seed(config.seed + 2))
        self.epoch_samples = samples_for(self.train, config.epoch_frames)
        self.rng = torch.Generator().manual_seed(config.seed)
        if self.device.type == "cuda":
            with torch.random.fork_rng(devices=[]):
                self.check_memory(factory())
        self.noise_rng = torch.Generator(self.device).manual_seed(config.seed + 1)
        self.population = self.initial_population()
        self.fitness: torch.Tensor | None = None
        self.generation = 0
        self.member_frames = 0      # SGD frames one member saw (its lineage), the budget of Table 1
        self.sgd_frames = 0         # SGD member-frames over all members trained (total compute)
        self.eval_frames = 0        # member-frames of fitness evaluations (forward only)
        self.finished = False
        self.hyper: HyperParams | None = None
        self.optimizer_state: OptimizerState | None = None

    def check_memory(self, module: nn.Module) -> None:
        """Stop at once when a generation cannot fit on the GPU (memory.check_fits)."""
        check_fits(module, self.config.mu, self.config.offspring, max(self.config.pool.batch_sizes),
                   self.config.fitness_members, self.config.fitness_chunk, self.device)

    def initial_population(self) -> Population:
        """The members of generation 0, initialised from self.rng."""
        return Population.from_factory(self.factory, self.trainable_size, self.rng, self.device,
                                       precision=self.config.precision)

    @property
    def trainable_size(self) -> int:
        """Members that take SGD steps."""
        return self.config.mu

    @property
    def total_generations(self) -> int:
        return self.config.generations

    def evaluate(self, population: Population) -> torch.Tensor:
        self.eval_frames += population.size * self.valid_frames
        return population.fitness(self.valid, self.config.fitness_chunk, self.config.fitness_members).cpu()

    @property
    def valid_frames(self) -> int:
        return int((self.valid[1] != -100).sum())

    def generation_in_round(self) -> int:
        """k of the generation about to run, counted from 1 (the lr annealing and sigma_k use it)."""
        return self.generation + 1

    def step(self) -> dict:
        """Run one generation and return its history record."""
        start = time.perf_counter()
        k = self.generation_in_round()
        if self.fitness is None:
            self.fitness = self.evaluate(self.population)
        living(self.fitness, "initial population")
        record = {"generation": self.generation + 1}
        record.update(self.sgd_step(k))
        for _ in range(self.config.evolution_steps):
            record.update(self.evolution_step(k))
        self.generation += 1
        record.update(self.summary())
        record["seconds"] = round(time.perf_counter() - start, 3)
        return record

    def sgd_step(self, k: int) -> dict:
        """Ks epochs of every member with a freshly drawn optimizer, backing off members that get worse."""
        self.hyper = self.config.pool.sample(self.trainable_size, k, self.rng)
        self.optimizer_state = OptimizerState.zeros_like(self.population.params)
        return self.run_sgd(self.hyper, self.optimizer_state)

    def run_sgd(self, hyper: HyperParams, state: OptimizerState) -> dict:
        backed_off = torch.zeros(self.population.size, dtype=torch.bool)
        for _ in range(self.config.sgd_epochs):
            result = sgd_with_backoff(self.population, state, hyper, self.fitness, self.train, self.valid, 1,
                                      self.config.backoff_prob, self.rng, self.config.fitness_chunk,
                                      self.config.fitness_members, self.epoch_samples)
            self.eval_frames += self.population.size * self.valid_frames
            self.fitness = result.fitness
            backed_off |= result.backed_off
            self.member_frames += result.frames
            self.sgd_frames += self.population.size * result.frames
        best = int(torch.argmin(torch.where(torch.isfinite(self.fitness), self.fitness, torch.inf)))
        living(self.fitness, f"generation {self.generation + 1} after the SGD step")
        return {"backed_off": int(backed_off.sum()), "best_optimizer": hyper.describe(best),
                "optimizers": [hyper.describe(i) for i in range(hyper.lr.shape[0])]}

    def parent_indices(self) -> torch.Tensor:
        """(lambda, rho) roulette picks among the members, rho distinct parents per offspring."""
        return roulette_parents(self.fitness, self.config.offspring, self.config.rho, self.rng)

    def parent_pool(self) -> Population:
        """The models offspring may descend from; parent_indices() index into it."""
        return self.population

    def breed(self, k: int) -> tuple[Population, torch.Tensor]:
        """Offspring of the current parents (with optional SGD epochs) and their fitness."""
        pool = self.parent_pool()
        weights = mixing_matrix(self.parent_indices(), pool.size)
        offspring = make_offspring(pool, weights, self.config.sigma(k), self.noise_rng)
        if self.config.offspring_sgd_epochs:
            hyper = self.config.pool.sample(offspring.size, k, self.rng)
            state = OptimizerState.zeros_like(offspring.params)
            for _ in range(self.config.offspring_sgd_epochs):
                frames = train_epochs(offspring, state, hyper, self.train, 1, self.rng, self.epoch_samples)
                self.sgd_frames += offspring.size * frames
        return offspring, self.evaluate(offspring)

    def evolution_step(self, k: int) -> dict:
        """(mu/rho + lambda) evolution with m-elitist selection over parents and offspring."""
        offspring, offspring_fitness = self.breed(k)
        parents = self.population.size
        combined = self.population.concat(offspring)
        combined_fitness = torch.cat([self.fitness, offspring_fitness])
        keep = m_elitist(combined_fitness, self.population.size, self.config.elite(self.population.size), self.rng,
                         f"generation {self.generation + 1} evolution")
        self.population = combined.select(keep)
        self.fitness = combined_fitness[keep]
        finite = offspring_fitness[torch.isfinite(offspring_fitness)]
        return {"sigma": self.config.sigma(k), "offspring_selected": int((keep >= parents).sum()),
                "offspring_best": float(finite.min()) if len(finite) else float("nan")}

    def all_members(self) -> tuple[Population, torch.Tensor]:
        """Every model the algorithm holds and their fitness (with anchors: the anchor too)."""
        return self.population, self.fitness

    def summary(self) -> dict:
        """Best / mean / elite-mean loss of all models held, dead count and the SGD budget used so far."""
        _, fitness = self.all_members()
        alive = torch.isfinite(fitness)
        ranked = torch.sort(fitness[alive]).values
        elite = self.config.elite(len(fitness))
        return {"best": float(ranked[0]), "mean": float(ranked.mean()), "elite_mean": float(ranked[:elite].mean()),
                "worst": float(ranked[-1]), "dead": int((~alive).sum()), **self.budget()}

    def budget(self) -> dict:
        return {"member_frames": self.member_frames, "sgd_frames": self.sgd_frames, "eval_frames": self.eval_frames}

    def finish(self) -> dict:
        """The end of Algorithm 1: the fine-tune (finetune()), then the best model is the result."""
        self.finished = True
        return self.finetune()

    def finetune(self) -> dict:
        """Fine-tune every model held for Kf = `finetune.max_epochs` epochs of new-bob ("a small learning rate using
        plain SGD [...] When fitness degrades, back off to previous epoch and anneal 2x learning rate"); returns
        the record."""
        start = time.perf_counter()
        population, fitness = self.all_members()
        schedule = self.config.finetune
        lr = torch.full((population.size,), float(schedule.lr))
        epochs = []
        while not finished(schedule, lr, len(epochs)):
            fitness, lr, record = newbob_epoch(population, self.train, self.valid, schedule, self.rng, fitness,
                                               lr, len(epochs) + 1, self.config.fitness_chunk, self.epoch_samples)
            epochs.append(record)
            self.eval_frames += population.size * self.valid_frames
            self.member_frames += record["frames"]
            self.sgd_frames += population.size * record["frames"]
        self.set_all_members(population, fitness)
        return {"finetune_epochs": len(epochs), "best": float(fitness[torch.isfinite(fitness)].min()),
                "finetune": epochs, **self.budget(), "seconds": round(time.perf_counter() - start, 3)}

    def set_all_members(self, population: Population, fitness: torch.Tensor) -> None:
        self.population, self.fitness = population, fitness

    def best_index(self) -> int:
        _, fitness = self.all_members()
        return int(torch.argmin(torch.where(torch.isfinite(fitness), fitness, torch.inf)))

    def best_state(self) -> dict:
        """State dict of the best model held."""
        population, _ = self.all_members()
        return population.member_state(self.best_index())

    def ranked_states(self, count: int) -> list[tuple[dict, float]]:
        """(state dict, fitness) of the `count` best living models held, best first."""
        population, fitness = self.all_members()
        order = torch.argsort(torch.where(torch.isfinite(fitness), fitness, torch.inf), stable=True)
        alive = int(torch.isfinite(fitness).sum())
        return [(population.member_state(int(i)), float(fitness[i])) for i in order[:min(count, alive)]]

    def best_module(self) -> nn.Module:
        module = self.factory()
        module.load_state_dict(self.best_state())
        return module

    def state_dict(self) -> dict:
        """Everything a resumed run needs (the data and the factory are given again to the constructor)."""
        return {"algorithm": self.name, "generation": self.generation, "finished": self.finished,
                **self.budget(), "params": self.population.params,
                "buffers": self.population.buffers, "fitness": self.fitness, "rng": self.rng.get_state(),
                "noise_rng": self.noise_rng.get_state(),
                "hyper": None if self.hyper is None else self.hyper.state_dict(),
                "optimizer_state": None if self.optimizer_state is None else self.optimizer_state.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state["algorithm"] != self.name:
            raise EsgdError(f"checkpoint: written by {state['algorithm']!r}, cannot resume as {self.name!r}")
        self.generation, self.finished = state["generation"], state["finished"]
        self.member_frames, self.sgd_frames = state["member_frames"], state["sgd_frames"]
        self.eval_frames = state["eval_frames"]
        self.population = self.on_device(state["params"], state["buffers"])
        self.fitness = state["fitness"]
        self.rng.set_state(state["rng"])
        self.noise_rng.set_state(state["noise_rng"])
        self.hyper = None if state["hyper"] is None else HyperParams.from_state_dict(state["hyper"])
        saved_optimizer = state["optimizer_state"]
        self.optimizer_state = None if saved_optimizer is None else OptimizerState(
            *[{k: v.to(self.device) for k, v in saved_optimizer[part].items()} for part in ("first", "second")],
            saved_optimizer["steps"].to(self.device))

    def on_device(self, params: dict, buffers: dict) -> Population:
        """A population of this run's architecture from (checkpointed) stacked tensors, moved to the device."""
        params = rename_legacy_keys(params)   # BiLSTM checkpoints of the per-direction layout
        return Population(self.population.template, {k: v.to(self.device) for k, v in params.items()},
                          {k: v.to(self.device) for k, v in buffers.items()}, self.population.path_choice,
                          self.config.precision)


def random_subset(data: Data, frames: int | None, generator: torch.Generator) -> Data:
    """Samples of (features, targets) holding about `frames` labelled frames (a sample is a frame or a chunk of
    frames), drawn without replacement, in their original order (all when None or not fewer than there are)."""
    features, targets = data
    count = samples_for(data, frames)
    if count is None or count >= features.shape[0]:
        return data
    pick = torch.randperm(features.shape[0], generator=generator)[:count].sort().values.to(features.device)
    return features[pick], targets[pick]
