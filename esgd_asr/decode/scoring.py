"""Word error rate with kaldialign, reported in the format of Kaldi's compute-wer.

Every reference utterance is scored; one with no hypothesis counts as an empty hypothesis (compute-wer
--mode=all) and is reported as "not present in hyp".
"""
from __future__ import annotations

from dataclasses import dataclass

import kaldialign


@dataclass
class WerStats:
    errors: int = 0
    ref_words: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    sentences: int = 0
    sentence_errors: int = 0
    missing: int = 0

    @property
    def wer(self) -> float:
        return 100.0 * self.errors / self.ref_words if self.ref_words else 0.0

    def wer_line(self) -> str:
        return (f"%WER {self.wer:.2f} [ {self.errors} / {self.ref_words}, {self.ins} ins, {self.dels} del, "
                f"{self.subs} sub ]")

    def report(self) -> str:
        """compute-wer's output: %WER line, %SER line, count of scored sentences."""
        ser = 100.0 * self.sentence_errors / self.sentences if self.sentences else 0.0
        return (f"{self.wer_line()}\n%SER {ser:.2f} [ {self.sentence_errors} / {self.sentences} ]\n"
                f"Scored {self.sentences} sentences, {self.missing} not present in hyp.\n")


def compute_wer(refs: dict[str, list[str]], hyps: dict[str, list[str]]) -> WerStats:
    stats = WerStats()
    for utt, ref in refs.items():
        hyp = hyps.get(utt)
        if hyp is None:
            stats.missing += 1
            hyp = []
        d = kaldialign.edit_distance(ref, hyp)
        stats.errors += d["total"]
        stats.ins += d["ins"]
        stats.dels += d["del"]
        stats.subs += d["sub"]
        stats.ref_words += len(ref)
        stats.sentences += 1
        stats.sentence_errors += d["total"] > 0
    return stats

