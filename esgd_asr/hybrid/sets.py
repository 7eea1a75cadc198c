"""The prepared tensors of a hybrid model (esgd_asr.hybrid.prepare.prepare_hybrid_sets) and the model config
fitted to them; torch only, so that they load where the Kaldi packages are absent."""
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from esgd_asr.atomic import atomic_torch_save, load_tagged
from esgd_asr.errors import EsgdError
from esgd_asr.models.blstm import BLSTMConfig
from esgd_asr.models.dnn import DNNConfig
from esgd_asr.models.nnet3_architecture import Nnet3Config
from esgd_asr.population.data import Data

HYBRID_SETS_FORMAT = "esgd-hybrid-sets"


def fit_config(config: DNNConfig | BLSTMConfig | Nnet3Config, nnet_input: dict, frame_dim: int, num_targets: int
               ) -> DNNConfig | BLSTMConfig | Nnet3Config:
    """`config` with the input width `frame_dim` and senone count of data made with `nnet_input`
    (NnetInput.to_dict()); its splice / chunk must be theirs."""
    kind, values = nnet_input["kind"], nnet_input
    if isinstance(config, DNNConfig) and kind == "dnn":
        splice = values["left_context"] + 1 + values["right_context"]
        if config.splice != splice:
            raise EsgdError(f"model config splices {config.splice} frames, the data {splice}")
        return dataclasses.replace(config, feat_dim=frame_dim, num_targets=num_targets)
    if isinstance(config, BLSTMConfig) and kind == "blstm":
        theirs = (values["chunk"], values.get("chunk_left_context", 0), values.get("chunk_right_context", 0))
        if (config.chunk, config.chunk_left_context, config.chunk_right_context) != theirs:
            raise EsgdError(f"model config unrolls {config.chunk} frames with context "
                            f"{config.chunk_left_context}/{config.chunk_right_context}, the data chunks "
                            f"{theirs[0]} with {theirs[1]}/{theirs[2]}")
        return dataclasses.replace(config, input_dim=frame_dim, num_targets=num_targets)
    if isinstance(config, Nnet3Config) and kind == "dnn":  # an imported architecture is taken as it is
        width = (values["left_context"] + 1 + values["right_context"]) * frame_dim
        if (config.input_dim, config.num_targets) != (width, num_targets):
            raise EsgdError(f"the nnet3 architecture takes inputs of dim {config.input_dim} with "
                            f"{config.num_targets} outputs, the data give {width} with {num_targets} senones")
        return config
    raise EsgdError(f"a {type(config).__name__} cannot read {kind} data")


@dataclass
class HybridSets:
    """Training and validation tensors of a hybrid model (esgd_asr.hybrid.prepare.prepare_hybrid_sets) with what
    the network needs to know about them; saved and loaded with torch alone (no Kaldi packages).

    nnet_input: esgd_asr.hybrid.prepare.NnetInput.to_dict() (front end, context or chunk, i-vectors, normalisation);
    frame_dim: width of one input frame; num_targets: senones of the GMM system; pdf_counts: training frames per
    senone (priors)."""

    train: Data
    valid: Data
    nnet_input: dict
    frame_dim: int
    num_targets: int
    pdf_counts: torch.Tensor

    def fit_config(self, config: DNNConfig | BLSTMConfig) -> DNNConfig | BLSTMConfig:
        """`config` with the input width and senone count of these data; its splice / chunk must be theirs."""
        return fit_config(config, self.nnet_input, self.frame_dim, self.num_targets)

    def save(self, path: str | Path) -> Path:
        return atomic_torch_save({"format": HYBRID_SETS_FORMAT,
                                  **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}, path)

    @classmethod
    def load(cls, path: str | Path) -> "HybridSets":
        saved = load_tagged(path, HYBRID_SETS_FORMAT, "hybrid data")
        return cls(**saved)
