"""Render utterances: a synthesiser's speech (espeak-ng, festival, flite), the speaker's and the channel's sox
effects (spectrum shift, tempo, speed, reverb, telephone band), sox noise at a set SNR."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from esgd_asr.data.synth.speakers import ESPEAK_WPM, Speaker
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
    speaker: Speaker
    path: Path
    perturbation: Perturbation = field(default_factory=Perturbation)
    seed: int = 0


# what each engine needs installed: (command, Debian package)
ENGINE_TOOLS = {"espeak-ng": ("espeak-ng", "espeak-ng"), "festival": ("festival", "festival"),
                "flite": ("flite", "flite")}
# Debian packages of festival's English voices
FESTIVAL_VOICE_PACKAGES = {"kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
                           "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}


def require_tools(speakers: list[Speaker]) -> None:
    """Fail with one line naming the missing synthesiser, voice or sox, and its Debian package."""
    needed = {("sox", "sox")} | {ENGINE_TOOLS[spk.engine] for spk in speakers}
    for tool, package in sorted(needed):
        if shutil.which(tool) is None:
            raise EsgdError(f"synthesiser '{tool}' not found on PATH; install it with: apt-get install {package}")
    festival_voices = {spk.voice for spk in speakers if spk.engine == "festival"}
    if festival_voices:
        have = set(_run(["festival", "-b", "(print (voice.list))"], "festival").decode().strip("()\n ").split())
        for voice in sorted(festival_voices - have):
            package = FESTIVAL_VOICE_PACKAGES.get(voice, "the festvox package of that voice")
            raise EsgdError(f"festival voice '{voice}' not installed; install it with: apt-get install {package}")
    flite_voices = {spk.voice for spk in speakers if spk.engine == "flite"}
    if flite_voices:
        have = set(_run(["flite", "-lv"], "flite").decode().split(":", 1)[-1].split())
        for voice in sorted(flite_voices - have):
            raise EsgdError(f"flite voice '{voice}' not built into this flite (flite -lv lists: {' '.join(sorted(have))})")


def _run(cmd: list[str], what: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise EsgdError(f"{what}: {cmd[0]} failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    return proc.stdout


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synthesise(specs: list[UtteranceSpec]) -> list[bytes]:
    """The engine's wav of each utterance; all of `specs` are one speaker's (festival runs once for them all)."""
    speaker = specs[0].speaker
    if speaker.engine == "espeak-ng":
        return [_run(["espeak-ng", "-v", speaker.voice, "-p", str(speaker.pitch),
                      "-s", str(round(ESPEAK_WPM * speaker.rate)), "--stdout", spec.text.lower()],
                     f"utterance {spec.utt_id}") for spec in specs]
    if speaker.engine == "flite":
        return [_run(["flite", "-voice", speaker.voice, "-t", spec.text.lower(), "-o", "/dev/stdout"],
                     f"utterance {spec.utt_id}") for spec in specs]
    with tempfile.TemporaryDirectory(prefix="esgd-festival-") as tmp:
        paths = [Path(tmp) / f"{i}.wav" for i in range(len(specs))]
        script = [f"(voice_{speaker.voice})"] + [
            f"(utt.save.wave (utt.synth (eval (list 'Utterance 'Text {_scheme_string(spec.text.lower())}))) "
            f"{_scheme_string(str(path))} 'riff)" for spec, path in zip(specs, paths)]
        (Path(tmp) / "synth.scm").write_text("\n".join(script) + "\n")
        _run(["festival", "-b", str(Path(tmp) / "synth.scm")], f"utterances {specs[0].utt_id}..")
        for spec, path in zip(specs, paths):
            if not path.is_file():
                raise EsgdError(f"utterance {spec.utt_id}: festival wrote no audio for '{spec.text}'")
        return [path.read_bytes() for path in paths]


def speaker_effects(speaker: Speaker) -> list[str]:
    """sox effects that make a festival / flite voice into this speaker: spectrum shift, speaking rate."""
    if speaker.engine == "espeak-ng":
        return []  # espeak-ng sets pitch, formants and rate itself
    effects = ["pitch", str(speaker.shift_cents)] if speaker.shift_cents else []
    return effects + (["tempo", "-s", f"{speaker.rate:.3f}"] if speaker.rate != 1.0 else [])


def render(spec: UtteranceSpec, wav: bytes) -> float:
    """Pass the engine's `wav` through the speaker's and the channel's sox effects and the noise; write the
    utterance's 16 kHz 16-bit wav; return its duration in seconds."""
    where = f"utterance {spec.utt_id}"
    raw = _run(["sox", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-",
                *speaker_effects(spec.speaker), *spec.perturbation.sox_effects()], where, stdin=wav)
    speech = np.frombuffer(raw, dtype=np.float32).astype(np.float64)
    if speech.size == 0:
        raise EsgdError(f"{where}: {spec.speaker.engine} produced no audio for '{spec.text}'")
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
