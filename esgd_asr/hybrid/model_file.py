"""Hybrid acoustic model files, and models from outside as anchors (`--anchor PATH`).

A model file of ours (exp/<dir>/final.pt, torch.save of a dict, readable with weights_only):
`{"format": "esgd-hybrid-model", "config": {"type": "dnn"|"blstm", <config fields>}, "state_dict": {...},
"nnet_input": NnetInput.to_dict() | None, "pdf_counts": (senones,) | None, "info": {...}}`.

Also accepted: a bare state dict (the population's final.pt) together with the model config it fits, and a
TorchScript module with the same input/output contract as ours: input = the normalised network input of
esgd_asr.hybrid.prepare.NnetInput, (batch, splice * dim) for a DNN or (batch, frames, dim) for a BiLSTM; output =
per-frame senone logits (or log-posteriors), (batch, senones) / (batch, frames, senones). `export_torchscript`
writes one, with the nnet input description inside (extra file `esgd/nnet_input.json`). A Kaldi nnet3 model in
text form is imported by esgd_asr.models.kaldi_nnet3 (a FeedForwardDNN where it is one, else an Nnet3Network
whose architecture is an esgd_asr.models.nnet3_architecture.Nnet3Config, which a population can take) with
the nnet input it declares: its context as a splice, i-vectors where it has an i-vector input, no normalisation
of ours; a binary one is refused with the command that converts it.

Every loader checks the contract against the data it is used with: a model whose output dim is not the tree's
senone count, or whose input dim is not the features', is refused with a message naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from esgd_asr.atomic import atomic_torch_save
from esgd_asr.errors import EsgdError
from esgd_asr.models.blstm import BLSTMConfig
from esgd_asr.models.config import MODEL_TYPES, build_model, model_config_from_dict
from esgd_asr.models.dnn import DNNConfig
from esgd_asr.models.kaldi_nnet3 import is_nnet3_file, read_nnet3_model
from esgd_asr.models.nnet3_architecture import Nnet3Config, nnet3_config
from esgd_asr.population.checkpoint import check_finite

log = logging.getLogger(__name__)
MODEL_FORMAT = "esgd-hybrid-model"
NNET_INPUT_EXTRA = "esgd/nnet_input.json"
ModelConfig = DNNConfig | BLSTMConfig | Nnet3Config


def config_kind(config: ModelConfig) -> str:
    for kind, (config_class, _) in MODEL_TYPES.items():
        if isinstance(config, config_class):
            return kind
    raise EsgdError(f"no model type for config {type(config).__name__}")


def config_to_dict(config: ModelConfig) -> dict:
    return {"type": config_kind(config), **dataclasses.asdict(config)}


def config_from_dict(values: dict, where: str) -> ModelConfig:
    values = dict(values)
    return model_config_from_dict(values.pop("type", None), values, where)



@dataclass
class HybridModel:
    """A hybrid acoustic network with what decoding needs; `config` is None for a TorchScript module."""

    module: nn.Module
    config: ModelConfig | None
    nnet_input: dict | None
    pdf_counts: torch.Tensor | None
    source: Path

    @property
    def kind(self) -> str | None:
        if self.config is not None:
            return config_kind(self.config)
        return self.nnet_input["kind"] if self.nnet_input else None

    def take_ivector_period(self, period: int) -> None:
        """A Kaldi nnet3 import reads its i-vectors at the data's period (Kaldi's --online-ivector-period); other
        models keep the period they were trained with."""
        if period and self.nnet_input and self.nnet_input.get("ivector_period") and is_nnet3_file(self.source):
            self.nnet_input = {**self.nnet_input, "ivector_period": period}

    def check(self, input_dim: int, num_targets: int, chunk: int = 21, kind: str | None = None) -> None:
        """Refuse the model unless it maps inputs of width `input_dim` to `num_targets` senone scores; `kind`
        (dnn / blstm) is needed for a TorchScript module that does not carry its nnet input description."""
        check_contract(self.module, kind or self.kind, input_dim, num_targets, chunk, str(self.source), self.config)


def save_hybrid_model(path: str | Path, module: nn.Module, config: ModelConfig, nnet_input: dict | None = None,
                      pdf_counts: torch.Tensor | None = None, **info) -> Path:
    """Write a model file of ours atomically (see the module doc)."""
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    return atomic_torch_save({"format": MODEL_FORMAT, "config": config_to_dict(config), "state_dict": state,
                              "nnet_input": nnet_input, "pdf_counts": None if pdf_counts is None else pdf_counts.cpu(),
                              "info": info}, path)


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold code/ and constants.pkl; torch.save archives hold data.pkl only."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def load_hybrid_model(path: str | Path, config: ModelConfig | None = None) -> HybridModel:
    """A model file of ours, a bare state dict (needs `config`), a TorchScript module or a Kaldi nnet3 text
    model, in eval mode on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such model file")
    if is_nnet3_file(path):
        dnn_config, module, nnet_input = read_nnet3_model(path)
        return HybridModel(module, dnn_config or nnet3_config(module), nnet_input, None, path)
    if _is_torchscript(path):
        extra = {NNET_INPUT_EXTRA: ""}
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated in recent torch, but still the exchange format
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as err:  # TorchScript reports bad archives with several exception types
            raise EsgdError(f"{path}: unreadable TorchScript module ({err.__class__.__name__})") from None
        nnet_input = json.loads(extra[NNET_INPUT_EXTRA]) if extra[NNET_INPUT_EXTRA] else None
        return HybridModel(module.eval(), None, nnet_input, None, path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file surfaces as many different exception types
        raise EsgdError(f"{path}: not a model file (checkpoint or TorchScript) ({err.__class__.__name__})") from None
    if isinstance(saved, dict) and saved.get("format") == MODEL_FORMAT:
        saved_config = config_from_dict(saved["config"], str(path))
        module = build_model(saved_config)
        _load_state(module, saved["state_dict"], path)
        return HybridModel(module.eval(), saved_config, saved["nnet_input"], saved["pdf_counts"], path)
    if isinstance(saved, dict) and saved and all(isinstance(v, torch.Tensor) for v in saved.values()):
        if config is None:
            raise EsgdError(f"{path}: a bare state dict; its model config must be given (--config)")
        module = build_model(config)
        _load_state(module, saved, path)
        return HybridModel(module.eval(), config, None, None, path)
    raise EsgdError(f"{path}: neither an {MODEL_FORMAT} file, a state dict nor a TorchScript module")


def _load_state(module: nn.Module, state: dict, path: Path) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise EsgdError(f"{path}: weights do not fit the model config ({str(err).splitlines()[-1].strip()})") from None


def check_contract(module: nn.Module, kind: str | None, input_dim: int, num_targets: int, chunk: int,
                   where: str, config: ModelConfig | None = None) -> None:
    """Output dim must be the senone count and input dim the features'; probed with a forward pass when the
    config does not tell (TorchScript)."""
    if config is not None:
        if config.num_targets != num_targets:
            raise EsgdError(f"{where}: the model has {config.num_targets} outputs but the tree has {num_targets} "
                            f"senones")
        if config.input_dim != input_dim:
            raise EsgdError(f"{where}: the model takes inputs of dim {config.input_dim} but the features give "
                            f"{input_dim}")
        return
    if kind not in MODEL_TYPES:
        raise EsgdError(f"{where}: unknown model kind (a TorchScript module needs its nnet input description)")
    probe = torch.zeros(1, input_dim) if kind == "dnn" else torch.zeros(1, chunk, input_dim)
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as err:  # whatever the foreign module raises on a wrong input width
        raise EsgdError(f"{where}: the model does not take inputs of dim {input_dim} (the features') "
                        f"({err.__class__.__name__})") from None
    if out.shape[:-1] != probe.shape[:-1]:
        raise EsgdError(f"{where}: output of shape {tuple(out.shape)} for input {tuple(probe.shape)}")
    if out.shape[-1] != num_targets:
        raise EsgdError(f"{where}: the model has {out.shape[-1]} outputs but the tree has {num_targets} senones")


def load_anchor(path: str | Path, config: ModelConfig, nnet_input: dict | None = None) -> nn.Module:
    """An anchor for a population of `config` (input and output sizes already those of the data): a model of
    ours, a bare state dict or a TorchScript module whose parameters fit `config`'s architecture. With
    `nnet_input` (the data's), a model trained on another kind of input is refused."""
    model = load_hybrid_model(path, config)
    kind = config_kind(config)
    chunk = config.chunk if isinstance(config, BLSTMConfig) else 1
    model.check(config.input_dim, config.num_targets, chunk, kind)
    if model.config is not None and model.config != config:
        raise EsgdError(f"{path}: the model's architecture {model.config} differs from the population's {config}")
    if nnet_input is not None and model.nnet_input is not None:
        model.take_ivector_period(nnet_input.get("ivector_period", 0))
        _check_same_input(model.nnet_input, nnet_input, Path(path))
    anchor = build_model(config)
    try:
        anchor.load_state_dict(model.module.state_dict())
    except RuntimeError as err:
        raise EsgdError(f"{path}: its parameters do not fit the population's architecture "
                        f"({str(err).splitlines()[-1].strip()}); such a model can be decoded but not anchored"
                        ) from None
    check_finite(path, anchor.state_dict())
    return anchor


def _check_same_input(theirs: dict, ours: dict, path: Path) -> None:
    from esgd_asr.hybrid.prepare import NnetInput  # Kaldi packages: only where data are read

    # a field the model file predates has the value it had then: NnetInput's default
    theirs = {**dataclasses.asdict(NnetInput()), **theirs}
    structure = [k for k in ours if k != "global_stats"]
    differs = [k for k in structure if theirs.get(k) != ours[k]]
    if differs:
        raise EsgdError(f"{path}: trained on other network input ({differs[0]} {theirs.get(differs[0])!r}, "
                        f"the data have {ours[differs[0]]!r})")
    if tuple(map(tuple, theirs.get("global_stats", ()))) != tuple(map(tuple, ours.get("global_stats", ()))):
        log.warning("%s: its input normalisation was estimated on other training frames", path)


def export_torchscript(model: HybridModel, path: str | Path) -> Path:
    """Script a model of ours (with its nnet input description inside) to `path`, atomically."""
    path = Path(path)
    extra = {NNET_INPUT_EXTRA: json.dumps(model.nnet_input)} if model.nnet_input else {}
    temporary = path.parent / f".{path.name}.tmp"
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model.module), str(temporary), _extra_files=extra)
    temporary.replace(path)
    return path
