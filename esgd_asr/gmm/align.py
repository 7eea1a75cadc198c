"""Training graphs, equal and Viterbi alignment, and what alignments are turned into.

Training graphs (Kaldi's compile-train-graphs): the transcript as a linear word acceptor, composed with L.fst,
the context FST and H, determinized, with self-loops and no transition costs. A graph's input labels are made
compact, 1..K standing for the K transition-ids it uses (`TrainingGraph.tids`), so that an alignment pass scores
only the pdfs of the utterance: column k-1 of the (T, K) matrix that kaldi-decoder's DecodableCtc reads holds the
acoustic-scaled log-likelihood of label k's pdf minus label k's transition cost (transition scale, self-loop
scale), which is what Kaldi's gmm-align-compiled gets by adding the costs to the graph's arcs (they depend only on
the transition-id). Graphs are kept in a Kaldi FST archive (`fsts.JOB.ark`) with the label maps beside it
(`fsts_tids.JOB.ark`, int vectors). Alignment runs FasterDecoder and retries with a wider beam when the final
state is not reached. Alignments are transition-id sequences, one per utterance, in a Kaldi int-vector archive
(`ali.JOB.ark`).
"""
from __future__ import annotations

import gzip
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import kaldi_decoder
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import kaldifst
import kaldiio
import numpy as np
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.feature_source import FeatureSource
from esgd_asr.gmm.fst_arrays import FstArrays, arrays_to_fst
from esgd_asr.gmm.hmm_graph import HBuilder, compose_h
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm, PdfScorer, TransitionInfo


log = logging.getLogger(__name__)

@dataclass
class TrainingGraph:
    """A training graph whose input label k (1..K) stands for transition-id `tids[k - 1]`."""

    fst: kaldifst.StdVectorFst
    tids: np.ndarray  # (K,) int64

    @classmethod
    def from_arrays(cls, fa: FstArrays) -> "TrainingGraph":
        tids, local = np.unique(fa.ilabel, return_inverse=True)
        if tids.size and tids[0] == 0:  # epsilon stays 0
            tids, labels = tids[1:], local.reshape(-1)
        else:
            labels = local.reshape(-1) + 1
        fa.ilabel = labels.astype(np.int64)
        return cls(arrays_to_fst(fa), tids.astype(np.int64))

    def to_tids(self, labels) -> list[int]:
        return self.tids[np.asarray(labels, dtype=np.int64) - 1].tolist()


class TrainingGraphCompiler:
    """Transcripts (word ids) -> training graphs for one model and lang dir."""

    def __init__(self, model: GmmHmm, lang: LangDir):
        lang.check_phones(model.phones(), "model")
        self.model, self.lang = model, lang
        self.lexicon = lang.read_fst("L.fst")
        kaldifst.arcsort(self.lexicon, sort_type="olabel")
        self.info = model.transitions()
        self.h_builder = HBuilder(model.topology(), self.info, model.central_position, model.pdfs_of, lang.disambig)

    def compile(self, word_ids: list[int], what: str) -> TrainingGraph:
        words = kaldifst.make_linear_acceptor(word_ids)
        lw = kaldifst.compose(self.lexicon, words)
        if lw.num_states == 0:
            raise EsgdError(f"{what}: the lexicon has no pronunciation path for the transcript")
        clw, ilabel_info = kaldifst.compose_context(
            disambig_syms=self.lang.disambig, context_width=self.model.context_width,
            central_position=self.model.central_position, ifst=lw)
        return TrainingGraph.from_arrays(compose_h(self.h_builder.make(ilabel_info), clw, self.info, what))


@dataclass(frozen=True)
class AlignOptions:
    """gmm-align-compiled options (Kaldi's train_mono.sh / align_si.sh scales)."""

    beam: float = 10.0
    retry_beam: float = 40.0
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1


class GraphScorer:
    """(T, K) DecodableCtc matrices of a training graph: acoustic-scaled log-likelihoods of the pdfs of its labels'
    transition-ids (only those pdfs are computed, in float32) minus the labels' transition costs."""

    def __init__(self, model: GmmHmm, opts: AlignOptions):
        self.info = model.transitions()
        self.scorer = PdfScorer(model.am, dtype=torch.float32)
        self.costs = self.info.transition_costs(opts.transition_scale, opts.self_loop_scale)
        self.scale = opts.acoustic_scale

    def __call__(self, feats: torch.Tensor, graph: TrainingGraph) -> np.ndarray:
        pdfs, local = np.unique(self.info.pdf[graph.tids], return_inverse=True)
        ll = self.scorer.pdf_loglikes(feats, pdfs)[:, torch.from_numpy(local.reshape(-1))]
        return (ll * self.scale - torch.from_numpy(self.costs[graph.tids]).float()).numpy()


def viterbi_align(graph: TrainingGraph, loglikes: np.ndarray, opts: AlignOptions) -> tuple[list[int] | None, bool]:
    """Best transition-id sequence through a training graph for its (T, K) `GraphScorer` matrix; (None, retried)
    when even the retry beam does not reach a final state."""
    retried = False
    for beam in (opts.beam, opts.retry_beam):
        if beam <= 0:
            continue
        decoder = kaldi_decoder.FasterDecoder(graph.fst, kaldi_decoder.FasterDecoderOptions(beam=beam))
        decoder.decode(kaldi_decoder.DecodableCtc(loglikes))
        if decoder.reached_final():
            ok, best = decoder.get_best_path()
            if ok:
                ok, labels, _, _ = kaldifst.get_linear_symbol_sequence(best)
                if ok and len(labels) == len(loglikes):
                    return graph.to_tids(labels), retried
        retried = True
    return None, retried


def equal_align(graph: TrainingGraph, num_frames: int, seed: int) -> list[int] | None:
    """A path of exactly `num_frames` transition-ids with time spread evenly (align-equal-compiled)."""
    ok, path = kaldifst.equal_align(ifst=graph.fst, length=num_frames, rand_seed=seed, num_retries=10)
    if not ok:
        return None
    ok, labels, _, _ = kaldifst.get_linear_symbol_sequence(path)
    return graph.to_tids(labels) if ok and len(labels) == num_frames else None


def align_job(model: GmmHmm, source: FeatureSource, graph_dir: Path, job: int, opts: AlignOptions,
              equal: bool = False, seed: int = 0) -> dict[str, list[int]]:
    """Align one job's utterances (graph_dir/fsts.J.ark) and write graph_dir/ali.J.ark; failures are logged,
    counted and left out."""
    scorer = None if equal else GraphScorer(model, opts)
    alignments, failed, retried, frames = {}, [], 0, 0
    graphs = graph_dir / f"fsts.{job}.ark"
    for utt, graph in read_graphs(graphs):
        if utt not in source.feats:
            raise EsgdError(f"{graphs}: utterance '{utt}' has no features in {source.data_dir / 'feats.scp'}")
        feats = source.load(utt)
        model.check_dim(feats, f"{source.data_dir}: utterance '{utt}'")
        if equal:
            ali = equal_align(graph, feats.shape[0], (zlib.crc32(utt.encode()) + seed) % 2**31)
        else:
            ali, was_retried = viterbi_align(graph, scorer(feats, graph), opts)
            retried += was_retried
        if ali is None:
            failed.append(utt)
            log.warning("utterance '%s' (%d frames) not aligned: %s", utt, feats.shape[0],
                        "too short for its transcript" if equal else "beam search did not reach the end")
            continue
        alignments[utt] = ali
        frames += len(ali)
    write_alignments(graph_dir / f"ali.{job}.ark", alignments)
    log.info("job %d: aligned %d utterances (%d frames), %d needed the retry beam, %d failed and are skipped",
             job, len(alignments), frames, retried, len(failed))
    return alignments


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
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as f:  # Kaldi's ali.J.gz too
            for utt, ali in kaldiio.load_ark(f):
                yield utt, np.asarray(ali, dtype=np.int64)
    except Exception as err:  # kaldiio reports corrupt archives with assorted exception types
        raise EsgdError(f"{path}: unreadable alignment archive ({type(err).__name__}: {err})") from None


def tids_path(graph_archive: str | Path) -> Path:
    """fsts.J.ark -> fsts_tids.J.ark, the label maps beside a graph archive."""
    path = Path(graph_archive)
    stem, _, rest = path.name.partition(".")
    return path.parent / f"{stem}_tids.{rest}"


def read_alignment_dir(ali_dir: str | Path) -> dict[str, np.ndarray]:
    """All alignments of a system or alignment dir (ali.1.ark .. ali.N.ark, N from num_jobs), whatever the
    number of jobs that reads them."""
    ali_dir = Path(ali_dir)
    num_jobs = ali_dir / "num_jobs"
    if not num_jobs.is_file():
        raise EsgdError(f"{num_jobs}: no such file")
    try:
        nj = int(num_jobs.read_text().split()[0])
    except (ValueError, IndexError):
        raise EsgdError(f"{num_jobs}: expected the number of jobs") from None
    return {utt: ali for job in range(1, nj + 1) for utt, ali in read_alignments(ali_dir / f"ali.{job}.ark")}


def read_graphs(path: str | Path) -> Iterator[tuple[str, TrainingGraph]]:
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such graph archive")
    label_maps = read_alignments(tids_path(path))
    reader = kaldifst.SequentialVectorFstReader(f"ark:{path}")
    for key, tids in label_maps:
        if reader.done or reader.key != key:
            raise EsgdError(f"{path}: graphs and {tids_path(path)} disagree at '{key}' (rerun compile-graphs)")
        yield key, TrainingGraph(kaldifst.StdVectorFst(reader.value), tids)  # the reader reuses its value
        reader.next()
    if not reader.done:
        raise EsgdError(f"{path}: graph '{reader.key}' has no label map in {tids_path(path)}")


def write_graphs(path: str | Path, graphs: Iterator[tuple[str, TrainingGraph]]) -> int:
    """Kaldi FST archive and its label maps, written beside `path` and renamed into place; returns the number
    written."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp"
    writer = kaldifst.VectorFstWriter(f"ark:{tmp}")
    label_maps = {}
    try:
        for key, graph in graphs:
            writer.write(key, graph.fst)
            label_maps[key] = graph.tids
        writer.close()
        write_alignments(tids_path(path), label_maps)
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return len(label_maps)


def pdf_counts(alignments: Iterator[np.ndarray], info: TransitionInfo, num_pdfs: int) -> np.ndarray:
    """Frames per pdf over all alignments (senone counts, for priors)."""
    counts = np.zeros(num_pdfs, dtype=np.int64)
    for ali in alignments:
        counts += np.bincount(ali_to_pdf(ali, info), minlength=num_pdfs)
    return counts
