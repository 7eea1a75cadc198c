"""A one-table summary of a corpus' splits: utterances, speakers, hours, words, vocabulary, OOV rate."""
from __future__ import annotations

from esgd_asr.data.kaldi_dir import DataDir


def print_summary(splits: dict[str, DataDir]) -> None:
    train_vocab = {w for t in splits.get("train", DataDir({}, {}, {})).text.values() for w in t.split()}
    print(f"{'split':<8}{'utts':>7}{'spk':>5}{'hours':>8}{'words':>8}{'vocab':>7}{'OOV%':>7}")
    for split, data in splits.items():
        words = [w for t in data.text.values() for w in t.split()]
        oov = sum(w not in train_vocab for w in words) / max(1, len(words)) * 100
        hours = sum(data.utt2dur.values()) / 3600
        print(f"{split:<8}{len(data.utt2spk):>7}{len(set(data.utt2spk.values())):>5}{hours:>8.2f}"
              f"{len(words):>8}{len(set(words)):>7}{oov:>7.2f}")
