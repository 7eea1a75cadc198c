"""The data interface of the population engine and the trainers: (features, targets) tensors, from tensors or a
map-style dataset; their digest and sample counts; a synthetic task."""
import hashlib

import torch
from torch.utils.data import Dataset, TensorDataset

from esgd_asr.errors import EsgdError

Data = tuple[torch.Tensor, torch.Tensor]


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
