"""A prepared task of the secondary recipes: train / valid / test tensors, their kind (vision: images and class
labels, error rate; lm: token rows and next-token targets, perplexity) and what a model needs to fit them.

Saved atomically with torch alone; esgd-prepare-images and esgd-prepare-lm-text write it, esgd-train-task reads it.
"""
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from esgd_asr.atomic import atomic_torch_save, load_tagged
from esgd_asr.errors import EsgdError
from esgd_asr.models.cnn import CNNConfig
from esgd_asr.models.lstm_lm import LSTMLMConfig
from esgd_asr.models.resnet import ResNetConfig
from esgd_asr.population.data import Data

TASK_FORMAT = "esgd-task"
KINDS = ("vision", "lm")


@dataclass
class Task:
    """kind: vision or lm; info: dataset name and sizes (vision: channels, image_size, num_classes; lm:
    vocab_size, tokens (the vocabulary), tokenizer)."""

    kind: str
    train: Data
    valid: Data
    test: Data
    info: dict

    def __post_init__(self):
        if self.kind not in KINDS:
            raise EsgdError(f"task: unknown kind {self.kind!r}")

    def fit_config(self, config):
        """`config` with the input and output sizes of these data; a model of the other kind is refused."""
        if self.kind == "vision" and isinstance(config, (CNNConfig, ResNetConfig)):
            return dataclasses.replace(config, channels=self.info["channels"], image_size=self.info["image_size"],
                                       num_classes=self.info["num_classes"])
        if self.kind == "lm" and isinstance(config, LSTMLMConfig):
            return dataclasses.replace(config, vocab_size=self.info["vocab_size"])
        raise EsgdError(f"a {type(config).__name__} cannot learn a {self.kind} task")

    def save(self, path: str | Path) -> Path:
        return atomic_torch_save({"format": TASK_FORMAT, **{f.name: getattr(self, f.name)
                                                            for f in dataclasses.fields(self)}}, path)

    @classmethod
    def load(cls, path: str | Path) -> "Task":
        saved = load_tagged(path, TASK_FORMAT, "task file")
        return cls(**saved)


def split_off(data: Data, count: int, seed: int) -> tuple[Data, Data]:
    """(rest, held) where `held` is `count` samples drawn by a seeded permutation (both keep their order)."""
    features, targets = data
    if not 0 < count < len(targets):
        raise EsgdError(f"cannot hold out {count} of {len(targets)} samples")
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
    held, rest = order[:count].sort().values, order[count:].sort().values
    return (features[rest], targets[rest]), (features[held], targets[held])
