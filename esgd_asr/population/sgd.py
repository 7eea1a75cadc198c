"""The SGD step of a population: epochs over the training data, members grouped by batch size, with back-off."""
from dataclasses import dataclass

import torch

from esgd_asr.population.engine import Population
from esgd_asr.population.graphed import GraphedSteps
from esgd_asr.population.optim_pool import HyperParams, OptimizerState, UpdateRule
from esgd_asr.population.shard import Shard


def epoch_orders(generator: torch.Generator, epochs: int, members: int, count: int, samples: int | None,
                 device: torch.device | str = "cpu", shard: Shard | None = None) -> torch.Tensor:
    """(epochs, members, samples) sample indices: each member's own shuffle of its own draw of `samples` of the
    `count` training samples (all of them when None), from a seed drawn per member and epoch from `generator`, so
    a member's batches do not depend on which other members train beside it. With `shard` the seeds of all
    shard.total members are drawn and the orders of the shard's members returned (`members` is its size)."""
    samples = count if samples is None else min(samples, count)
    shard = shard or Shard.whole(members)
    seeds = torch.randint(0, 2**62, (epochs, shard.total), generator=generator)[:, shard.rows]
    return torch.stack([torch.stack([torch.randperm(count, generator=torch.Generator().manual_seed(int(seed)))[:samples]
                                     for seed in row]) for row in seeds]).to(device)


def train_epochs(population: Population, state: OptimizerState, hyper: HyperParams, train, epochs: int,
                 generator: torch.Generator, samples: int | None = None, shard: Shard | None = None) -> int:
    """Train every member for `epochs` epochs of `samples` samples each (None: all) in place; returns the frames
    each member saw. Members sharing a batch size run as one batched group, but each member draws its own
    mini-batch order (epoch_orders): ESGD's "gene isolation as a species is preserved" in the SGD step.
    `shard`: the population holds these members of a larger one, and `hyper` is the whole one's: the draws are
    those of the whole, and each group's update takes the code paths of its whole group (UpdateRule `paths`), so
    that every member's arithmetic is the same whichever process trains it.
    """
    if epochs == 0:
        return 0
    features, targets = train
    shard = shard or Shard.whole(population.size)
    orders = epoch_orders(generator, epochs, population.size, features.shape[0], samples, features.device, shard)
    variant = hyper.variant()
    for batch_size in sorted(set(hyper.batch_size.tolist())):
        group = torch.nonzero(hyper.batch_size == batch_size).flatten()
        members = group[(group >= shard.start) & (group < shard.stop)]
        members = members[torch.argsort(variant[members], stable=True)]   # optimizer kinds in runs (UpdateRule)
        if len(members) == 0:
            continue
        rule_hyper = hyper.select(members)
        members = members - shard.start
        whole = torch.equal(members, torch.arange(population.size))
        params = population.params if whole else {k: v[members.to(v.device)] for k, v in population.params.items()}
        buffers = population.buffers if whole else {k: v[members.to(v.device)] for k, v in population.buffers.items()}
        group_state = state if whole else state.select(members)
        rule = UpdateRule(rule_hyper, group_state.steps.device, paths=hyper.select(group))
        low = population.compute_weights(params) if rule.fused else None   # bf16 copies the update keeps current

        def step(batch, params=params, buffers=buffers, rule=rule, group_state=group_state, low=low):
            if rule.plain_sgd and population.fast and low is None:
                # plain SGD in fp32: the update is fused into the batched backward pass
                population.sgd_step(params, buffers, features[batch], targets[batch], rule.sgd_lr, per_member=True)
                group_state.steps += 1
            else:
                grads, _ = population.loss_and_grads(params, buffers, features[batch], targets[batch],
                                                     reuse_buffers=True, per_member=True, low=low)
                rule.apply(params, grads, group_state, low)

        # the batched-matmul path's steps replay as a CUDA graph on the GPU (the launches cost as much as the work)
        step = GraphedSteps(step) if population.fast else step
        for epoch in range(epochs):
            order = orders[epoch] if whole else orders[epoch][members.to(orders.device)]
            for start in range(0, order.shape[1], batch_size):
                step(order[:, start:start + batch_size])
        if not whole:
            for name, stack in population.params.items():
                stack[members.to(stack.device)] = params[name]
            state.scatter(members, group_state)
    return epochs * int((targets[orders[0, 0]] != -100).sum())


@dataclass
class BackoffResult:
    """Fitness after the SGD step, which members were backed off in it and the frames each member trained on."""

    fitness: torch.Tensor
    backed_off: torch.Tensor
    frames: int


def sgd_with_backoff(population: Population, state: OptimizerState, hyper: HyperParams, fitness: torch.Tensor,
                     train, valid, epochs: int, backoff_prob: float, generator: torch.Generator,
                     chunk_size: int = 4096, member_chunk: int | None = None, samples: int | None = None,
                     shard: Shard | None = None) -> BackoffResult:
    """`epochs` SGD epochs (of `samples` samples per member, None: all); after each, a member whose validation loss
    got worse (or non-finite) returns to its exact previous weights and optimizer buffers with probability
    `backoff_prob` (1 = always, ESGD; 0.7 in the paper's LM runs). Returns the new fitness, the members backed off
    in any of the epochs and the frames each member trained on. `shard`: as in train_epochs; `hyper` and `fitness`
    are then the whole population's, the results the shard's."""
    shard = shard or Shard.whole(population.size)
    fitness = fitness[shard.rows]
    backed_off = torch.zeros(population.size, dtype=torch.bool)
    frames = 0
    for _ in range(epochs):
        saved_members, saved_state = population.clone(), state.clone()
        frames += train_epochs(population, state, hyper, train, 1, generator, samples, shard)
        new_fitness = population.fitness(valid, chunk_size, member_chunk).cpu()
        worse = ~(new_fitness <= fitness) & torch.isfinite(fitness)
        back = worse & (torch.rand(shard.total, generator=generator)[shard.rows] < backoff_prob)
        population.restore(back, saved_members)
        state.restore(back, saved_state)
        fitness = torch.where(back, fitness, new_fitness)
        backed_off |= back
    return BackoffResult(fitness, backed_off, frames)
