"""Kaldi data dirs written from scratch for the import and fault tests (audio, text, utt2spk, segments, piped
wav.scp), and a snapshot of files to check that nothing changed."""
import numpy as np
import soundfile as sf

from esgd_asr.data.kaldi_dir import DataDir


def write_kaldi_corpus(root, with_segments, heldout=False, piped=False, rate=16000):
    """Three data dirs (four with `heldout`); each recording holds two utterances when `with_segments`; with
    `piped`, wav.scp reads each recording through a sox pipe, as real recipes write it."""
    rng = np.random.default_rng(0)
    splits = [("train", ["alice", "bob"]), ("dev", ["carol"]), ("test", ["dave"])] + heldout * [("heldout", ["eve"])]
    for split, speakers in splits:
        d = root / split
        d.mkdir(parents=True)
        wav, text, utt2spk, segments = {}, {}, {}, {}
        for spk in speakers:
            reco = f"{spk}-rec1"
            path = root / "audio" / f"{reco}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, rng.normal(0, 0.1, 2 * rate).astype(np.float32), rate)
            wav[reco] = f"sox {path} -t wav - |" if piped else str(path)
            for i, (start, end) in enumerate([(0.0, 0.9), (1.0, 1.9)] if with_segments else [(0.0, 2.0)]):
                utt = f"{reco}-{i}" if with_segments else reco
                text[utt] = f"HELLO WORLD {spk.upper()} {i}"
                utt2spk[utt] = spk
                segments[utt] = f"{reco} {start} {end}"
        DataDir(wav, text, utt2spk, segments if with_segments else None).write(d)


def snapshot(*roots):
    """Every file under `roots`, path -> bytes."""
    return {p: p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}
