"""OpenAI-ES for supervised training (Salimans et al. 2017; Zhang, Clune & Stanley 2017, "On the relationship
between the OpenAI evolution strategy and stochastic gradient descent").

One model theta. Each update draws N/2 noise vectors eps_i from a shared Gaussian NOISE TABLE (made from a seed,
identical on every worker) and evaluates the 2 * (N/2) antithetic pseudo-offspring theta +- sigma * eps_i on a
training mini-batch in one batched pass of the population engine; the reward is r = -CE. The gradient estimate
    g_ES = 1 / (N sigma^2) * sum_i v_i r_i,   v_i = sigma * eps_i    (= 1 / (N sigma) * sum_i eps_i r_i)
is reconstructed from SCALARS ONLY: each pseudo-offspring is named by its noise-table offset, its bucket and its
sign, and reports its reward. Limited perturbation: the flat parameter vector is cut into buckets of at most
`bucket_size` (5000) parameters and each pair perturbs one uniformly chosen bucket; the estimate is scaled by
the number of buckets (each parameter is perturbed by 1 / buckets of the pairs), which keeps it unbiased.
Fitness shaping (`fitness_shaping`): `none` uses the rewards themselves (Zhang et al.'s estimate of the true
gradient); `centered_ranks` replaces them by their ranks over all 2N pseudo-offspring scaled to [-0.5, 0.5] (Salimans
et al.; ties share their mean rank), which makes an update invariant to any increasing transform of the rewards.
The update is Adam or SGD on -g_ES (the ES estimate of the loss gradient), then decoupled weight decay
theta <- (1 - lr * weight_decay) theta, whose strength does not depend on the scale of the (shaped) estimate. Every
`measure_every` updates the correlation between -g_ES and the exact (SGD) gradient of the same mini-batch is
recorded, as the paper's Eq. 3: the Pearson correlation over the P parameters (both vectors centred). Defaults are
Zhang et al.'s: mini-batch 50, sigma 0.002, Adam at 0.001, 10,000 pseudo-offspring (the count is logged at the
start), raw rewards, no weight decay.
"""
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.population.data import as_tensors
from esgd_asr.population.engine import Population
from esgd_asr.yaml_config import dataclass_from_dict, read_yaml, resolve

log = logging.getLogger(__name__)
FITNESS_SHAPINGS = ("none", "centered_ranks")

@dataclass
class OpenAIESConfig:
    pairs: int = 5000               # N / 2 antithetic pairs per update ("the number of pseudo-offspring is 10,000")
    sigma: float = 0.002
    bucket_size: int | None = None  # limited perturbation, e.g. 5000 (None: every pair perturbs all parameters)
    noise_table_size: int = 2**24   # floats in the shared noise table
    noise_seed: int = 123
    optimizer: str = "adam"         # adam or sgd on the ES gradient
    lr: float = 1e-3
    weight_decay: float = 0.0       # decoupled: theta <- (1 - lr * weight_decay) theta after each update
    fitness_shaping: str = "none"   # none (raw rewards) or centered_ranks (Salimans et al.)
    batch_size: int = 50            # training samples the rewards are measured on ("The mini-batch size is 50")
    updates_per_generation: int = 10
    generations: int = 20
    eval_members: int = 256         # pseudo-offspring per batched evaluation pass (memory bound)
    measure_every: int = 1          # record the ES / SGD gradient correlation every k updates (0: never)
    seed: int = 0
    fitness_chunk: int = 4096

    def __post_init__(self):
        checks = [(self.pairs >= 1, "pairs must be at least 1"), (self.sigma > 0, "sigma must be positive"),
                  (self.bucket_size is None or self.bucket_size >= 1, "bucket_size must be positive or null"),
                  (self.optimizer in ("adam", "sgd"), "optimizer must be adam or sgd"), (self.lr > 0, "lr > 0"),
                  (self.weight_decay >= 0, "weight_decay must be >= 0"),
                  (self.fitness_shaping in FITNESS_SHAPINGS,
                   f"fitness_shaping must be one of {', '.join(FITNESS_SHAPINGS)}"),
                  (min(self.batch_size, self.updates_per_generation, self.generations, self.eval_members,
                       self.fitness_chunk) >= 1, "sizes and counts must be positive"),
                  (self.measure_every >= 0, "measure_every must be >= 0")]
        for ok, message in checks:
            if not ok:
                raise EsgdError(f"openai_es config: {message}")


def load_openai_es_config(path: str | Path, overrides: dict | None = None) -> OpenAIESConfig:
    """The `openai_es` section of conf/esgd.yaml with the (dotted) overrides merged over it."""
    section = read_yaml(path, "config").get("openai_es") or {}
    return dataclass_from_dict(OpenAIESConfig, resolve(section, None, "default", overrides, str(path)), str(path))


def noise_table(size: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The shared N(0, 1) noise table; every worker builds the same one from the seed."""
    return torch.randn(size, generator=torch.Generator().manual_seed(seed)).to(device)


def bucket_bounds(num_params: int, bucket_size: int | None) -> torch.Tensor:
    """(buckets + 1,) boundaries of near-equal contiguous buckets of at most bucket_size parameters."""
    count = 1 if not bucket_size else math.ceil(num_params / bucket_size)
    return torch.linspace(0, num_params, count + 1).round().long()


@dataclass
class Perturbations:
    """What the workers exchange about one update: per pair a noise offset and a bucket; per offspring a reward."""

    offsets: torch.Tensor   # (pairs,) start of eps_i in the noise table
    buckets: torch.Tensor   # (pairs,) bucket perturbed by pair i


def sample_perturbations(pairs: int, bounds: torch.Tensor, table_size: int,
                         generator: torch.Generator) -> Perturbations:
    widest = int((bounds[1:] - bounds[:-1]).max())
    if widest > table_size:
        raise EsgdError(f"openai_es: noise table of {table_size} floats is smaller than a bucket ({widest})")
    buckets = torch.randint(len(bounds) - 1, (pairs,), generator=generator)
    offsets = torch.randint(table_size - widest + 1, (pairs,), generator=generator)
    return Perturbations(offsets, buckets)


def noise_matrix(table: torch.Tensor, perturbations: Perturbations, bounds: torch.Tensor,
                 num_params: int) -> torch.Tensor:
    """Explicit (pairs, num_params) eps of every pair (zeros outside its bucket)."""
    eps = torch.zeros(len(perturbations.offsets), num_params, device=table.device, dtype=table.dtype)
    for row, (offset, bucket) in enumerate(zip(perturbations.offsets.tolist(), perturbations.buckets.tolist())):
        start, stop = int(bounds[bucket]), int(bounds[bucket + 1])
        eps[row, start:stop] = table[offset:offset + stop - start]
    return eps


def reconstruct_gradient(table: torch.Tensor, perturbations: Perturbations, rewards: torch.Tensor, sigma: float,
                         bounds: torch.Tensor, num_params: int) -> torch.Tensor:
    """g_ES from the scalars only: rewards (pairs, 2) of theta + sigma eps_i and theta - sigma eps_i.

    g = buckets / (N sigma) * sum_i eps_i (r_i+ - r_i-), N = 2 * pairs; only each pair's bucket is touched."""
    rewards = rewards.to(table.device, torch.float64)
    weights = (rewards[:, 0] - rewards[:, 1]) * ((len(bounds) - 1) / (2 * len(rewards) * sigma))
    gradient = torch.zeros(num_params, dtype=torch.float64, device=table.device)
    for weight, offset, bucket in zip(weights.tolist(), perturbations.offsets.tolist(),
                                      perturbations.buckets.tolist()):
        start, stop = int(bounds[bucket]), int(bounds[bucket + 1])
        gradient[start:stop] += weight * table[offset:offset + stop - start].double()
    return gradient.to(table.dtype)


def centered_ranks(rewards: torch.Tensor) -> torch.Tensor:
    """Rewards of any shape -> their ranks among all of them scaled to [-0.5, 0.5]; tied rewards share their mean
    rank, so that equal rewards give equal utilities (a constant reward: all zero). At least two rewards."""
    flat = rewards.flatten().double()
    ordered = flat.sort().values
    below = torch.searchsorted(ordered, flat, right=False)
    up_to = torch.searchsorted(ordered, flat, right=True)
    ranks = (below + up_to - 1).double() / 2
    return (ranks / (flat.numel() - 1) - 0.5).view(rewards.shape)


def shape_fitness(rewards: torch.Tensor, shaping: str) -> torch.Tensor:
    """The utilities an update weighs the noise with: the rewards (`none`) or their centred ranks."""
    return centered_ranks(rewards) if shaping == "centered_ranks" else rewards


def direct_gradient(offspring_noise: torch.Tensor, rewards: torch.Tensor, sigma: float,
                    num_buckets: int = 1) -> torch.Tensor:
    """The textbook estimate from explicit perturbations v_i (N, P) = sigma * eps_i and rewards (N,):
    buckets / (N sigma^2) * sum_i v_i r_i."""
    return num_buckets * (offspring_noise.double().t() @ rewards.double()).float() / (len(rewards) * sigma ** 2)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two gradients over their parameters (the paper's Eq. 3: both centred)."""
    a, b = a.double().flatten(), b.double().flatten()
    return float(torch.nn.functional.cosine_similarity(a - a.mean(), b - b.mean(), dim=0))


class OpenAIES:
    """OpenAI-ES on one model, evaluating its pseudo-offspring with the batched population engine."""

    name = "openai_es"

    def __init__(self, config: OpenAIESConfig, factory: Callable[[], nn.Module], train, valid,
                 device: torch.device | str = "cpu"):
        self.config = config
        self.factory = factory
        self.device = torch.device(device)
        self.train = as_tensors(train, self.device, "train")
        self.valid = as_tensors(valid, self.device, "valid")
        self.rng = torch.Generator().manual_seed(config.seed)
        self.model = Population.from_factory(factory, 1, self.rng, self.device)
        if self.model.buffers:
            raise EsgdError("openai_es: models with buffers are not supported")
        self.names = list(self.model.params)
        self.shapes = [self.model.params[n].shape[1:] for n in self.names]
        self.theta = torch.cat([self.model.params[n][0].flatten() for n in self.names]).clone()
        self.num_params = self.theta.numel()
        self.bounds = bucket_bounds(self.num_params, config.bucket_size)
        self.table = noise_table(config.noise_table_size, config.noise_seed, self.device)
        self.theta.requires_grad_(True)
        self.optimizer = (torch.optim.Adam([self.theta], lr=config.lr) if config.optimizer == "adam"
                          else torch.optim.SGD([self.theta], lr=config.lr))
        self.generation = 0
        self.updates = 0
        self.finished = False
        self.fitness: torch.Tensor | None = None
        log.info("OpenAI-ES: %d pseudo-offspring per update (%d antithetic pairs; the paper: 10,000), %d buckets "
                 "of parameters, mini-batch %d, sigma %g, %s lr %g, weight decay %g, fitness shaping %s",
                 2 * config.pairs, config.pairs, len(self.bounds) - 1, config.batch_size, config.sigma,
                 config.optimizer, config.lr, config.weight_decay, config.fitness_shaping)

    @property
    def total_generations(self) -> int:
        return self.config.generations

    def unflatten(self, flat: torch.Tensor) -> dict:
        """(members, P) -> stacked parameter dict."""
        params, start = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = math.prod(shape)
            params[name] = flat[:, start:start + size].reshape(flat.shape[0], *shape)
            start += size
        return params

    def population_of(self, flat: torch.Tensor) -> Population:
        return Population(self.model.template, self.unflatten(flat), {})

    @torch.no_grad()
    def rewards(self, perturbations: Perturbations, data) -> torch.Tensor:
        """(pairs, 2) rewards -CE of theta + sigma eps_i and theta - sigma eps_i on `data`, batched over members."""
        features, targets = data
        frames = int((targets != -100).sum())
        theta = self.theta.detach()
        out = torch.empty(len(perturbations.offsets), 2)
        chunk = max(1, self.config.eval_members // 2)
        for first in range(0, len(perturbations.offsets), chunk):
            part = Perturbations(perturbations.offsets[first:first + chunk], perturbations.buckets[first:first + chunk])
            eps = noise_matrix(self.table, part, self.bounds, self.num_params) * self.config.sigma
            members = torch.cat([theta + eps, theta - eps])
            population = self.population_of(members)
            losses = population.loss_sums(population.params, population.buffers, features, targets) / frames
            out[first:first + len(eps)] = -losses.view(2, -1).t().cpu()
        return out

    def true_gradient(self, data) -> torch.Tensor:
        """The exact (SGD) gradient of the mean CE at theta on `data`, flat."""
        grads, _ = self.model.loss_and_grads(self.unflatten(self.theta.detach()[None]), {}, *data)
        return torch.cat([grads[n][0].flatten() for n in self.names])

    def update(self) -> dict:
        features, targets = self.train
        batch = torch.randint(features.shape[0], (self.config.batch_size,), generator=self.rng).to(self.device)
        data = (features[batch], targets[batch])
        perturbations = sample_perturbations(self.config.pairs, self.bounds, self.config.noise_table_size, self.rng)
        rewards = self.rewards(perturbations, data)       # the only numbers the workers would send back
        es_gradient = reconstruct_gradient(self.table, perturbations,
                                           shape_fitness(rewards, self.config.fitness_shaping), self.config.sigma,
                                           self.bounds, self.num_params)
        record = {}
        self.updates += 1
        if self.config.measure_every and self.updates % self.config.measure_every == 0:
            record["es_sgd_correlation"] = correlation(-es_gradient, self.true_gradient(data))
        self.optimizer.zero_grad(set_to_none=True)
        self.theta.grad = -es_gradient                     # ascent on the reward = descent on the loss
        self.optimizer.step()
        if self.config.weight_decay:
            with torch.no_grad():
                self.theta.mul_(1 - self.config.lr * self.config.weight_decay)
        record["batch_reward"] = float(rewards.mean())
        return record

    def step(self) -> dict:
        start = time.perf_counter()
        correlations = []
        for _ in range(self.config.updates_per_generation):
            record = self.update()
            if "es_sgd_correlation" in record:
                correlations.append(record["es_sgd_correlation"])
        self.generation += 1
        self.fitness = self.evaluate()
        loss = float(self.fitness[0])
        result = {"generation": self.generation, "best": loss, "mean": loss, "elite_mean": loss, "worst": loss,
                  "dead": int(not math.isfinite(loss)), "updates": self.updates,
                  "pseudo_offspring": self.updates * 2 * self.config.pairs,
                  "seconds": round(time.perf_counter() - start, 3)}
        if correlations:
            result["es_sgd_correlation"] = sum(correlations) / len(correlations)
        return result

    def evaluate(self) -> torch.Tensor:
        return self.population_of(self.theta.detach()[None]).fitness(self.valid, self.config.fitness_chunk).cpu()

    def finish(self) -> dict:
        self.finished = True
        self.fitness = self.evaluate()
        return {"best": float(self.fitness[0])}

    def best_state(self) -> dict:
        return {n: v[0].clone() for n, v in self.unflatten(self.theta.detach()[None]).items()}

    def state_dict(self) -> dict:
        return {"algorithm": self.name, "generation": self.generation, "updates": self.updates,
                "finished": self.finished, "theta": self.theta.detach().clone(), "fitness": self.fitness,
                "optimizer": self.optimizer.state_dict(), "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if state["algorithm"] != self.name:
            raise EsgdError(f"checkpoint: written by {state['algorithm']!r}, cannot resume as {self.name!r}")
        self.generation, self.updates, self.finished = state["generation"], state["updates"], state["finished"]
        with torch.no_grad():
            self.theta.copy_(state["theta"].to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.fitness = state["fitness"]
        self.rng.set_state(state["rng"])
