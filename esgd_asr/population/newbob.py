"""Kaldi's new-bob schedule with back-off, batched over a population (a single model is a population of one).

Plain SGD; after each epoch a member whose validation CE got worse returns to its previous weights and halves
its learning rate. Training stops after `max_epochs` or when every learning rate has fallen below `min_lr`.
"""
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.population.data import as_tensors, samples_for
from esgd_asr.population.engine import Population
from esgd_asr.population.optim_pool import HyperParams, OptimizerState
from esgd_asr.population.shard import Shard
from esgd_asr.population.sgd import train_epochs
from esgd_asr.yaml_config import dataclass_from_dict, read_yaml, resolve


@dataclass
class NewBobConfig:
    """Single-model baseline: plain SGD, batch 128, 8 epochs from lr 1.0 (the defaults are the `train` section of
    conf/dnn.yaml and conf/blstm.yaml; the papers' 20 epochs from lr 1e-3 for BN50, 0.025 for SWB300 are their
    presets); an epoch is the whole training set or `epoch_frames` frames drawn afresh (the equal-budget baseline
    of a scaled-down Table 1)."""

    lr: float = 1.0
    batch_size: int = 128
    max_epochs: int = 8
    min_lr: float = 1e-3
    halving_factor: float = 0.5
    epoch_frames: int | None = None

    def __post_init__(self):
        if self.lr <= 0 or self.batch_size < 1 or self.max_epochs < 0 or self.min_lr < 0:
            raise EsgdError("newbob config: lr and batch_size must be positive, max_epochs and min_lr >= 0")
        if self.epoch_frames is not None and self.epoch_frames < 1:
            raise EsgdError("newbob config: epoch_frames must be positive or null")
        if not 0 < self.halving_factor < 1:
            raise EsgdError("newbob config: halving_factor must be in (0, 1)")


def load_newbob_config(path: str | Path, preset: str = "default", **overrides) -> NewBobConfig:
    """The `train` section of a model config (conf/dnn.yaml): `train.default`, with `train.presets.<preset>` merged
    over it when there is one (a model preset need not change the schedule), then `overrides` (None values
    ignored)."""
    section = read_yaml(path, "model config").get("train") or {}
    values = resolve(section.get("default"), section.get("presets"), preset,
                     {k: v for k, v in overrides.items() if v is not None}, str(path), missing_preset_ok=True)
    return dataclass_from_dict(NewBobConfig, values, f"{path}: train")


@dataclass
class NewBobResult:
    fitness: torch.Tensor        # final validation CE per member
    lr: torch.Tensor             # final learning rate per member
    epochs: list[dict]           # per epoch: validation CE, lr and back-off of every member


def newbob_epoch(population: Population, train, valid, config: NewBobConfig, generator: torch.Generator,
                 fitness: torch.Tensor, lr: torch.Tensor, epoch: int, chunk_size: int = 4096,
                 samples: int | None = None, shard: Shard | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """One new-bob epoch in place: SGD over `train` (`samples` samples per member, None: all) for the members whose
    lr is not below `min_lr`, then back off and halve the lr of each member whose validation CE rose. Returns the
    new fitness, lr and the epoch record (with the frames each member trained on). `shard`: the population holds
    these members of a larger one (train_epochs); `fitness` and `lr` are then the whole one's, the results the
    shard's."""
    shard = shard or Shard.whole(population.size)
    hyper = HyperParams.plain_sgd(shard.total, config.lr, config.batch_size)
    hyper.lr = torch.where(lr >= config.min_lr, lr, 0.0)
    fitness, lr = fitness[shard.rows], lr[shard.rows]
    active = lr >= config.min_lr
    saved = population.clone()
    frames = train_epochs(population, OptimizerState.zeros_like(population.params), hyper, train, 1, generator, samples,
                          shard)
    new_fitness = population.fitness(valid, chunk_size).cpu()
    worse = active & ~(new_fitness <= fitness)
    population.restore(worse, saved)
    fitness = torch.where(worse, fitness, new_fitness)
    lr = torch.where(worse, lr * config.halving_factor, lr)
    record = {"epoch": epoch, "fitness": fitness.tolist(), "lr": lr.tolist(), "backed_off": worse.tolist(),
              "tried": new_fitness.tolist(), "frames": frames}
    return fitness, lr, record


def finished(config: NewBobConfig, lr: torch.Tensor, epochs_done: int) -> bool:
    """Stop after `max_epochs`, or once every learning rate has fallen below `min_lr`."""
    return epochs_done >= config.max_epochs or not bool((lr >= config.min_lr).any())


def train_newbob(population: Population, train, valid, config: NewBobConfig, generator: torch.Generator,
                 fitness: torch.Tensor | None = None, chunk_size: int = 4096) -> NewBobResult:
    """Train every member of `population` in place with new-bob; returns the final fitness and the epoch log."""
    fitness = population.fitness(valid, chunk_size).cpu() if fitness is None else fitness.clone()
    lr = torch.full((population.size,), float(config.lr))
    samples = samples_for(train, config.epoch_frames)
    epochs = []
    while not finished(config, lr, len(epochs)):
        fitness, lr, record = newbob_epoch(population, train, valid, config, generator, fitness, lr,
                                           len(epochs) + 1, chunk_size, samples)
        epochs.append(record)
    return NewBobResult(fitness, lr, epochs)


def train_single_model(model: nn.Module, train, valid, config: NewBobConfig, seed: int = 0,
                       device: torch.device | str = "cpu", chunk_size: int = 4096) -> tuple[nn.Module, NewBobResult]:
    """The single-model baseline: new-bob on one model; returns a trained copy and the epoch log."""
    train, valid = as_tensors(train, device, "train"), as_tensors(valid, device, "valid")
    population = Population.from_modules([model], device)
    result = train_newbob(population, train, valid, config, torch.Generator().manual_seed(seed), chunk_size=chunk_size)
    return population.to_module(0, model), result
