"""The SGD step of a population: epochs over the training data, members grouped by batch size, with back-off."""
from dataclasses import dataclass

import torch

from esgd_asr.population.engine import Population
from esgd_asr.population.optim_pool import HyperParams, OptimizerState, UpdateRule


def train_epochs(population: Population, state: OptimizerState, hyper: HyperParams, train, epochs: int,
                 generator: torch.Generator) -> None:
    """Train every member for `epochs` epochs in place; members sharing a batch size run as one vmap group.

    Each group draws its own shuffle per epoch from `generator`; all members of a group see the same batches.
    """
    features, targets = train
    count = features.shape[0]
    for batch_size in sorted(set(hyper.batch_size.tolist())):
        members = torch.nonzero(hyper.batch_size == batch_size).flatten()
        whole = len(members) == population.size
        params = population.params if whole else {k: v[members.to(v.device)] for k, v in population.params.items()}
        buffers = population.buffers if whole else {k: v[members.to(v.device)] for k, v in population.buffers.items()}
        group_state = state if whole else state.select(members)
        rule = UpdateRule(hyper if whole else hyper.select(members), group_state.steps.device)
        for _ in range(epochs):
            order = torch.randperm(count, generator=generator).to(features.device)
            for start in range(0, count, batch_size):
                batch = order[start:start + batch_size]
                if rule.plain_sgd and population.fast:
                    # plain SGD: the update is fused into the batched backward pass
                    population.sgd_step(params, buffers, features[batch], targets[batch], rule.sgd_lr)
                    group_state.steps += 1
                else:
                    grads, _ = population.loss_and_grads(params, buffers, features[batch], targets[batch],
                                                         reuse_buffers=True)
                    rule.apply(params, grads, group_state)
        if not whole:
            for name, stack in population.params.items():
                stack[members.to(stack.device)] = params[name]
            state.scatter(members, group_state)


@dataclass
class BackoffResult:
    """Fitness after the SGD step and which members were backed off in it."""

    fitness: torch.Tensor
    backed_off: torch.Tensor


def sgd_with_backoff(population: Population, state: OptimizerState, hyper: HyperParams, fitness: torch.Tensor,
                     train, valid, epochs: int, backoff_prob: float, generator: torch.Generator,
                     chunk_size: int = 4096, member_chunk: int | None = None) -> BackoffResult:
    """`epochs` SGD epochs; after each, a member whose validation loss got worse (or non-finite) returns to its
    exact previous weights and optimizer buffers with probability `backoff_prob` (1 = always, ESGD; 0.7 in the
    paper's LM runs). Returns the new fitness and the members backed off in any of the epochs."""
    backed_off = torch.zeros(population.size, dtype=torch.bool)
    for _ in range(epochs):
        saved_members, saved_state = population.clone(), state.clone()
        train_epochs(population, state, hyper, train, 1, generator)
        new_fitness = population.fitness(valid, chunk_size, member_chunk).cpu()
        worse = ~(new_fitness <= fitness) & torch.isfinite(fitness)
        back = worse & (torch.rand(population.size, generator=generator) < backoff_prob)
        population.restore(back, saved_members)
        state.restore(back, saved_state)
        fitness = torch.where(back, fitness, new_fitness)
        backed_off |= back
    return BackoffResult(fitness, backed_off)
