"""PLP front end: framing and mel filterbank against kaldi-native-fbank, LPC / cepstrum against independent
computations, and PLP as a whole against a per-frame numpy reference built on kaldi-native-fbank's mel energies."""
import math
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.framing import FrameOptions, MelOptions, fbank, num_frames
from esgd_asr.features.plp import Plp, PlpOptions, durbin, lifter_coeffs, lpc_to_cepstrum


def synthetic_wave(seconds=0.7, rate=16000, seed=0):
    """Sines plus noise in 16-bit scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 3000 * np.sin(2 * np.pi * 310 * t) + 1500 * np.sin(2 * np.pi * 1270 * t + 0.3)
    x += 400 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def knf_fbank(wave, rate, use_energy=False, **frame_opts):
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = rate
    opts.use_energy = use_energy
    for key, value in frame_opts.items():
        setattr(opts.frame_opts, key, value)
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(rate, wave.tolist())
    fb.input_finished()
    dim = opts.mel_opts.num_bins + use_energy
    return np.array([fb.get_frame(i) for i in range(fb.num_frames_ready)], dtype=np.float64).reshape(-1, dim)


KNF_TO_OURS = {"window_type": "window_type", "snip_edges": "snip_edges", "preemph_coeff": "preemphasis_coefficient",
               "remove_dc_offset": "remove_dc_offset", "frame_shift_ms": "frame_shift",
               "frame_length_ms": "frame_length"}


@pytest.mark.parametrize("rate,frame_opts", [
    (16000, {}),
    (8000, {"window_type": "hamming", "snip_edges": False}),
    (16000, {"window_type": "hanning", "snip_edges": False, "preemph_coeff": 0.0}),
    (16000, {"window_type": "blackman", "frame_shift_ms": 12.5}),
    (16000, {"window_type": "rectangular", "remove_dc_offset": False, "frame_length_ms": 20.0}),
])
def test_fbank_matches_kaldi_native_fbank(rate, frame_opts):
    wave = synthetic_wave(rate=rate)
    ref = knf_fbank(wave, rate, **frame_opts)
    opts = FrameOptions(sample_frequency=rate, dither=0.0, **{KNF_TO_OURS[k]: v for k, v in frame_opts.items()})
    ours = fbank([torch.from_numpy(wave)], rate, ["utt"], opts)[0].numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-3)


@pytest.mark.parametrize("snip_edges", [True, False])
def test_num_frames_matches_kaldi_formula_and_knf(snip_edges):
    opts = FrameOptions(dither=0.0, snip_edges=snip_edges)
    for n in (100, 250, 399, 400, 401, 559, 560, 561, 1234, 16000, 16001):
        expected = 1 + (n - 400) // 160 if snip_edges else (n + 80) // 160
        if snip_edges and n < 400:
            expected = 0
        assert num_frames(n, opts) == expected
        wave = synthetic_wave(seconds=n / 16000, seed=n)
        ref = knf_fbank(wave, 16000, snip_edges=snip_edges)
        assert len(ref) == expected
        if expected:  # shorter than a frame without snip-edges: reflected more than once, as in Kaldi
            np.testing.assert_allclose(fbank([torch.from_numpy(wave)], 16000, ["u"], opts)[0].numpy(), ref, atol=1e-3)


def all_pole_lpc(poles):
    """Coefficients a_1..a_p of A(z) = prod (1 - p z^-1) (real, since poles come in conjugate pairs)."""
    return np.real(np.poly(poles))[1:]


POLES = [0.9 * np.exp(0.3j), 0.9 * np.exp(-0.3j), 0.7 * np.exp(1.9j), 0.7 * np.exp(-1.9j), -0.5, 0.3]


def test_lpc_to_cepstrum_matches_analytic_and_fft_cepstrum():
    lpc = all_pole_lpc(POLES)
    ceps = lpc_to_cepstrum(torch.tensor(lpc)[None])[0].numpy()
    n = np.arange(1, len(lpc) + 1)
    analytic = np.real(sum(p ** n for p in POLES)) / n  # log 1/A = sum_k sum_n p_k^n z^-n / n
    np.testing.assert_allclose(ceps, analytic, atol=1e-10)
    # minimum phase: the cepstrum of 1/A is twice the real cepstrum of |1/A| at positive quefrencies
    size = 1 << 14
    real_ceps = np.fft.irfft(-np.log(np.abs(np.fft.rfft(np.r_[1.0, lpc], size))), size)
    np.testing.assert_allclose(ceps, 2 * real_ceps[1:len(lpc) + 1], atol=1e-8)


def test_durbin_recovers_an_all_pole_model_from_its_autocorrelation():
    lpc = all_pole_lpc(POLES)
    size = 1 << 14
    power = 2.5 / np.abs(np.fft.rfft(np.r_[1.0, lpc], size)) ** 2  # residual energy 2.5
    autocorr = np.fft.irfft(power, size)[:len(lpc) + 1]
    est, energy = durbin(torch.tensor(autocorr)[None])
    np.testing.assert_allclose(est[0].numpy(), lpc, atol=1e-8)
    assert float(energy[0]) == pytest.approx(2.5, rel=1e-8)


def test_lifter_formula():
    coeffs = lifter_coeffs(13, 22.0).numpy()
    assert coeffs[0] == 1.0
    np.testing.assert_allclose(coeffs, [1 + 11 * math.sin(math.pi * i / 22) for i in range(13)], rtol=1e-12)


def reference_plp(wave, rate=16000, lpc_order=12, num_ceps=13, lifter=22.0, compress=0.33333):
    """Kaldi's PLP per frame in plain numpy, from kaldi-native-fbank's raw log energy and mel energies."""
    feats = knf_fbank(wave, rate, use_energy=True)
    log_energy, mel = feats[:, 0], np.exp(feats[:, 1:])
    bins = mel.shape[1]
    mel_lo, mel_hi = 1127 * np.log(1 + 20 / 700), 1127 * np.log(1 + rate / 2 / 700)
    centre = 700 * (np.exp((mel_lo + np.arange(1, bins + 1) * (mel_hi - mel_lo) / (bins + 1)) / 1127) - 1)
    fsq = centre ** 2
    loudness = (fsq / (fsq + 1.6e5)) ** 2 * (fsq + 1.44e6) / (fsq + 9.61e6)
    out = np.empty((len(mel), num_ceps))
    for t, frame in enumerate(mel):
        spec = (frame * loudness) ** compress
        spec = np.r_[spec[0], spec, spec[-1]]  # symmetric spectrum on dim = bins + 2 points
        dim = len(spec)
        r = np.array([(spec[0] + spec[-1] * np.cos(np.pi * k) + 2 * sum(
            spec[j] * np.cos(np.pi * k * j / (dim - 1)) for j in range(1, dim - 1))) / (2 * (dim - 1))
            for k in range(lpc_order + 1)])
        toeplitz = np.array([[r[abs(i - j)] for j in range(lpc_order)] for i in range(lpc_order)])
        a = np.linalg.solve(toeplitz, -r[1:])
        c = np.zeros(lpc_order + 1)
        for m in range(1, lpc_order + 1):
            c[m] = -a[m - 1] - sum(k * c[k] * a[m - k - 1] for k in range(1, m)) / m
        c[0] = log_energy[t]
        out[t] = c[:num_ceps] * (1 + lifter / 2 * np.sin(np.pi * np.arange(num_ceps) / lifter))
    return out


def test_plp_matches_numpy_reference_on_knf_mel_energies():
    wave = synthetic_wave(seconds=0.5)
    ours = Plp(PlpOptions(frame=FrameOptions(dither=0.0)))(torch.from_numpy(wave), 16000, "utt").numpy()
    ref = reference_plp(wave)
    assert ours.shape == ref.shape == (48, 13)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_plp_finite_deterministic_and_batch_equals_single():
    waves = [torch.from_numpy(synthetic_wave(seconds=s, seed=i)) for i, s in enumerate((0.3, 1.1, 0.45))]
    waves.append(torch.zeros(8000))  # digital silence stays finite
    names = ["a", "b", "c", "silence"]
    plp = Plp(PlpOptions(frame=FrameOptions(dither=1.0)), seed=3)
    batch = plp.batch(waves, 16000, names)
    assert [f.shape for f in batch] == [(num_frames(len(w), plp.opts.frame), 13) for w in waves]
    for feats, wave, name in zip(batch, waves, names):
        assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
        torch.testing.assert_close(plp(wave, 16000, name), feats, rtol=1e-5, atol=1e-5)
    again = Plp(PlpOptions(frame=FrameOptions(dither=1.0)), seed=3).batch(waves, 16000, names)
    assert all(torch.equal(x, y) for x, y in zip(batch, again))
    other_seed = Plp(PlpOptions(frame=FrameOptions(dither=1.0)), seed=4)(waves[0], 16000, "a")
    assert not torch.equal(other_seed, batch[0])


def test_plp_options_htk_compat_energy_and_ceps():
    wave = torch.from_numpy(synthetic_wave(seconds=0.3))
    base = Plp(PlpOptions(frame=FrameOptions(dither=0.0)))(wave, 16000)
    htk = Plp(PlpOptions(frame=FrameOptions(dither=0.0), htk_compat=True))(wave, 16000)
    torch.testing.assert_close(htk, base.roll(-1, dims=1))
    no_energy = Plp(PlpOptions(frame=FrameOptions(dither=0.0), use_energy=False, num_ceps=6))(wave, 16000)
    torch.testing.assert_close(no_energy[:, 1:], base[:, 1:6])
    assert not torch.allclose(no_energy[:, 0], base[:, 0])
    with pytest.raises(EsgdError, match="--num-ceps"):
        PlpOptions(num_ceps=14)


@pytest.mark.parametrize("wave,rate,match", [
    (torch.zeros(0), 16000, "empty waveform"),
    (torch.ones(399), 16000, "too few"),
    (torch.ones(16000), 8000, "sample rate 8000 Hz differs from --sample-frequency=16000"),
])
def test_bad_waveforms_name_the_utterance(wave, rate, match):
    plp = Plp(PlpOptions(frame=FrameOptions(dither=0.0)))
    with pytest.raises(EsgdError, match=f"utterance 'spk1-utt7'.*{match}"):
        plp.batch([torch.ones(16000), wave], rate, ["ok", "spk1-utt7"] if rate == 16000 else ["spk1-utt7", "ok"])


def test_fbank_mel_options():
    wave = synthetic_wave()
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins, opts.mel_opts.low_freq, opts.mel_opts.high_freq = 40, 64.0, -400.0
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, wave.tolist())
    fb.input_finished()
    ref = np.array([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    ours = fbank([torch.from_numpy(wave)], 16000, ["u"], FrameOptions(dither=0.0),
                 MelOptions(num_mel_bins=40, low_freq=64.0, high_freq=-400.0))[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_plp_matches_kaldifeat_on_silence_near_silence_clipping_and_telephone_band():
    """tests/data/plp/edges.wav (made here: 0.2 s of digital silence, 0.2 s of +-1 LSB, 0.2 s of +-4 LSB, flite
    speech, the same speech clipped, telephone-band speech) and edges.kaldifeat_plp.txt, its PLP by kaldifeat 1.24
    (Kaldi's compute-plp-feats in C++, float32 throughout; default options, dither 0). Every frame agrees within
    1e-4 of each coefficient's range (4.6e-5 measured on longer speech), near-silent and clipped ones included. On
    digital silence Kaldi's Durbin recursion divides 0 by 0 and its cepstra are NaN: ours are those of a flat
    spectrum (zeros), with the same energy C0."""
    import soundfile as sf

    data = Path(__file__).parent / "data" / "plp"
    wave, rate = sf.read(data / "edges.wav", dtype="float32")
    ours = Plp(PlpOptions(frame=FrameOptions(dither=0.0)))(torch.from_numpy(wave * 32768), rate).numpy()
    kaldi = np.loadtxt(data / "edges.kaldifeat_plp.txt")
    silent = np.isnan(kaldi[:, 1:]).all(1)
    assert ours.shape == kaldi.shape and silent[:10].all() and silent.sum() == 18
    finite = kaldi[~silent]
    assert (np.abs(ours[~silent] - finite) / (finite.max(0) - finite.min(0))).max() < 1e-4
    assert np.allclose(ours[silent, 0], kaldi[silent, 0]) and not ours[silent, 1:].any()
