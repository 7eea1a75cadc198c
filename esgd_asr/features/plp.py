"""Perceptual linear prediction (PLP) cepstra with the semantics of Kaldi's compute-plp-feats.

Per frame: Kaldi framing and power spectrum, mel filterbank, equal-loudness weighting, cube-root compression
(`compress_factor`), the mel spectrum (first and last bins repeated) turned into an autocorrelation by an inverse
DFT, Durbin's recursion to an all-pole model of order `lpc_order`, its cepstrum, liftering and scaling, and C0
replaced by the raw log energy when `use_energy`. Every step is a tensor op over all frames of a batch.
Agrees with Kaldi's (kaldifeat's) float32 computation within 1e-4 of each coefficient's range on every frame,
near-silent and clipped ones included (tests/test_plp.py), except on digital silence without dither: there
Kaldi's recursion divides 0 by 0 (NaN cepstra), here the cepstra are those of a flat spectrum (zeros).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.framing import (FLOAT_EPS, FrameOptions, MelOptions, frame_batch, mel_banks,
                                       power_spectrum)

FLOAT_MIN = float(torch.finfo(torch.float32).tiny)


@dataclass(frozen=True)
class PlpOptions:
    """Kaldi's PlpOptions (compute-plp-feats defaults)."""

    frame: FrameOptions = field(default_factory=FrameOptions)
    mel: MelOptions = field(default_factory=MelOptions)
    lpc_order: int = 12
    num_ceps: int = 13
    use_energy: bool = True
    energy_floor: float = 0.0
    raw_energy: bool = True
    compress_factor: float = 0.33333
    cepstral_lifter: float = 22.0
    cepstral_scale: float = 1.0
    htk_compat: bool = False

    def __post_init__(self):
        if self.lpc_order < 1:
            raise EsgdError(f"--lpc-order={self.lpc_order}: must be at least 1")
        if not 1 <= self.num_ceps <= self.lpc_order + 1:
            raise EsgdError(f"--num-ceps={self.num_ceps}: must be in 1..lpc-order+1 ({self.lpc_order + 1})")


def equal_loudness(center_freqs: torch.Tensor) -> torch.Tensor:
    """Kaldi's equal-loudness weight of each mel bin from its centre frequency (Hz)."""
    fsq = center_freqs.double().square()
    fsub = fsq / (fsq + 1.6e5)
    return fsub.square() * (fsq + 1.44e6) / (fsq + 9.61e6)


def idft_bases(num_bases: int, dim: int) -> torch.Tensor:
    """(num_bases, dim) cosine bases turning a symmetric half spectrum of `dim` points into autocorrelations."""
    angle = math.pi / (dim - 1)
    scale = 1.0 / (2.0 * (dim - 1))
    i = torch.arange(num_bases, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    bases = 2.0 * scale * torch.cos(angle * i * j)
    bases[:, 0] = scale
    bases[:, -1] *= 0.5
    return bases


def lifter_coeffs(num_ceps: int, lifter: float) -> torch.Tensor:
    """Cepstral lifter weights 1 + Q/2 sin(pi i / Q), i = 0..num_ceps-1 (C0 keeps weight 1)."""
    i = torch.arange(num_ceps, dtype=torch.float64)
    return 1.0 + 0.5 * lifter * torch.sin(math.pi * i / lifter)


def durbin(autocorr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Levinson-Durbin over rows: autocorrelations (F, p+1) -> LPC a (F, p) of A(z) = 1 + sum_k a_k z^-k and the
    residual energy (F,); like Kaldi, each step's error factor 1 - k^2 is floored at 1e-5."""
    order = autocorr.shape[1] - 1
    energy = autocorr[:, 0].clone()
    lpc = autocorr.new_zeros(autocorr.shape[0], order)
    for i in range(order):
        k = (autocorr[:, i + 1] + (lpc[:, :i] * autocorr[:, 1:i + 1].flip(1)).sum(dim=1)) / energy
        energy = energy * (1.0 - k.square()).clamp_min(1.0e-5)
        new = lpc.clone()
        new[:, :i] = lpc[:, :i] - k[:, None] * lpc[:, :i].flip(1)
        new[:, i] = -k
        lpc = new
    return lpc, energy


def lpc_to_cepstrum(lpc: torch.Tensor) -> torch.Tensor:
    """Cepstrum c_1..c_p (F, p) of the all-pole model 1 / A(z), from the LPC a (F, p) of A(z) = 1 + sum a_k z^-k:
    c_n = -a_n - (1/n) sum_{k=1}^{n-1} k c_k a_{n-k}."""
    ceps: list[torch.Tensor] = []
    for i in range(lpc.shape[1]):
        acc = -lpc[:, i]
        if i:
            weights = torch.arange(i, 0, -1, dtype=lpc.dtype)  # (i - j) for j = 0..i-1
            prev = torch.stack(ceps[::-1], dim=1)  # c[i-j-1] for j = 0..i-1
            acc = acc - (weights * lpc[:, :i] * prev).sum(dim=1) / (i + 1)
        ceps.append(acc)
    return torch.stack(ceps, dim=1)


class Plp:
    """A PLP extractor with its matrices precomputed; call it on one waveform or `batch` on many.

    Waveforms are in Kaldi's scale (16-bit sample values, not [-1, 1]). Dither, when on, is Gaussian noise drawn
    per utterance from a generator seeded by the utterance name and `seed`, so it is reproducible.
    """

    def __init__(self, opts: PlpOptions = PlpOptions(), seed: int = 0):
        self.opts, self.seed = opts, seed
        weights, center_freqs = mel_banks(opts.mel, opts.frame)
        self.mel_weights = (weights.double() * equal_loudness(center_freqs)).float()
        bins = opts.mel.num_mel_bins
        duplicate = torch.zeros(bins + 2, bins, dtype=torch.float64)  # repeat the first and last bins
        duplicate[1:-1] = torch.eye(bins, dtype=torch.float64)
        duplicate[0, 0] = duplicate[-1, -1] = 1.0
        self.autocorr_matrix = (idft_bases(opts.lpc_order + 1, bins + 2) @ duplicate).T.contiguous()
        self.lifter = (lifter_coeffs(opts.num_ceps, opts.cepstral_lifter) if opts.cepstral_lifter != 0.0
                       else torch.ones(opts.num_ceps, dtype=torch.float64))

    def __call__(self, wave: torch.Tensor, sample_rate: float, name: str = "<waveform>") -> torch.Tensor:
        """PLP features (T, num_ceps) of one 1-D waveform."""
        return self.batch([wave], sample_rate, [name])[0]

    def batch(self, waves: Sequence[torch.Tensor], sample_rate: float, names: Sequence[str]) -> list[torch.Tensor]:
        """PLP features of several utterances computed together: one float32 (T_i, num_ceps) per utterance."""
        opts = self.opts
        windowed, log_energy, counts = frame_batch(waves, sample_rate, names, opts.frame, self.seed)
        if opts.use_energy and not opts.raw_energy:
            log_energy = windowed.square().sum(dim=1).clamp_min(FLOAT_EPS).log()
        mel = power_spectrum(windowed, opts.frame.padded_window_size) @ self.mel_weights
        autocorr = mel.double().pow(opts.compress_factor) @ self.autocorr_matrix
        autocorr[:, 0].clamp_(min=FLOAT_MIN)  # digital silence: a flat model instead of 0/0
        lpc, residual = durbin(autocorr)
        feats = torch.empty(len(mel), opts.num_ceps, dtype=torch.float64)
        feats[:, 0] = residual.log().clamp_min(FLOAT_MIN)
        feats[:, 1:] = lpc_to_cepstrum(lpc)[:, :opts.num_ceps - 1]
        feats = feats * self.lifter * opts.cepstral_scale
        if opts.use_energy:
            if opts.energy_floor > 0.0:
                log_energy = log_energy.clamp_min(math.log(opts.energy_floor))
            feats[:, 0] = log_energy.double()
        if opts.htk_compat:
            feats = feats.roll(-1, dims=1)
        return list(feats.float().split(counts))
