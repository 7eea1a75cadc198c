"""The single-model hybrid baseline run (steps/train_nnet.sh): new-bob epochs with an atomic checkpoint after each,
exact `resume`, validation CE and frame accuracy per epoch (history.tsv, TensorBoard, training.png), and
final.pt (a hybrid model file, esgd_asr.hybrid.model_file: weights, config, nnet input, senone counts) at the end.

The checkpoint (out_dir/checkpoint.pt) holds the model, fitness, learning rate, the shuffling generator, every
global RNG and the history, so a run killed at any point continues from its last finished epoch exactly as if it
had never stopped.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from esgd_asr.atomic import atomic_torch_save
from esgd_asr.errors import EsgdError
from esgd_asr.hybrid.model_file import ModelConfig, config_to_dict, save_hybrid_model
from esgd_asr.hybrid.sets import HybridSets
from esgd_asr.population.checkpoint import check_finite, retract_outputs, rng_states, set_rng_states
from esgd_asr.population.data import as_tensors, data_digest, samples_for
from esgd_asr.population.engine import Population
from esgd_asr.population.newbob import NewBobConfig, finished, newbob_epoch
from esgd_asr.train.epoch_log import EpochLog

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "esgd-nnet-checkpoint"
FINAL_MODEL_NAME = "final.pt"


@torch.no_grad()
def evaluate(model: nn.Module, data, chunk_size: int = 4096) -> tuple[float, float]:
    """Mean cross-entropy and frame accuracy over the labelled frames (targets != -100) of (features, targets)."""
    features, targets = data
    total_ce, correct, frames = 0.0, 0, 0
    model.eval()
    for start in range(0, features.shape[0], chunk_size):
        logits = model(features[start:start + chunk_size])
        labels = targets[start:start + chunk_size].reshape(-1)
        logits = logits.reshape(-1, logits.shape[-1])
        keep = labels != -100
        total_ce += float(F.cross_entropy(logits[keep], labels[keep], reduction="sum"))
        correct += int((logits[keep].argmax(-1) == labels[keep]).sum())
        frames += int(keep.sum())
    if frames == 0:
        raise EsgdError("validation set has no labelled frames")
    return total_ce / frames, correct / frames


def _fingerprint(config: ModelConfig, newbob: NewBobConfig, sets: HybridSets, seed: int) -> dict:
    """What a checkpoint must agree on to be resumed (max_epochs may grow)."""
    schedule = {k: v for k, v in dataclasses.asdict(newbob).items() if k != "max_epochs"}
    return {"model": config_to_dict(config), "newbob": schedule, "seed": seed,
            "train": data_digest(sets.train), "valid": data_digest(sets.valid)}


def train_nnet(model: nn.Module, config: ModelConfig, sets: HybridSets, newbob: NewBobConfig, out_dir: str | Path,
               seed: int = 0, device: str = "cpu", resume: bool = False, stop_after: int | None = None,
               tensorboard: bool = True, plot: bool = True, chunk_size: int = 4096) -> list[dict]:
    """Train `model` (initial weights) with new-bob on `sets`, checkpointing into `out_dir`; returns the history.
    `stop_after` ends the run after that many epochs in total (to split a run); final.pt is written only when the
    schedule has finished."""
    out_dir = Path(out_dir)
    train, valid = as_tensors(sets.train, device, "train"), as_tensors(sets.valid, device, "valid")
    population = Population.from_modules([model], device)
    generator = torch.Generator().manual_seed(seed)
    fingerprint = _fingerprint(config, newbob, sets, seed)
    checkpoint = out_dir / CHECKPOINT_NAME
    if resume and checkpoint.is_file():
        fitness, lr, history = _load_checkpoint(checkpoint, fingerprint, population, generator)
        log.info("resuming %s after epoch %d (validation CE %.4f, lr %g)", out_dir, history[-1]["epoch"],
                 float(fitness[0]), float(lr[0]))
    else:
        fitness = population.fitness(valid, chunk_size).cpu()
        lr = torch.full((1,), float(newbob.lr))
        ce, acc = evaluate(population.to_module(0, model), valid, chunk_size)
        history = [{"epoch": 0, "valid_ce": ce, "valid_acc": acc, "lr": newbob.lr, "backed_off": False}]
        log.info("epoch 0: validation CE %.4f, frame accuracy %.2f %%", ce, 100 * acc)
    retract_outputs(out_dir, resume)
    samples = samples_for(train, newbob.epoch_frames)
    epoch_log = EpochLog(out_dir, tensorboard, plot, first_epoch=history[-1]["epoch"])
    try:
        epoch_log.write(history)
        while not finished(newbob, lr, history[-1]["epoch"]) and (stop_after is None
                                                                   or history[-1]["epoch"] < stop_after):
            epoch = history[-1]["epoch"] + 1
            start = time.perf_counter()
            fitness, lr, record = newbob_epoch(population, train, valid, newbob, generator, fitness, lr, epoch,
                                               chunk_size, samples)
            seconds = time.perf_counter() - start
            ce, acc = evaluate(population.to_module(0, model), valid, chunk_size)
            frames = record["frames"]
            history.append({"epoch": epoch, "valid_ce": ce, "valid_acc": acc, "lr": float(lr[0]),
                            "backed_off": bool(record["backed_off"][0]), "tried_ce": record["tried"][0],
                            "seconds": seconds, "frames": frames, "frames_per_second": frames / seconds})
            _save_checkpoint(checkpoint, fingerprint, population, fitness, lr, generator, history)
            epoch_log.write(history)
            log.info("epoch %d: validation CE %.4f, frame accuracy %.2f %%%s, lr %g; %.1f s (%.0f frames/s)", epoch,
                     ce, 100 * acc, f" (tried {record['tried'][0]:.4f}: backed off)" if record["backed_off"][0]
                     else "", float(lr[0]), seconds, frames / seconds)
    finally:
        epoch_log.close()
    if finished(newbob, lr, history[-1]["epoch"]):
        last = history[-1]
        save_hybrid_model(out_dir / FINAL_MODEL_NAME, population.to_module(0, model), config, sets.nnet_input,
                          sets.pdf_counts, valid_ce=last["valid_ce"], valid_acc=last["valid_acc"],
                          epochs=last["epoch"], member_frames=sum(r.get("frames", 0) for r in history))
        log.info("wrote %s: validation CE %.4f, frame accuracy %.2f %% after %d epochs", out_dir / FINAL_MODEL_NAME,
                 last["valid_ce"], 100 * last["valid_acc"], last["epoch"])
    return history


def _save_checkpoint(path: Path, fingerprint: dict, population: Population, fitness, lr, generator, history) -> None:
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "state": population.member_state(0),
                       "fitness": fitness, "lr": lr, "generator": generator.get_state(), "rng": rng_states(),
                       "history": history}, path)


def _load_checkpoint(path: Path, fingerprint: dict, population: Population, generator: torch.Generator):
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a corrupt file surfaces as many different exception types
        raise EsgdError(f"{path}: unreadable checkpoint ({err.__class__.__name__})") from None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise EsgdError(f"{path}: not a {CHECKPOINT_FORMAT} file")
    if saved["fingerprint"] != fingerprint:
        differs = next(k for k in fingerprint if saved["fingerprint"].get(k) != fingerprint[k])
        raise EsgdError(f"{path}: made with other settings ({differs}); remove it or train into another dir")
    check_finite(path, saved["state"])
    population.set_member(0, saved["state"])
    generator.set_state(saved["generator"])
    set_rng_states(saved["rng"])
    return saved["fitness"], saved["lr"], saved["history"]
