"""Kaldi framing, windowing, power spectrum and mel filterbank, vectorised over frames (shared by PLP and fbank).

Semantics follow Kaldi's feature-window.cc and mel-computations.cc: frames of `frame_length` ms every
`frame_shift` ms (snip-edges or centred with reflected edges), optional Gaussian dither, DC removal, raw log
energy (before pre-emphasis and window), pre-emphasis, window, zero padding to a power of two, |rfft|^2, and
triangular mel bins on the mel scale 1127 ln(1 + f/700) over the FFT bins below Nyquist.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Sequence

import torch

from esgd_asr.errors import EsgdError

FLOAT_EPS = float(torch.finfo(torch.float32).eps)
WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular", "blackman", "sine")


@dataclass(frozen=True)
class FrameOptions:
    """Kaldi's FrameExtractionOptions (times in ms, frequency in Hz)."""

    sample_frequency: float = 16000.0
    frame_length: float = 25.0
    frame_shift: float = 10.0
    dither: float = 1.0
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    round_to_power_of_two: bool = True
    blackman_coeff: float = 0.42
    snip_edges: bool = True

    def __post_init__(self):
        if self.window_type not in WINDOW_TYPES:
            raise EsgdError(f"--window-type={self.window_type}: expected one of {', '.join(WINDOW_TYPES)}")
        if self.window_shift < 1 or self.window_size < 2:
            raise EsgdError(f"--frame-length={self.frame_length} / --frame-shift={self.frame_shift} give an empty "
                            f"frame at --sample-frequency={self.sample_frequency}")

    @property
    def window_size(self) -> int:
        """Samples per frame."""
        return int(self.sample_frequency * 0.001 * self.frame_length)

    @property
    def window_shift(self) -> int:
        """Samples between frame starts."""
        return int(self.sample_frequency * 0.001 * self.frame_shift)

    @property
    def padded_window_size(self) -> int:
        """FFT length: the frame, rounded up to a power of two if asked."""
        size = self.window_size
        return 1 << (size - 1).bit_length() if self.round_to_power_of_two else size


@dataclass(frozen=True)
class MelOptions:
    """Kaldi's MelBanksOptions; `high_freq` <= 0 is an offset from Nyquist."""

    num_mel_bins: int = 23
    low_freq: float = 20.0
    high_freq: float = 0.0


def num_frames(num_samples: int, opts: FrameOptions) -> int:
    """Frames Kaldi extracts from `num_samples` samples."""
    size, shift = opts.window_size, opts.window_shift
    if opts.snip_edges:
        return 0 if num_samples < size else 1 + (num_samples - size) // shift
    return (num_samples + shift // 2) // shift


def feature_window(opts: FrameOptions) -> torch.Tensor:
    """The analysis window (window_size,) in float32."""
    n = opts.window_size
    i = torch.arange(n, dtype=torch.float64)
    a = 2 * math.pi / (n - 1)
    kind = opts.window_type
    if kind == "hanning":
        w = 0.5 - 0.5 * torch.cos(a * i)
    elif kind == "sine":
        w = torch.sin(0.5 * a * i)
    elif kind == "hamming":
        w = 0.54 - 0.46 * torch.cos(a * i)
    elif kind == "povey":
        w = (0.5 - 0.5 * torch.cos(a * i)).pow(0.85)
    elif kind == "rectangular":
        w = torch.ones(n, dtype=torch.float64)
    else:
        c = opts.blackman_coeff
        w = c - 0.5 * torch.cos(a * i) + (0.5 - c) * torch.cos(2 * a * i)
    return w.float()


def extract_frames(wave: torch.Tensor, opts: FrameOptions) -> torch.Tensor:
    """Raw frames (T, window_size) of a 1-D waveform; edges reflected when snip_edges is false."""
    count, size, shift = num_frames(wave.shape[0], opts), opts.window_size, opts.window_shift
    if count == 0:
        return wave.new_zeros((0, size))
    if opts.snip_edges:
        return wave.unfold(0, size, shift)[:count]
    n = wave.shape[0]
    starts = torch.arange(count) * shift + shift // 2 - size // 2
    index = starts[:, None] + torch.arange(size)
    while True:  # reflect until inside, as Kaldi does (repeatedly only for waves shorter than a frame)
        low, high = index < 0, index >= n
        if not bool((low | high).any()):
            return wave[index]
        index = torch.where(low, -index - 1, torch.where(high, 2 * n - 1 - index, index))


def dither_generator(name: str, seed: int) -> torch.Generator:
    """A generator for the dither of one utterance: the same noise whatever the batch or job it falls in."""
    return torch.Generator().manual_seed(zlib.crc32(name.encode()) ^ (seed & 0xFFFFFFFF))


def process_frames(frames: torch.Tensor, opts: FrameOptions, window: torch.Tensor,
                   noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dither (`noise`, unit Gaussian like `frames`), DC removal, pre-emphasis and window, as Kaldi's ProcessWindow.

    Returns the windowed frames (T, window_size) and their raw log energy (T,) taken before pre-emphasis.
    """
    frames = frames.float()
    if opts.dither != 0.0 and noise is not None:
        frames = frames + opts.dither * noise
    if opts.remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)
    log_energy = frames.square().sum(dim=1).clamp_min(FLOAT_EPS).log()
    c = opts.preemphasis_coefficient
    if c != 0.0:
        frames = torch.cat([frames[:, :1] * (1 - c), frames[:, 1:] - c * frames[:, :-1]], dim=1)
    return frames * window, log_energy


def power_spectrum(frames: torch.Tensor, padded_size: int) -> torch.Tensor:
    """|FFT|^2 of zero-padded frames: (T, padded_size // 2 + 1)."""
    return torch.fft.rfft(frames, n=padded_size).abs().square()


def mel_scale(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(freq / 700.0)


def inverse_mel_scale(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * torch.expm1(mel / 1127.0)


def mel_banks(mel_opts: MelOptions, frame_opts: FrameOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """Triangular mel weights (padded_size // 2 + 1, num_bins) for a power spectrum, and the centre frequencies."""
    sample_freq, padded = frame_opts.sample_frequency, frame_opts.padded_window_size
    nyquist = 0.5 * sample_freq
    low = mel_opts.low_freq
    high = mel_opts.high_freq if mel_opts.high_freq > 0 else nyquist + mel_opts.high_freq
    bins = mel_opts.num_mel_bins
    if bins < 3:
        raise EsgdError(f"--num-mel-bins={bins}: need at least 3")
    if not 0 <= low < high <= nyquist:
        raise EsgdError(f"--low-freq={mel_opts.low_freq} / --high-freq={mel_opts.high_freq}: need "
                        f"0 <= low < high <= Nyquist ({nyquist:g} Hz)")
    mel_low, mel_high = mel_scale(torch.tensor(float(low))), mel_scale(torch.tensor(float(high)))
    delta = (mel_high - mel_low) / (bins + 1)
    edges = mel_low + delta * torch.arange(bins + 2, dtype=torch.float32)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    mel = mel_scale(sample_freq / padded * torch.arange(padded // 2, dtype=torch.float32))[None, :]
    rising = torch.where((mel > left) & (mel <= center), (mel - left) / (center - left), 0.0)
    falling = torch.where((mel > center) & (mel < right), (right - mel) / (right - center), 0.0)
    weights = torch.cat([(rising + falling).T, torch.zeros(1, bins)])  # Nyquist bin carries no weight
    if bool((weights.sum(dim=0) == 0).any()):
        raise EsgdError(f"--num-mel-bins={bins}: some mel bins are empty for FFT size {padded}; use fewer bins")
    return weights, inverse_mel_scale(center[:, 0])


def check_waveform(wave: torch.Tensor, sample_rate: float, opts: FrameOptions, name: str) -> torch.Tensor:
    """A 1-D float waveform at the configured rate long enough for one frame, or EsgdError naming `name`."""
    wave = torch.as_tensor(wave)
    if wave.ndim != 1:
        raise EsgdError(f"utterance '{name}': expected a 1-D waveform, got shape {tuple(wave.shape)}")
    if sample_rate != opts.sample_frequency:
        raise EsgdError(f"utterance '{name}': sample rate {sample_rate:g} Hz differs from "
                        f"--sample-frequency={opts.sample_frequency:g}")
    if wave.shape[0] == 0:
        raise EsgdError(f"utterance '{name}': empty waveform")
    if num_frames(wave.shape[0], opts) == 0:
        raise EsgdError(f"utterance '{name}': {wave.shape[0]} samples are too few for one "
                        f"{opts.frame_length:g} ms frame")
    return wave.float()


def frame_batch(waves: Sequence[torch.Tensor], sample_rate: float, names: Sequence[str], opts: FrameOptions,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Frames of several utterances stacked into one matrix, processed as Kaldi does.

    Returns windowed frames (sum T, window_size), raw log energies (sum T,) and the frame count per utterance.
    """
    if len(waves) != len(names):
        raise EsgdError(f"{len(waves)} waveforms but {len(names)} names")
    raw, counts, noise = [], [], []
    for wave, name in zip(waves, names):
        frames = extract_frames(check_waveform(wave, sample_rate, opts, name), opts)
        raw.append(frames)
        counts.append(frames.shape[0])
        if opts.dither != 0.0:
            noise.append(torch.randn(frames.shape, generator=dither_generator(name, seed)))
    noise_all = torch.cat(noise) if noise else None
    windowed, log_energy = process_frames(torch.cat(raw), opts, feature_window(opts), noise_all)
    return windowed, log_energy, counts


def fbank(waves: Sequence[torch.Tensor], sample_rate: float, names: Sequence[str],
          frame_opts: FrameOptions = FrameOptions(), mel_opts: MelOptions = MelOptions(),
          seed: int = 0) -> list[torch.Tensor]:
    """Kaldi log mel filterbank (compute-fbank-feats without energy) for a batch: one (T, num_bins) per utterance."""
    windowed, _, counts = frame_batch(waves, sample_rate, names, frame_opts, seed)
    weights, _ = mel_banks(mel_opts, frame_opts)
    mel = power_spectrum(windowed, frame_opts.padded_window_size) @ weights
    return list(mel.clamp_min(FLOAT_EPS).log().split(counts))
