"""Training graphs, equal and Viterbi alignment, and what alignments are turned into.

Training graphs (Kaldi's compile-train-graphs): the transcript as a linear word acceptor, composed with L.fst,
the context FST and H, determinized, with self-loops and no transition costs; kept in a Kaldi FST archive
(`fsts.JOB.ark`). Each alignment pass adds the current transition costs (transition scale, self-loop scale)
and runs kaldi-decoder's FasterDecoder on acoustic-scaled GMM log-likelihoods, retrying with a wider beam when
the final state is not reached (gmm-align-compiled). Alignments are transition-id sequences, one per utterance,
in a Kaldi int-vector archive (`ali.JOB.ark`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import kaldi_decoder
import kaldi_hmm_gmm as khg
import kaldifst
import kaldiio
import numpy as np

from esgd_asr.errors import EsgdError
from esgd_asr.gmm.fst_arrays import arrays_to_fst, fst_to_arrays
from esgd_asr.gmm.hmm_graph import add_transition_costs, compose_h, make_h
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm, TransitionInfo


class TrainingGraphCompiler:
    """Transcripts (word ids) -> training graphs for one model and lang dir."""

    def __init__(self, model: GmmHmm, lang: LangDir):
        lang.check_phones(model.phones(), "model")
        self.model, self.lang = model, lang
        self.lexicon = lang.read_fst("L.fst")
        kaldifst.arcsort(self.lexicon, sort_type="olabel")
        self.topo = khg.HmmTopology()
        self.topo.read(model.topo_text)
        self.info = model.transitions()

    def pdf_of(self, window: list[int], pdf_class: int) -> int:
        ok, pdf = self.model.ctx_dep.compute(phone_seq=window, pdf_class=pdf_class)
        if not ok:
            raise EsgdError(f"context dependency has no pdf for window {window}, class {pdf_class}")
        return pdf

    def compile(self, word_ids: list[int], what: str) -> kaldifst.StdVectorFst:
        words = kaldifst.make_linear_acceptor(word_ids)
        lw = kaldifst.compose(self.lexicon, words)
        if lw.num_states == 0:
            raise EsgdError(f"{what}: the lexicon has no pronunciation path for the transcript")
        clw, ilabel_info = kaldifst.compose_context(
            disambig_syms=self.lang.disambig, context_width=self.model.ctx_dep.context_width,
            central_position=self.model.ctx_dep.central_position, ifst=lw)
        h = make_h(ilabel_info, self.model.ctx_dep.central_position, self.topo, self.info, self.pdf_of,
                   self.lang.disambig)
        return arrays_to_fst(compose_h(h, clw, self.info, what))


@dataclass(frozen=True)
class AlignOptions:
    """gmm-align-compiled options (Kaldi's train_mono.sh / align_si.sh scales)."""

    beam: float = 10.0
    retry_beam: float = 40.0
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1


def with_costs(graph: kaldifst.StdVectorFst, costs: np.ndarray) -> kaldifst.StdVectorFst:
    return arrays_to_fst(add_transition_costs(fst_to_arrays(graph), costs))


def viterbi_align(graph: kaldifst.StdVectorFst, tid_loglikes: np.ndarray, opts: AlignOptions
                  ) -> tuple[list[int] | None, bool]:
    """Best transition-id sequence through a training graph (with costs) for acoustic-scaled log-likelihoods
    laid out for DecodableCtc; (None, retried) when even the retry beam does not reach a final state."""
    retried = False
    for beam in (opts.beam, opts.retry_beam):
        if beam <= 0:
            continue
        decoder = kaldi_decoder.FasterDecoder(graph, kaldi_decoder.FasterDecoderOptions(beam=beam))
        decoder.decode(kaldi_decoder.DecodableCtc(tid_loglikes))
        if decoder.reached_final():
            ok, best = decoder.get_best_path()
            if ok:
                ok, tids, _, _ = kaldifst.get_linear_symbol_sequence(best)
                if ok and len(tids) == len(tid_loglikes):
                    return list(tids), retried
        retried = True
    return None, retried


def equal_align(graph: kaldifst.StdVectorFst, num_frames: int, seed: int) -> list[int] | None:
    """A path of exactly `num_frames` transition-ids with time spread evenly (align-equal-compiled)."""
    ok, path = kaldifst.equal_align(ifst=graph, length=num_frames, rand_seed=seed, num_retries=10)
    if not ok:
        return None
    ok, tids, _, _ = kaldifst.get_linear_symbol_sequence(path)
    return list(tids) if ok and len(tids) == num_frames else None


def ali_to_pdf(tids, info: TransitionInfo) -> np.ndarray:
    """Pdf-id of every frame."""
    return info.pdf[np.asarray(tids, dtype=np.int64)]


def ali_to_phones(tids, info: TransitionInfo) -> list[tuple[int, int]]:
    """(phone, number of frames) per phone instance; a phone ends at a transition into its HMM's final state."""
    tids = np.asarray(tids, dtype=np.int64)
    ends = np.flatnonzero(info.is_final[tids]) + 1
    if len(tids) and (not len(ends) or ends[-1] != len(tids)):
        raise EsgdError("alignment does not end at the end of a phone")
    starts = np.concatenate([[0], ends[:-1]])
    return [(int(info.phone[tids[s]]), int(e - s)) for s, e in zip(starts, ends)]


def write_alignments(path: str | Path, alignments: dict[str, list[int]]) -> None:
    """Kaldi int-vector archive, written beside `path` and renamed into place."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp"
    kaldiio.save_ark(str(tmp), {utt: np.asarray(ali, dtype=np.int32) for utt, ali in alignments.items()})
    os.replace(tmp, path)


def read_alignments(path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such alignment archive")
    try:
        for utt, ali in kaldiio.load_ark(str(path)):
            yield utt, np.asarray(ali, dtype=np.int64)
    except Exception as err:  # kaldiio reports corrupt archives with assorted exception types
        raise EsgdError(f"{path}: unreadable alignment archive ({type(err).__name__}: {err})") from None


def read_graphs(path: str | Path) -> Iterator[tuple[str, kaldifst.StdVectorFst]]:
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such graph archive")
    reader = kaldifst.SequentialVectorFstReader(f"ark:{path}")
    while not reader.done:
        yield reader.key, kaldifst.StdVectorFst(reader.value)  # the reader reuses its value on next()
        reader.next()


def write_graphs(path: str | Path, graphs: Iterator[tuple[str, kaldifst.StdVectorFst]]) -> int:
    """Kaldi FST archive, written beside `path` and renamed into place; returns the number written."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp"
    writer = kaldifst.VectorFstWriter(f"ark:{tmp}")
    count = 0
    try:
        for key, fst in graphs:
            writer.write(key, fst)
            count += 1
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return count


def pdf_counts(alignments: Iterator[np.ndarray], info: TransitionInfo, num_pdfs: int) -> np.ndarray:
    """Frames per pdf over all alignments (senone counts, for priors)."""
    counts = np.zeros(num_pdfs, dtype=np.int64)
    for ali in alignments:
        counts += np.bincount(ali_to_pdf(ali, info), minlength=num_pdfs)
    return counts
