"""Population Descent (Pomalapally, Mabsout & Mancuso 2023, Algorithm 1) on the batched population engine.

A memetic m-elitist algorithm. Each iteration (one driver generation):
1. LOCAL UPDATE: every member takes `local_steps` optimizer steps (Adam by default, as in the paper's benchmarks;
   "POPDESCENT trains over 128 batches per iteration") on random training batches, each member its own, with its
   own learning rate alpha_lr and L2 rate alpha_reg, applied as Keras' l2 kernel regulariser ("l2 kernel
   regularization added"): loss + reg * sum(W^2) over the weight matrices only (not the biases), gradient
   2 * reg * W.
2. FITNESS on a cross-validation batch (a fresh random batch of `cv_batch` validation samples, or the whole
   validation set): normalised fitness F = 1 / (1 + CE) in (0, 1]; dead members (non-finite CE) have F = 0.
3. The m fittest members are kept untouched; each of the mu - m weakest is replaced by a member drawn from the
   weighted multinomial Pr(x) = F(x) / sum F over all optimised members (with replacement), then MUTATED with
   magnitude 1 - F(replacement): theta ~ N(theta, (weight_sigma * magnitude)^2), lr ~ LogNormal(log lr,
   (lr_sigma * magnitude)^2), reg ~ LogNormal(log reg, (reg_sigma * magnitude)^2). A replacement carries its
   optimizer buffers along. A perfect member (CE = 0, F = 1) would be copied without change.
The population size is invariant. Unlike ESGD there is no back-off, so (as the paper notes) the population's
best may get worse through the local updates; the selection itself never loses an elite member.
"""
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.population.data import as_tensors
from esgd_asr.population.engine import Population
from esgd_asr.population.newbob import NewBobConfig, train_newbob
from esgd_asr.population.optim_pool import HyperParams, OptimizerState, UpdateRule
from esgd_asr.population.selection import living
from esgd_asr.yaml_config import dataclass_from_dict, read_yaml, resolve


@dataclass
class PopDescentConfig:
    """Settings of Population Descent; defaults are the paper's (population 5, lr = reg = 1e-3, batch 64, Adam)."""

    mu: int = 5                     # |Population|
    elite: int = 2                  # m, members kept untouched each iteration
    generations: int = 30           # iterations of Algorithm 1
    local_steps: int = 128          # optimizer steps (batches) per member per iteration (0: selection only)
    batch_size: int = 64
    cv_batch: int | None = 512      # validation samples per fitness batch (None: the whole validation set)
    optimizer: str = "adam"         # adam or sgd (plain) for the local update
    lr: float = 1e-3                # initial learning rate of every member
    regularization: float = 1e-3    # initial L2 rate of every member (Keras l2: loss + reg * |W|^2, weights only)
    init_spread: float = 0.0        # initial log-normal spread of lr and reg across members (0: all equal)
    weight_sigma: float = 0.01      # beta_1: std of the Gaussian weight mutation at magnitude 1
    lr_sigma: float = 1.0           # beta_2: std of log(lr) at magnitude 1
    reg_sigma: float = 1.0          # std of log(reg) at magnitude 1
    seed: int = 0
    fitness_chunk: int = 4096
    fitness_members: int = 64
    finetune: NewBobConfig = field(default_factory=lambda: NewBobConfig(lr=1e-4, max_epochs=0, min_lr=1e-6))

    def __post_init__(self):
        checks = [(self.mu >= 2, "mu must be at least 2"), (1 <= self.elite < self.mu, "elite must be in [1, mu)"),
                  (self.generations >= 1, "generations must be at least 1"),
                  (self.local_steps >= 0, "local_steps must be >= 0"), (self.batch_size >= 1, "batch_size >= 1"),
                  (self.cv_batch is None or self.cv_batch >= 1, "cv_batch must be positive or null"),
                  (self.optimizer in ("adam", "sgd"), "optimizer must be adam or sgd"),
                  (self.lr > 0, "lr must be positive"), (self.regularization >= 0, "regularization must be >= 0"),
                  (min(self.init_spread, self.weight_sigma, self.lr_sigma, self.reg_sigma) >= 0,
                   "init_spread and the mutation sigmas must be >= 0"),
                  (self.fitness_chunk >= 1 and self.fitness_members >= 1, "fitness chunks must be positive")]
        for ok, message in checks:
            if not ok:
                raise EsgdError(f"popdescent config: {message}")


def load_popdescent_config(path: str | Path, overrides: dict | None = None) -> PopDescentConfig:
    """The `popdescent` section of conf/esgd.yaml with the (dotted) overrides merged over it."""
    section = read_yaml(path, "config").get("popdescent") or {}
    return dataclass_from_dict(PopDescentConfig, resolve(section, None, "default", overrides, str(path)), str(path))


def normalised_fitness(loss: torch.Tensor) -> torch.Tensor:
    """F = 1 / (1 + CE) in (0, 1] (higher is fitter); 0 for dead members."""
    loss = loss.double()
    return torch.where(torch.isfinite(loss), 1.0 / (1.0 + loss.clamp_min(0)), 0.0)


def mutate(population: Population, lr: torch.Tensor, reg: torch.Tensor, magnitude: torch.Tensor,
           config: PopDescentConfig, generator: torch.Generator, noise_generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """MUTATE in place: every member's weights get N(0, (weight_sigma * magnitude_i)^2) noise; returns the new
    learning rates and L2 rates, log-normal around the old ones with std lr_sigma / reg_sigma * magnitude_i."""
    magnitude = magnitude.double()
    for stack in population.params.values():
        scale = (config.weight_sigma * magnitude).to(stack.device, stack.dtype).view(-1, *([1] * (stack.dim() - 1)))
        noise = torch.randn(stack.shape, generator=noise_generator, device=stack.device, dtype=stack.dtype)
        stack.add_(noise * scale)
    lr = lr.double() * torch.exp(config.lr_sigma * magnitude * torch.randn(len(magnitude), generator=generator,
                                                                           dtype=torch.float64))
    reg = reg.double() * torch.exp(config.reg_sigma * magnitude * torch.randn(len(magnitude), generator=generator,
                                                                              dtype=torch.float64))
    return lr.float(), reg.float()


class PopulationDescent:
    """Population Descent state with one `step()` per iteration; runs under population.driver.run_algorithm."""

    name = "popdescent"

    def __init__(self, config: PopDescentConfig, factory: Callable[[], nn.Module], train, valid,
                 device: torch.device | str = "cpu"):
        self.config = config
        self.factory = factory
        self.device = torch.device(device)
        self.train = as_tensors(train, self.device, "train")
        self.valid = as_tensors(valid, self.device, "valid")
        self.rng = torch.Generator().manual_seed(config.seed)
        self.noise_rng = torch.Generator(self.device).manual_seed(config.seed + 1)
        self.population = Population.from_factory(factory, config.mu, self.rng, self.device)
        spread = config.init_spread
        self.lr = (config.lr * torch.exp(spread * torch.randn(config.mu, generator=self.rng))).float()
        self.reg = (config.regularization * torch.exp(spread * torch.randn(config.mu, generator=self.rng))).float()
        self.optimizer_state = OptimizerState.zeros_like(self.population.params)
        self.fitness: torch.Tensor | None = None     # CE on the last cross-validation batch
        self.generation = 0
        self.gradient_steps = 0
        self.finished = False

    @property
    def total_generations(self) -> int:
        return self.config.generations

    def hyper(self) -> HyperParams:
        hyper = HyperParams.plain_sgd(self.population.size, 1.0, self.config.batch_size)
        hyper.lr = self.lr.clone()
        if self.config.optimizer == "adam":
            hyper.kind[:] = 1
        return hyper

    def local_update(self) -> None:
        """`local_steps` steps of every member, each on its own random training batches, with Keras' L2 on the
        weight matrices (gradient 2 * reg * W)."""
        features, targets = self.train
        rule = UpdateRule(self.hyper(), self.device)
        reg = 2 * self.reg.to(self.device)
        population, state = self.population, self.optimizer_state
        for _ in range(self.config.local_steps):
            batch = torch.randint(features.shape[0], (population.size, self.config.batch_size),
                                  generator=self.rng).to(self.device)
            grads, _ = population.loss_and_grads(population.params, population.buffers, features[batch],
                                                 targets[batch], reuse_buffers=True, per_member=True)
            if bool((self.reg > 0).any()):
                for name, grad in grads.items():
                    param = population.params[name]
                    if param.dim() >= 3:   # (members, out, in): a weight matrix, not a bias
                        grad.addcmul_(param, reg.view(-1, *([1] * (param.dim() - 1))))
            rule.apply(population.params, grads, state)
        self.gradient_steps += population.size * self.config.local_steps

    def cv_batch(self):
        features, targets = self.valid
        if self.config.cv_batch is None or self.config.cv_batch >= features.shape[0]:
            return self.valid
        batch = torch.randperm(features.shape[0], generator=self.rng)[:self.config.cv_batch].to(self.device)
        return features[batch], targets[batch]

    def evaluate(self, population: Population, data) -> torch.Tensor:
        return population.fitness(data, self.config.fitness_chunk, self.config.fitness_members).cpu()

    def select_and_mutate(self, loss: torch.Tensor) -> dict:
        """Lines 6-15: keep the m fittest untouched, replace the others by mutated fitness-weighted draws."""
        living(loss, f"popdescent iteration {self.generation + 1}")
        fitness = normalised_fitness(loss)
        order = torch.argsort(-fitness, stable=True)
        strong, weak = order[:self.config.elite], order[self.config.elite:]
        replacements = torch.multinomial(fitness / fitness.sum(), len(weak), replacement=True, generator=self.rng)
        magnitude = 1.0 - fitness[replacements]
        mutated = self.population.select(replacements)
        lr, reg = mutate(mutated, self.lr[replacements], self.reg[replacements], magnitude, self.config,
                         self.rng, self.noise_rng)
        self.population = self.population.select(strong).concat(mutated)
        self.optimizer_state = self.optimizer_state.select(torch.cat([strong, replacements]))
        self.lr = torch.cat([self.lr[strong], lr])
        self.reg = torch.cat([self.reg[strong], reg])
        self.fitness = torch.cat([loss[strong], torch.full((len(weak),), float("nan"))])
        return {"replaced": weak.tolist(), "replacements": replacements.tolist(),
                "magnitudes": [round(float(m), 6) for m in magnitude]}

    def step(self) -> dict:
        start = time.perf_counter()
        self.local_update()
        data = self.cv_batch()
        loss = self.evaluate(self.population, data)
        record = {"generation": self.generation + 1, "cv_best": float(loss[torch.isfinite(loss)].min())}
        record.update(self.select_and_mutate(loss))
        # the mutated members' CE on the same cross-validation batch, for the record and the next selection
        new = torch.isnan(self.fitness)
        self.fitness[new] = self.evaluate(self.population.select(torch.nonzero(new).flatten()), data)
        self.generation += 1
        record.update(self.summary())
        record["seconds"] = round(time.perf_counter() - start, 3)
        return record

    def summary(self) -> dict:
        alive = torch.isfinite(self.fitness)
        ranked = torch.sort(self.fitness[alive]).values
        best = int(torch.argmin(torch.where(alive, self.fitness, torch.inf)))
        return {"best": float(ranked[0]), "mean": float(ranked.mean()),
                "elite_mean": float(ranked[:self.config.elite].mean()), "worst": float(ranked[-1]),
                "dead": int((~alive).sum()), "gradient_steps": self.gradient_steps,
                "best_optimizer": {"optimizer": self.config.optimizer, "lr": float(self.lr[best]),
                                   "reg": float(self.reg[best])},
                "lr": self.lr.tolist(), "reg": self.reg.tolist()}

    def finish(self) -> dict:
        """Evaluate every member on the whole validation set (and fine-tune with new-bob if configured)."""
        self.finished = True
        self.fitness = self.evaluate(self.population, self.valid)
        record = {"best": float(self.fitness[torch.isfinite(self.fitness)].min()), "finetune_epochs": 0}
        if self.config.finetune.max_epochs > 0:
            result = train_newbob(self.population, self.train, self.valid, self.config.finetune, self.rng,
                                  self.fitness, self.config.fitness_chunk)
            self.fitness = result.fitness
            record.update(best=float(result.fitness.min()), finetune_epochs=len(result.epochs))
        return record

    def best_index(self) -> int:
        return int(torch.argmin(torch.where(torch.isfinite(self.fitness), self.fitness, torch.inf)))

    def best_state(self) -> dict:
        return self.population.member_state(self.best_index())

    def state_dict(self) -> dict:
        return {"algorithm": self.name, "generation": self.generation, "finished": self.finished,
                "gradient_steps": self.gradient_steps, "params": self.population.params,
                "buffers": self.population.buffers, "fitness": self.fitness, "lr": self.lr, "reg": self.reg,
                "optimizer_state": self.optimizer_state.state_dict(), "rng": self.rng.get_state(),
                "noise_rng": self.noise_rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if state["algorithm"] != self.name:
            raise EsgdError(f"checkpoint: written by {state['algorithm']!r}, cannot resume as {self.name!r}")
        self.generation, self.finished = state["generation"], state["finished"]
        self.gradient_steps = state["gradient_steps"]
        self.population = Population(self.population.template,
                                     {k: v.to(self.device) for k, v in state["params"].items()},
                                     {k: v.to(self.device) for k, v in state["buffers"].items()})
        self.fitness, self.lr, self.reg = state["fitness"], state["lr"], state["reg"]
        saved = state["optimizer_state"]
        self.optimizer_state = OptimizerState(*[{k: v.to(self.device) for k, v in saved[part].items()}
                                                for part in ("first", "second")], saved["steps"].to(self.device))
        self.rng.set_state(state["rng"])
        self.noise_rng.set_state(state["noise_rng"])
