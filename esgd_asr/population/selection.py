"""Selection and recombination operators over the member dimension: roulette, m-elitist, offspring mixing.

Fitness is a loss (validation CE, lower is better). Roulette selection is fitness-proportional on the
reciprocal loss, p_j = (1 / f_j) / sum_k (1 / f_k): scale-free, a better member is picked more often, and
every living member keeps a non-zero chance. Members with a non-finite loss are dead and never selected.
"""
import logging

import torch

from esgd_asr.errors import EsgdError
from esgd_asr.population.engine import Population
from esgd_asr.population.shard import Shard

log = logging.getLogger(__name__)


def living(fitness: torch.Tensor, what: str = "population") -> torch.Tensor:
    """Mask of members with a finite loss; warns about the dead and raises when none is alive."""
    alive = torch.isfinite(fitness)
    if not alive.any():
        raise EsgdError(f"{what}: all {len(fitness)} members have a non-finite validation loss (NaN/inf); "
                        "lower the learning-rate ranges or the mutation strength")
    if not alive.all():
        log.warning("%s: %d of %d members have a non-finite validation loss and are dead (never selected)",
                    what, int((~alive).sum()), len(fitness))
    return alive


def roulette_probabilities(fitness: torch.Tensor) -> torch.Tensor:
    """Selection probabilities proportional to 1 / loss; zero for dead members."""
    alive = torch.isfinite(fitness)
    weights = torch.where(alive, 1.0 / fitness.double().clamp_min(1e-12), 0.0)
    return weights / weights.sum()


def roulette(fitness: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` independent spins of the roulette wheel (with replacement): indices into fitness."""
    return torch.multinomial(roulette_probabilities(fitness), count, replacement=True, generator=generator)


def roulette_parents(fitness: torch.Tensor, offspring: int, rho: int, generator: torch.Generator) -> torch.Tensor:
    """(offspring, rho) parent indices: per offspring, rho distinct members by successive roulette spins (each
    spin proportional to 1 / loss among the members not yet picked); with fewer than rho living members the
    spins are independent (repeats allowed)."""
    probabilities = roulette_probabilities(fitness)
    distinct = int((probabilities > 0).sum()) >= rho
    return torch.multinomial(probabilities.expand(offspring, -1), rho, replacement=not distinct, generator=generator)


def m_elitist(fitness: torch.Tensor, size: int, elite: int, generator: torch.Generator,
              what: str = "population") -> torch.Tensor:
    """Indices of the next population: the `elite` best (ascending loss, best first), then `size - elite` drawn
    uniformly without replacement from the other living candidates (with replacement only if too few live)."""
    alive = living(fitness, what)
    order = torch.argsort(torch.where(alive, fitness, torch.inf), stable=True)
    elite = min(elite, int(alive.sum()), size)
    chosen = order[:elite]
    rest = order[elite:int(alive.sum())]
    needed = size - elite
    if needed <= len(rest):
        fill = rest[torch.randperm(len(rest), generator=generator)[:needed]]
    else:
        pool = order[:int(alive.sum())]
        fill = torch.cat([rest, pool[torch.randint(len(pool), (needed - len(rest),), generator=generator)]])
    return torch.cat([chosen, fill])


def mixing_matrix(parent_indices: torch.Tensor, num_parents: int) -> torch.Tensor:
    """(offspring, rho) parent indices -> (offspring, num_parents) weights of the intermediate recombination."""
    offspring, rho = parent_indices.shape
    weights = torch.zeros(offspring, num_parents, dtype=torch.float64)
    weights.scatter_add_(1, parent_indices, torch.full((offspring, rho), 1.0 / rho, dtype=torch.float64))
    return weights


def make_offspring(parents: Population, weights: torch.Tensor, sigma: float, generator: torch.Generator,
                   brood: Shard | None = None) -> Population:
    """Offspring = weighted mean of parents (rows of `weights`) + N(0, sigma^2) on every parameter.

    Floating buffers are averaged without noise; integer buffers are taken from the heaviest parent. `brood`: the
    offspring are these rows of a larger brood, whose noise is drawn whole so that each offspring's is the same
    whichever process makes it.
    """
    weights = weights.to(parents.device)
    count = weights.shape[0]
    rows = brood or Shard.whole(count)
    params = {}
    for name, stack in parents.params.items():
        mixed = (weights.to(stack.dtype) @ stack.reshape(stack.shape[0], -1)).reshape(count, *stack.shape[1:])
        noise = torch.randn((rows.total, *mixed.shape[1:]), generator=generator, device=mixed.device,
                            dtype=mixed.dtype)[rows.rows]
        params[name] = mixed + sigma * noise
    buffers = {}
    heaviest = weights.argmax(dim=1)
    for name, stack in parents.buffers.items():
        if stack.is_floating_point():
            buffers[name] = (weights.to(stack.dtype) @ stack.reshape(stack.shape[0], -1)).reshape(count, *stack.shape[1:])
        else:
            buffers[name] = stack[heaviest]
    return Population(parents.template, params, buffers, parents.path_choice, parents.precision)
