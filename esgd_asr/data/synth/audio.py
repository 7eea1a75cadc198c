"""Render one utterance: espeak-ng speech, sox effects (speed, reverb, telephone band), sox noise at a set SNR."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from esgd_asr.errors import EsgdError

SAMPLE_RATE = 16000
NOISE_COLOURS = ("whitenoise", "pinknoise", "brownnoise")


@dataclass(frozen=True)
class Perturbation:
    """The channel an utterance went through; None means the effect is off."""

    speed: float = 1.0
    snr_db: float | None = None
    noise: str = "pinknoise"
    reverb: tuple[int, int] | None = None  # (reverberance %, room scale %)
    telephone: bool = False

    def sox_effects(self) -> list[str]:
        effects = ["pad", "0.15", "0.25"]
        if self.speed != 1.0:
            effects += ["speed", f"{self.speed:.3f}"]
        if self.reverb is not None:
            effects += ["reverb", str(self.reverb[0]), "50", str(self.reverb[1])]
        if self.telephone:
            effects += ["rate", "8k", "sinc", "300-3400"]
        return effects + ["rate", str(SAMPLE_RATE)]


@dataclass(frozen=True)
class UtteranceSpec:
    utt_id: str
    text: str
    voice: str
    pitch: int
    rate: int
    path: Path
    perturbation: Perturbation = field(default_factory=Perturbation)
    seed: int = 0


def require_tools() -> None:
    """Fail with an install hint when espeak-ng or sox is missing."""
    for tool, package in (("espeak-ng", "espeak-ng"), ("sox", "sox")):
        if shutil.which(tool) is None:
            raise EsgdError(f"'{tool}' not found on PATH; install it with: apt-get install {package}")


def _run(cmd: list[str], what: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise EsgdError(f"{what}: {cmd[0]} failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    return proc.stdout


def render(spec: UtteranceSpec) -> float:
    """Write the utterance's 16 kHz 16-bit wav; return its duration in seconds."""
    where = f"utterance {spec.utt_id}"
    wav = _run(["espeak-ng", "-v", spec.voice, "-p", str(spec.pitch), "-s", str(spec.rate), "--stdout",
                spec.text.lower()], where)
    raw = _run(["sox", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-",
                *spec.perturbation.sox_effects()], where, stdin=wav)
    speech = np.frombuffer(raw, dtype=np.float32).astype(np.float64)
    if speech.size == 0:
        raise EsgdError(f"{where}: espeak-ng produced no audio for '{spec.text}'")
    p = spec.perturbation
    if p.snr_db is not None:
        seconds = f"{speech.size / SAMPLE_RATE:.4f}"
        noise_raw = _run(["sox", "-R", "-n", "-r", str(SAMPLE_RATE), "-t", "raw", "-e", "floating-point", "-b",
                          "32", "-c", "1", "-", "synth", seconds, p.noise], where)
        noise = np.resize(np.frombuffer(noise_raw, dtype=np.float32).astype(np.float64), speech.size)
        # sox -R repeats one noise sequence; a seeded cyclic shift makes each utterance's noise its own
        noise = np.roll(noise, np.random.default_rng(spec.seed).integers(speech.size))
        speech = speech + scale_to_snr(speech, noise, p.snr_db)
    peak = np.abs(speech).max()
    if peak > 0.95:
        speech *= 0.95 / peak
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(spec.path, speech.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return speech.size / SAMPLE_RATE


def scale_to_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Scale `noise` so that 10 log10(P_signal / P_noise) = snr_db."""
    p_signal = np.mean(signal**2)
    p_noise = np.mean(noise**2)
    if p_noise == 0:
        return noise
    return noise * np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))
