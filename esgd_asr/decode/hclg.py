"""HCLG = H o C o L_disambig o G with kaldifst, as Kaldi's utils/mkgraph.sh builds it.

LG = L_disambig o G, determinized (log semiring) and minimized; CLG from `kaldifst.compose_context` with the
model's context width and central position (1 and 0 for a monophone system, so C only relabels; 3 and 1 for a
triphone tree); H o CLG determinized, disambiguation transition-ids removed, self-loops added (not reordered) and
transition costs added with `--transition-scale` / `--self-loop-scale` (Kaldi's defaults 1.0 / 0.1). Input
labels are transition-ids, so lattices and best paths give alignments directly; `disambig_tid.int` lists the
labels that stood for disambiguation symbols before they were removed.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import zipfile
from pathlib import Path

import kaldifst
import numpy as np

from esgd_asr.atomic import atomic_path, atomic_write_text, replace_dir, write_fst
from esgd_asr.errors import EsgdError
from esgd_asr.gmm.fst_arrays import FstArrays, arrays_to_fst, fst_to_arrays
from esgd_asr.gmm.hmm_graph import HBuilder, add_transition_costs, compose_h, disambig_tid
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm

log = logging.getLogger(__name__)


def make_hclg(lang: LangDir, model: GmmHmm, transition_scale: float = 1.0, self_loop_scale: float = 0.1
              ) -> kaldifst.StdVectorFst:
    """The decoding graph of `model` for the lexicon and grammar of `lang` (which must hold G.fst)."""
    lang.check_phones(model.phones(), "model")
    lexicon = lang.read_fst("L_disambig.fst")
    grammar = lang.read_fst("G.fst")
    kaldifst.arcsort(lexicon, sort_type="olabel")
    kaldifst.arcsort(grammar, sort_type="ilabel")
    lg = kaldifst.compose(lexicon, grammar)
    if lg.num_states == 0:
        raise EsgdError(f"{lang.path}: L_disambig.fst o G.fst is empty (do words.txt of L and G agree?)")
    kaldifst.determinize_star(lg, use_log=True)
    kaldifst.minimize_encoded(lg)
    clg, ilabel_info = kaldifst.compose_context(
        disambig_syms=lang.disambig, context_width=model.context_width,
        central_position=model.central_position, ifst=lg)
    info = model.transitions()
    h = HBuilder(model.topology(), info, model.central_position, model.pdfs_of, lang.disambig).make(ilabel_info)
    hclg = compose_h(h, clg, info, str(lang.path))
    hclg = add_transition_costs(hclg, info.transition_costs(transition_scale, self_loop_scale))
    fst = arrays_to_fst(hclg)
    kaldifst.arcsort(fst, sort_type="ilabel")
    return fst


def write_graph_dir(graph_dir: str | Path, hclg: kaldifst.StdVectorFst, lang: LangDir, model: GmmHmm) -> None:
    """HCLG.fst, words.txt, phones.txt, phones/ (word boundaries, silence, ...), disambig_tid.int; built beside
    `graph_dir` and moved into place."""
    graph_dir = Path(graph_dir)
    tmp = graph_dir.parent / f".{graph_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_fst(hclg, tmp / "HCLG.fst")
    for name in ("words.txt", "phones.txt"):
        shutil.copy(lang.path / name, tmp / name)
    shutil.copytree(lang.path / "phones", tmp / "phones")
    num_tids = model.trans_model.num_transition_ids
    tids = [disambig_tid(num_tids, lang.disambig, p) for p in lang.disambig + ([0] if model.context_width > 1 else [])]
    atomic_write_text(tmp / "disambig_tid.int", "".join(f"{t}\n" for t in tids))
    atomic_write_text(tmp / "num_pdfs", f"{model.num_pdfs}\n")
    replace_dir(tmp, graph_dir)


def hclg_path(graph_dir: str | Path) -> Path:
    path = Path(graph_dir) / "HCLG.fst"
    if not path.is_file():
        raise EsgdError(f"{path}: no such file (run steps/mkgraph.sh)")
    return path


def read_hclg(graph_dir: str | Path) -> kaldifst.StdVectorFst:
    """<graph-dir>/HCLG.fst: ours (a vector FST) or Kaldi's mkgraph.sh output (a const FST, converted)."""
    path = hclg_path(graph_dir)
    with open(path, "rb") as f:
        const = b"const" in f.read(32)  # OpenFst header: magic number, then the FST type's name
    try:
        return kaldifst.StdVectorFst(kaldifst.StdConstFst.read(str(path))) if const else \
            kaldifst.StdVectorFst.read(str(path))
    except RuntimeError as err:
        raise EsgdError(f"{path}: cannot read FST ({err})") from None


def read_hclg_arrays(graph_dir: str | Path) -> FstArrays:
    """<graph-dir>/HCLG.fst as the search's arrays, through a cache beside it (HCLG.arrays.npz, made by the first
    read and used while HCLG.fst keeps its size and modification time): converting the FST costs several seconds a
    decoding job (1.5 M arcs: about 7 s), loading the arrays a fraction of one. A graph dir that cannot be written
    is converted on every read."""
    path = hclg_path(graph_dir)
    cache = path.with_name("HCLG.arrays.npz")
    info = path.stat()
    stamp = np.array([info.st_size, info.st_mtime_ns], dtype=np.int64)
    try:
        with np.load(cache, allow_pickle=False) as z:
            if np.array_equal(z["stamp"], stamp):
                fields = {f.name: z[f.name] for f in dataclasses.fields(FstArrays)}
                return FstArrays(**{**fields, "start": int(fields["start"]), "num_states": int(fields["num_states"])})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass  # no cache yet, or one that cannot be read: converted again below
    arrays = fst_to_arrays(read_hclg(graph_dir))
    try:
        with atomic_path(cache, suffix=".npz") as tmp:
            np.savez(tmp, stamp=stamp, **dataclasses.asdict(arrays))
    except OSError as err:
        log.info("%s: not cached (%s)", cache, err.strerror)
    return arrays


def check_graph_model(graph_dir: str | Path, num_pdfs: int) -> None:
    """The graph must have been made for a model with `num_pdfs` pdfs (Kaldi checks the same)."""
    path = Path(graph_dir) / "num_pdfs"
    if path.is_file() and int(path.read_text().split()[0]) != num_pdfs:
        raise EsgdError(f"{path}: graph was made for {path.read_text().strip()} pdfs, the model has "
                        f"{num_pdfs}; rerun steps/mkgraph.sh")
