"""N-gram language model: Kneser-Ney ARPA estimation and perplexity with kaldingram, G.fst with kaldilm."""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import kaldilm
from kaldingram import train as kaldingram_train
from kaldingram.ppl import compute_ppl
from kaldingram.prune import ArpaParser

from esgd_asr.atomic import atomic_write_text
from esgd_asr.errors import EsgdError


def train_arpa(sentences: list[str], order: int, arpa_path: Path) -> None:
    """Estimate an interpolated modified Kneser-Ney `order`-gram LM from `sentences`; write it as ARPA."""
    if not sentences:
        raise EsgdError("no LM training text")
    arpa_path = Path(arpa_path)
    text_path = arpa_path.with_suffix(".train.txt")
    atomic_write_text(text_path, "".join(s + "\n" for s in sentences))
    tmp = arpa_path.with_name(f".{arpa_path.name}.tmp")
    with contextlib.redirect_stderr(io.StringIO()):
        kaldingram_train.main(["--ngram-order", str(order), "--text", str(text_path), "--lm", str(tmp)])
    os.replace(tmp, arpa_path)


def perplexity(arpa_path: Path, sentences: list[str]) -> dict:
    """SRILM-style perplexity report (ppl counts </s>; OOVs are counted, not scored)."""
    lm = ArpaParser().loadf(str(arpa_path), encoding="latin-1")[0]
    with contextlib.redirect_stderr(io.StringIO()):
        return compute_ppl(lm, sentences)


def arpa_to_g_fst(arpa_path: Path, words_txt: Path, g_fst: Path) -> None:
    """G.fst over the lang dir's words (Kaldi format_lm: #0 on backoff arcs, <s>/</s> as epsilon)."""
    tmp = Path(g_fst).with_name(f".{Path(g_fst).name}.tmp")
    kaldilm.arpa2fst(str(arpa_path), str(tmp), disambig_symbol="#0", read_symbol_table=str(words_txt),
                     max_arpa_warnings=-1)
    if not tmp.is_file() or tmp.stat().st_size == 0:
        raise EsgdError(f"{arpa_path}: arpa2fst wrote no G.fst")
    os.replace(tmp, g_fst)


def arpa_vocabulary(arpa_path: Path) -> set[str]:
    """The words of an ARPA file's unigram section."""
    words, in_unigrams = set(), False
    with open(arpa_path, encoding="latin-1") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                in_unigrams = line == "\\1-grams:"
                continue
            if in_unigrams and line:
                words.add(line.split()[1])
    return words
