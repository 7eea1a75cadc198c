"""Model configs from YAML: a scaled-down `default` plus named presets (the papers' shapes) merged over it."""
import dataclasses
from pathlib import Path

from torch import nn

from esgd_asr.errors import EsgdError
from esgd_asr.models.blstm import BiLSTM, BLSTMConfig
from esgd_asr.models.cnn import CNNConfig, SmallCNN
from esgd_asr.models.dnn import DNNConfig, FeedForwardDNN
from esgd_asr.models.lstm_lm import LSTMLM, LSTMLMConfig
from esgd_asr.models.nnet3_architecture import Nnet3Config, build_nnet3_network
from esgd_asr.models.resnet import ResNet, ResNetConfig
from esgd_asr.yaml_config import read_yaml, resolve

# acoustic models (dnn, blstm, an imported Kaldi nnet3 architecture), image classifiers (cnn, resnet) and the
# language model (lstm_lm)
MODEL_TYPES = {"dnn": (DNNConfig, FeedForwardDNN), "blstm": (BLSTMConfig, BiLSTM), "cnn": (CNNConfig, SmallCNN),
               "resnet": (ResNetConfig, ResNet), "lstm_lm": (LSTMLMConfig, LSTMLM),
               "nnet3": (Nnet3Config, build_nnet3_network)}


def model_config_from_dict(kind: str, values: dict, source: str = "config"):
    """Build the config dataclass of model type `kind` from a mapping, rejecting unknown keys."""
    if kind not in MODEL_TYPES:
        raise EsgdError(f"{source}: unknown model type {kind!r} (choose from {sorted(MODEL_TYPES)})")
    config_class = MODEL_TYPES[kind][0]
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise EsgdError(f"{source}: unknown {kind} option {unknown[0]!r}")
    return config_class(**values)


def load_model_config(path: str | Path, preset: str = "default", **overrides):
    """Read a model YAML (conf/dnn.yaml, conf/blstm.yaml, egs/*/conf/*.yaml): `type`, then `default` with
    `presets.<name>` merged over it and the (dotted) overrides last (esgd_asr.yaml_config)."""
    document = read_yaml(path, "model config")
    if "type" not in document or "default" not in document:
        raise EsgdError(f"{path}: a model config needs the keys 'type' and 'default'")
    values = resolve(document["default"], document.get("presets"), preset, overrides, str(path))
    return model_config_from_dict(document["type"], values, source=str(path))


def build_model(config) -> nn.Module:
    """Instantiate the nn.Module described by a config of MODEL_TYPES."""
    for config_class, model_class in MODEL_TYPES.values():
        if isinstance(config, config_class):
            return model_class(config)
    raise EsgdError(f"no model type for config {type(config).__name__}")
