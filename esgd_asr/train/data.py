"""The data interface of the trainers: (features, targets) tensors, from tensors or a map-style dataset."""
import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from esgd_asr.atomic import atomic_torch_save, load_tagged
from esgd_asr.errors import EsgdError
from esgd_asr.models.blstm import BLSTMConfig
from esgd_asr.models.dnn import DNNConfig
from esgd_asr.models.nnet3_architecture import Nnet3Config

Data = tuple[torch.Tensor, torch.Tensor]
HYBRID_SETS_FORMAT = "esgd-hybrid-sets"


def as_tensors(data, device: torch.device | str = "cpu", name: str = "data") -> Data:
    """Return (features, targets) on `device` from a pair of tensors, a TensorDataset or any Dataset of pairs.

    Frame-level DNN data are (N, input_dim) / (N,); chunked BLSTM data are (N, T, input_dim) / (N, T).
    Targets equal to -100 are ignored by the loss (padding).
    """
    if isinstance(data, TensorDataset):
        data = data.tensors
    elif isinstance(data, Dataset):
        items = [data[i] for i in range(len(data))]
        if not items:
            raise EsgdError(f"{name}: empty dataset")
        data = (torch.stack([torch.as_tensor(x) for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items]))
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise EsgdError(f"{name}: expected (features, targets) tensors or a dataset of pairs")
    features, targets = (torch.as_tensor(t) for t in data)
    if features.shape[0] != targets.shape[0] or features.shape[0] == 0:
        raise EsgdError(f"{name}: features and targets must be non-empty with equal first dimensions, "
                        f"got {tuple(features.shape)} and {tuple(targets.shape)}")
    return features.to(device=device, dtype=torch.float32), targets.to(device=device, dtype=torch.long)


def data_digest(data) -> list:
    """Shape, feature sum and a hash of the targets: a resume on re-aligned or re-extracted data is refused."""
    features, targets = data
    return [list(features.shape), round(float(features.sum(dtype=torch.float64)), 3),
            hashlib.sha1(targets.cpu().numpy().tobytes()).hexdigest()]


def samples_for(data: Data, frames: int | None) -> int | None:
    """Samples (frames for a DNN, chunks for a BiLSTM) holding about `frames` labelled frames; None: all."""
    if frames is None:
        return None
    count = data[1].shape[0]
    per_sample = max(1.0, int((data[1] != -100).sum()) / count)
    return min(count, max(1, round(frames / per_sample)))


def gaussian_clusters(count: int, input_dim: int, num_classes: int, generator: torch.Generator,
                      spread: float = 1.0, frames: int | None = None) -> Data:
    """A synthetic classification problem: one Gaussian cluster per class (frames=T gives (N, T, dim) chunks).

    The class means are drawn once from `generator`; `spread` is the within-class standard deviation.
    """
    means = torch.randn(num_classes, input_dim, generator=generator) * 2.0
    shape = (count,) if frames is None else (count, frames)
    targets = torch.randint(num_classes, shape, generator=generator)
    features = means[targets] + spread * torch.randn(*shape, input_dim, generator=generator)
    return features, targets


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
    """Training and validation tensors of a hybrid model (esgd_asr.data.hybrid.prepare_hybrid_sets) with what
    the network needs to know about them; saved and loaded with torch alone (no Kaldi packages).

    nnet_input: esgd_asr.data.hybrid.NnetInput.to_dict() (front end, context or chunk, i-vectors, normalisation);
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
