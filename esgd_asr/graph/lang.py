"""Kaldi lang dir from a dict dir (prepare_lang.sh): position-dependent phones, disambiguation symbols,
symbol tables, HMM topology, phone sets/roots/questions, and the lexicon transducers L.fst / L_disambig.fst."""
from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import kaldifst

from esgd_asr.atomic import atomic_write_text, replace_dir, write_fst
from esgd_asr.errors import EsgdError
from esgd_asr.graph.lexicon import Lexicon, read_lexicon, read_phone_list

POSITIONS = ("B", "E", "I", "S")
BOUNDARY = {"B": "begin", "E": "end", "I": "internal", "S": "singleton"}


def position_dependent(phones: list[str]) -> list[str]:
    """Mark phones with their place in the word: _B(egin), _I(nternal), _E(nd), _S(ingleton)."""
    if len(phones) == 1:
        return [phones[0] + "_S"]
    return [phones[0] + "_B"] + [p + "_I" for p in phones[1:-1]] + [phones[-1] + "_E"]


def add_disambig_symbols(lexicon: Lexicon) -> tuple[Lexicon, int]:
    """Append #1, #2, ... to pronunciations that are homophones or prefixes of another one (Kaldi's rule);
    returns the new lexicon and the highest disambiguation index used."""
    counts = Counter(tuple(p) for _, p in lexicon)
    prefixes = {tuple(p[:i]) for _, p in lexicon for i in range(1, len(p))}
    next_index: Counter = Counter()
    result: Lexicon = []
    for word, phones in lexicon:
        key = tuple(phones)
        if key in prefixes or counts[key] > 1:
            next_index[key] += 1
            phones = phones + [f"#{next_index[key]}"]
        result.append((word, phones))
    return result, max(next_index.values(), default=0)


def lexicon_fst(lexicon: Lexicon, phone_ids: dict[str, int], word_ids: dict[str, int], sil_prob: float,
                sil_phone: str, sil_disambig: str | None = None) -> kaldifst.StdVectorFst:
    """Phones-to-words transducer with optional silence between words (probability `sil_prob`)."""
    fst = kaldifst.StdVectorFst()
    start, loop = fst.add_state(), fst.add_state()
    fst.start = start
    fst.set_final(loop, 0.0)
    if sil_prob > 0:
        sil_cost, no_sil_cost = -math.log(sil_prob), -math.log(1 - sil_prob)
        sil_state = fst.add_state()
        fst.add_arc(start, kaldifst.StdArc(0, 0, no_sil_cost, loop))
        fst.add_arc(start, kaldifst.StdArc(0, 0, sil_cost, sil_state))
        if sil_disambig is None:
            fst.add_arc(sil_state, kaldifst.StdArc(phone_ids[sil_phone], 0, 0.0, loop))
        else:
            disambig_state = fst.add_state()
            fst.add_arc(sil_state, kaldifst.StdArc(phone_ids[sil_phone], 0, 0.0, disambig_state))
            fst.add_arc(disambig_state, kaldifst.StdArc(phone_ids[sil_disambig], 0, 0.0, loop))
        word_ends = ((loop, no_sil_cost), (sil_state, sil_cost))
    else:
        fst.add_arc(start, kaldifst.StdArc(0, 0, 0.0, loop))
        word_ends = ((loop, 0.0),)
    for word, phones in lexicon:
        src, olabel = loop, word_ids[word]
        for phone in phones[:-1]:
            dst = fst.add_state()
            fst.add_arc(src, kaldifst.StdArc(phone_ids[phone], olabel, 0.0, dst))
            src, olabel = dst, 0
        for end_state, cost in word_ends:
            fst.add_arc(src, kaldifst.StdArc(phone_ids[phones[-1]], olabel, cost, end_state))
    return fst


def hmm_topology(nonsilence_ids: list[int], silence_ids: list[int]) -> str:
    """Kaldi's default topology: 3-state left-to-right for speech phones, 5-state ergodic middle for silence."""

    def ids(values):
        return " ".join(map(str, values))

    speech = "".join(f"<State> {s} <PdfClass> {s} <Transition> {s} 0.75 <Transition> {s + 1} 0.25 </State>\n"
                     for s in range(3))
    silence = "<State> 0 <PdfClass> 0 " + "".join(f"<Transition> {t} 0.25 " for t in range(4)) + "</State>\n"
    for s in (1, 2, 3):
        silence += f"<State> {s} <PdfClass> {s} " + "".join(f"<Transition> {t} 0.25 " for t in range(1, 5))
        silence += "</State>\n"
    silence += "<State> 4 <PdfClass> 4 <Transition> 4 0.75 <Transition> 5 0.25 </State>\n"
    return (f"<Topology>\n<TopologyEntry>\n<ForPhones>\n{ids(nonsilence_ids)}\n</ForPhones>\n{speech}"
            f"<State> 3 </State>\n</TopologyEntry>\n<TopologyEntry>\n<ForPhones>\n{ids(silence_ids)}\n</ForPhones>\n"
            f"{silence}<State> 5 </State>\n</TopologyEntry>\n</Topology>\n")


def _write_symbols(path: Path, symbols: list[str]) -> dict[str, int]:
    ids = {s: i for i, s in enumerate(symbols)}
    atomic_write_text(path, "".join(f"{s} {i}\n" for s, i in ids.items()))
    return ids


def _write_phone_list(phones_dir: Path, name: str, phones: list[str], ids: dict[str, int], csl: bool = False):
    atomic_write_text(phones_dir / f"{name}.txt", "".join(p + "\n" for p in phones))
    atomic_write_text(phones_dir / f"{name}.int", "".join(f"{ids[p]}\n" for p in phones))
    if csl:
        atomic_write_text(phones_dir / f"{name}.csl", ":".join(str(ids[p]) for p in phones) + "\n")


def _write_phone_sets(phones_dir: Path, name: str, sets: list[list[str]], ids: dict[str, int], prefix: str = ""):
    atomic_write_text(phones_dir / f"{name}.txt", "".join(prefix + " ".join(s) + "\n" for s in sets))
    atomic_write_text(phones_dir / f"{name}.int",
                      "".join(prefix + " ".join(str(ids[p]) for p in s) + "\n" for s in sets))


def prepare_lang(dict_dir: Path, oov_word: str, lang_dir: Path, sil_prob: float = 0.5) -> None:
    """Build `lang_dir` from `dict_dir` (built beside it and moved in place when complete)."""
    dict_dir, lang_dir = Path(dict_dir), Path(lang_dir)
    lexicon = read_lexicon(dict_dir / "lexicon.txt")
    silence = read_phone_list(dict_dir / "silence_phones.txt")
    nonsilence = read_phone_list(dict_dir / "nonsilence_phones.txt")
    optional = read_phone_list(dict_dir / "optional_silence.txt")
    if len(optional) != 1 or optional[0] not in silence:
        raise EsgdError(f"{dict_dir / 'optional_silence.txt'}: must hold one phone of silence_phones.txt")
    known = set(silence) | set(nonsilence)
    for word, phones in lexicon:
        for phone in phones:
            if phone not in known:
                raise EsgdError(f"{dict_dir / 'lexicon.txt'}: word '{word}' uses phone '{phone}' that is in "
                                f"neither silence_phones.txt nor nonsilence_phones.txt")
    if oov_word not in {w for w, _ in lexicon}:
        raise EsgdError(f"{dict_dir / 'lexicon.txt'}: the OOV word '{oov_word}' has no pronunciation")

    pd_lexicon = [(w, position_dependent(p)) for w, p in lexicon]
    disambig_lexicon, max_disambig = add_disambig_symbols(pd_lexicon)
    sil_disambig = f"#{max_disambig + 1}"
    disambig = [f"#{i}" for i in range(max_disambig + 2)]
    pd_silence = [p + s for p in silence for s in ("", "_B", "_E", "_I", "_S")]
    pd_nonsilence = [f"{p}_{s}" for p in nonsilence for s in POSITIONS]

    tmp = lang_dir.parent / f".{lang_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    phones_dir = tmp / "phones"
    phones_dir.mkdir(parents=True)
    phone_ids = _write_symbols(tmp / "phones.txt", ["<eps>"] + pd_silence + pd_nonsilence + disambig)
    words = sorted({w for w, _ in lexicon}, key=lambda s: s.encode())
    word_ids = _write_symbols(tmp / "words.txt", ["<eps>"] + words + ["#0", "<s>", "</s>"])
    atomic_write_text(tmp / "oov.txt", oov_word + "\n")
    atomic_write_text(tmp / "oov.int", f"{word_ids[oov_word]}\n")
    atomic_write_text(tmp / "topo", hmm_topology([phone_ids[p] for p in pd_nonsilence],
                                                  [phone_ids[p] for p in pd_silence]))

    _write_phone_list(phones_dir, "silence", pd_silence, phone_ids, csl=True)
    _write_phone_list(phones_dir, "nonsilence", pd_nonsilence, phone_ids, csl=True)
    _write_phone_list(phones_dir, "optional_silence", optional, phone_ids, csl=True)
    _write_phone_list(phones_dir, "context_indep", pd_silence, phone_ids, csl=True)
    _write_phone_list(phones_dir, "disambig", disambig, phone_ids, csl=True)
    atomic_write_text(phones_dir / "wdisambig.txt", "#0\n")
    atomic_write_text(phones_dir / "wdisambig_phones.int", f"{phone_ids['#0']}\n")
    atomic_write_text(phones_dir / "wdisambig_words.int", f"{word_ids['#0']}\n")
    sets = [[p + s for s in ("", "_B", "_E", "_I", "_S")] for p in silence]
    sets += [[f"{p}_{s}" for s in POSITIONS] for p in nonsilence]
    _write_phone_sets(phones_dir, "sets", sets, phone_ids)
    _write_phone_sets(phones_dir, "roots", sets, phone_ids, prefix="shared split ")
    questions = [[f"{p}_{s}" for p in nonsilence] for s in POSITIONS] + [pd_silence]
    _write_phone_sets(phones_dir, "extra_questions", questions, phone_ids)
    boundary = [(p, "nonword") for p in silence]
    boundary += [(f"{p}{suffix}", BOUNDARY[suffix[1]]) for p in silence + nonsilence
                 for suffix in ("_B", "_E", "_I", "_S")]
    atomic_write_text(phones_dir / "word_boundary.txt", "".join(f"{p} {b}\n" for p, b in boundary))
    atomic_write_text(phones_dir / "word_boundary.int", "".join(f"{phone_ids[p]} {b}\n" for p, b in boundary))
    atomic_write_text(phones_dir / "align_lexicon.txt", "".join(f"{w} {w} {' '.join(p)}\n" for w, p in pd_lexicon))
    atomic_write_text(phones_dir / "align_lexicon.int", "".join(
        f"{word_ids[w]} {word_ids[w]} {' '.join(str(phone_ids[x]) for x in p)}\n" for w, p in pd_lexicon))

    sil = optional[0]
    lfst = lexicon_fst(pd_lexicon, phone_ids, word_ids, sil_prob, sil)
    kaldifst.arcsort(lfst, sort_type="olabel")
    write_fst(lfst, tmp / "L.fst")
    ldisambig = lexicon_fst(disambig_lexicon, phone_ids, word_ids, sil_prob, sil, sil_disambig)
    kaldifst.add_self_loops(ldisambig, isyms=[phone_ids["#0"]], osyms=[word_ids["#0"]])
    kaldifst.arcsort(ldisambig, sort_type="olabel")
    write_fst(ldisambig, tmp / "L_disambig.fst")
    replace_dir(tmp, lang_dir)
