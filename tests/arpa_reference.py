"""An independent ARPA back-off LM evaluator, used by the tests as a reference."""
from __future__ import annotations

import math


class ArpaModel:
    def __init__(self, path):
        self.prob: dict[tuple[str, ...], float] = {}
        self.backoff: dict[tuple[str, ...], float] = {}
        order = 0
        with open(path, encoding="latin-1") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("\\data") or line.startswith("ngram "):
                    continue
                if line.startswith("\\") and line.endswith("-grams:"):
                    order = int(line[1:line.index("-")])
                    continue
                if line == "\\end\\":
                    break
                fields = line.split()
                ngram = tuple(fields[1:1 + order])
                self.prob[ngram] = float(fields[0])
                if len(fields) > 1 + order:
                    self.backoff[ngram] = float(fields[1 + order])
        self.order = max(len(k) for k in self.prob)
        self.vocab = sorted(w for (w,) in (k for k in self.prob if len(k) == 1) if w != "<s>")

    def log10_prob(self, word: str, history: tuple[str, ...]) -> float:
        history = history[-(self.order - 1):] if self.order > 1 else ()
        if (*history, word) in self.prob:
            return self.prob[(*history, word)]
        if not history:
            raise KeyError(word)
        return self.backoff.get(history, 0.0) + self.log10_prob(word, history[1:])

    def sentence_log10_prob(self, words: list[str]) -> float:
        history, total = ("<s>",), 0.0
        for w in words + ["</s>"]:
            total += self.log10_prob(w, history)
            history = (*history, w)
        return total

    def next_word_mass(self, history: tuple[str, ...]) -> float:
        return sum(math.pow(10, self.log10_prob(w, history)) for w in self.vocab)
