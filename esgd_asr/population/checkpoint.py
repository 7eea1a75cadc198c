"""Atomic checkpoints of a population run: algorithm state, history and every RNG (torch CPU/CUDA, numpy, python).

Written to a temporary file in the same directory and moved into place with os.replace, so a killed run leaves
either the previous or the new checkpoint, never a partial one.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from esgd_asr.atomic import atomic_torch_save
from esgd_asr.errors import EsgdError

CHECKPOINT_NAME = "checkpoint.pt"
FINAL_MODEL_NAME = "final.pt"


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def check_finite(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse a model file (`path`) with non-finite (NaN or inf) weights among `tensors`, naming the first."""
    bad = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise EsgdError(f"{path}: non-finite weights (NaN or inf) in {bad[0]}"
                        + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else ""))


def check_population_weights(path: str | Path, state: dict) -> None:
    """Refuse a checkpointed algorithm `state` whose weights are non-finite where they count: a member with a finite
    fitness (a dead member, fitness NaN or inf, leaves at the next selection), the anchor or baseline, OpenAI-ES's
    theta."""
    tensors = {}
    if "params" in state:
        for i in torch.isfinite(state["fitness"]).nonzero().flatten().tolist():
            tensors.update({f"{name} of member {i}": value[i] for name, value in state["params"].items()})
    for key in ("anchor_params", "baseline_params"):
        tensors.update({f"{name} of the {key.split('_')[0]}": value for name, value in state.get(key, {}).items()})
    if "theta" in state:
        tensors["theta"] = state["theta"]
    check_finite(path, tensors)


def retract_outputs(out_dir: str | Path, resume: bool) -> None:
    """Called once a run's inputs (data, models, the checkpoint it resumes) are read and checked: drop the old
    checkpoint unless `resume`, and out_dir/final.pt, which the dir no longer claims until this run completes."""
    if not resume:
        (Path(out_dir) / CHECKPOINT_NAME).unlink(missing_ok=True)
    (Path(out_dir) / FINAL_MODEL_NAME).unlink(missing_ok=True)


def save_checkpoint(out_dir: str | Path, algorithm, history: list[dict], fingerprint: dict | None = None,
                    write: bool = True) -> Path:
    """Write out_dir/checkpoint.pt atomically and return its path; `fingerprint`: the run's settings. Without
    `write` (a distributed run's other ranks) the state is only collected: algorithm.state_dict() is a collective."""
    state = {"algorithm": algorithm.state_dict(), "history": history, "rng": rng_states(), "fingerprint": fingerprint}
    path = Path(out_dir) / CHECKPOINT_NAME
    return atomic_torch_save(state, path) if write else path


def load_checkpoint(out_dir: str | Path, algorithm, fingerprint: dict | None = None) -> list[dict]:
    """Restore `algorithm` and the global RNGs from out_dir/checkpoint.pt; returns the history so far. A checkpoint
    whose fingerprint differs from `fingerprint` (both given) is refused, naming the settings that differ, and so is
    one with non-finite weights (check_population_weights)."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise EsgdError(f"{path}: no checkpoint to resume from")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a corrupt file surfaces as many different exception types
        raise EsgdError(f"{path}: unreadable checkpoint ({err.__class__.__name__})") from err
    theirs = saved.get("fingerprint")
    if fingerprint is not None and theirs is not None and theirs != fingerprint:
        differs = sorted(k for k in {*theirs, *fingerprint} if theirs.get(k) != fingerprint.get(k))
        raise EsgdError(f"{path}: made with other settings ({', '.join(differs)}); remove it or run into another dir")
    check_population_weights(path, saved["algorithm"])
    algorithm.load_state_dict(saved["algorithm"])
    set_rng_states(saved["rng"])
    return saved["history"]
