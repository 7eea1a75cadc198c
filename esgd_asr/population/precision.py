"""Arithmetic precision of a population's passes on the GPU: bf16 (the default of the ESGD family), tf32 or fp32.

- bf16: matmuls (and the LSTM kernels) in bfloat16 with fp32 master weights: the weights are cast per step, the
  softmax / cross-entropy, the gradients applied to the weights and the optimizer state stay fp32 (as
  torch.autocast with fp32 parameters).
- tf32: fp32 tensors, matmuls and cuDNN on TF32 tensor cores.
- fp32: full fp32 (no TF32 in matmuls or cuDNN).

On the CPU every precision computes in fp32: results there are bit-for-bit those of an fp32 run.
"""
from contextlib import contextmanager

import torch

from esgd_asr.errors import EsgdError

PRECISIONS = ("bf16", "tf32", "fp32")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise EsgdError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def compute_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The low-precision dtype of the matmuls (bf16 on a GPU), or None for fp32 tensors."""
    return torch.bfloat16 if precision == "bf16" and device.type == "cuda" else None


@contextmanager
def precision_scope(precision: str, device: torch.device, autocast: bool = False):
    """Matmul and cuDNN settings of `precision` on a CUDA device for the enclosed passes (restored afterwards);
    with `autocast`, bf16 also runs the enclosed autograd passes under torch.autocast. Nothing on the CPU."""
    if device.type != "cuda":
        yield
        return
    saved_matmul, saved_cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest" if precision == "fp32" else "high")
    torch.backends.cudnn.allow_tf32 = precision != "fp32"
    try:
        # no cast cache: each weight is cast once per pass anyway, and CUDA graph capture (graphed.py) needs it off
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast and precision == "bf16",
                            cache_enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(saved_matmul)
        torch.backends.cudnn.allow_tf32 = saved_cudnn
