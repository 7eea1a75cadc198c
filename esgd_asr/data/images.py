"""Image classification sets as (images (N, C, H, W) float32 in [0, 1], labels (N,) int64) tensors.

digits: scikit-learn's 8x8 handwritten digits (shipped with the package, no download). mnist / fashion-mnist: the
idx files of their standard distribution (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-...; gzipped or
not) in one directory. cifar10: the python-pickle batches (data_batch_1..5, test_batch) in one directory (the
extracted cifar-10-batches-py). A missing, truncated or malformed file, or images of another size than the set's,
stops with one line naming the file.
"""
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from esgd_asr.errors import EsgdError

Split = tuple[torch.Tensor, torch.Tensor]
IDX_SETS = {"mnist": 28, "fashion-mnist": 28}   # image side of each idx-file set
CIFAR_SIDE = 32
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")


def _find(directory: Path, name: str) -> Path:
    """`name` or `name.gz` in `directory`."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise EsgdError(f"{directory / name}: no such file (nor {name}.gz)")


def _read_bytes(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise EsgdError(f"{path}: unreadable ({err.__class__.__name__}: {err})") from None


def read_idx(path: Path, side: int | None = None) -> np.ndarray:
    """An idx file of unsigned bytes: labels (N,) (idx1) or images (N, rows, cols) (idx3, rows = cols = `side`)."""
    data = _read_bytes(path)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08 or data[3] not in (1, 3):
        raise EsgdError(f"{path}: not an idx1/idx3 file of unsigned bytes (magic {data[:4].hex() or 'missing'})")
    dims = data[3]
    header = 4 + 4 * dims
    if len(data) < header:
        raise EsgdError(f"{path}: truncated header ({len(data)} bytes)")
    shape = struct.unpack(f">{dims}I", data[4:header])
    if dims == 3 and side is not None and shape[1:] != (side, side):
        raise EsgdError(f"{path}: images are {shape[1]}x{shape[2]}, expected {side}x{side}")
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise EsgdError(f"{path}: {len(data)} bytes, the header's shape {shape} needs {expected} (truncated?)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_split(directory: Path, prefix: str, side: int) -> Split:
    images_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path, side), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise EsgdError(f"{images_path if images.ndim != 3 else labels_path}: wrong idx kind "
                        f"(images need idx3, labels idx1)")
    if len(images) != len(labels):
        raise EsgdError(f"{labels_path}: {len(labels)} labels for {len(images)} images of {images_path.name}")
    if labels.max(initial=0) > 9:
        raise EsgdError(f"{labels_path}: label {labels.max()} outside 0-9")
    return (torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)))


def read_cifar_batch(path: Path) -> Split:
    """One CIFAR-10 python batch: a pickled dict with b'data' (N, 3072) uint8 and b'labels'."""
    try:
        batch = pickle.loads(_read_bytes(path), encoding="bytes")
    except EsgdError:
        raise
    except Exception as err:  # a damaged pickle surfaces as many exception types
        raise EsgdError(f"{path}: not a CIFAR-10 python batch ({err.__class__.__name__})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise EsgdError(f"{path}: not a CIFAR-10 python batch (no data / labels entries)")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    width = 3 * CIFAR_SIDE * CIFAR_SIDE
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != width:
        raise EsgdError(f"{path}: images of shape {data.shape[1:]} ({data.dtype}), expected rows of {width} bytes "
                        f"(3x{CIFAR_SIDE}x{CIFAR_SIDE})")
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise EsgdError(f"{path}: {labels.size} labels for {len(data)} images, or a label outside 0-9")
    images = data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).astype(np.float32) / 255.0
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def _cat(splits: list[Split]) -> Split:
    return torch.cat([s[0] for s in splits]), torch.cat([s[1] for s in splits])


def load_digits(test_fraction: float, seed: int) -> tuple[Split, Split]:
    """scikit-learn's digits (1797 images 8x8, values 0-16) split into train / test by a seeded permutation."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test = round(test_fraction * len(labels))
    return (images[order[test:]], labels[order[test:]]), (images[order[:test]], labels[order[:test]])


def load_images(dataset: str, data_dir: str | Path | None, seed: int = 0,
                digits_test_fraction: float = 0.2) -> tuple[Split, Split]:
    """(train, test) of `dataset`; the file sets need `data_dir`."""
    if dataset not in DATASETS:
        raise EsgdError(f"--dataset: unknown image set {dataset!r} (choose from {', '.join(DATASETS)})")
    if dataset == "digits":
        return load_digits(digits_test_fraction, seed)
    if data_dir is None:
        raise EsgdError(f"--dataset {dataset} needs --data-dir (the directory of its files)")
    directory = Path(data_dir)
    if not directory.is_dir():
        raise EsgdError(f"{directory}: no such directory")
    if dataset in IDX_SETS:
        return (_idx_split(directory, "train", IDX_SETS[dataset]), _idx_split(directory, "t10k", IDX_SETS[dataset]))
    train = _cat([read_cifar_batch(_find(directory, f"data_batch_{i}")) for i in range(1, 6)])
    return train, read_cifar_batch(_find(directory, "test_batch"))
