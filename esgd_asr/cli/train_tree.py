"""The tree steps of triphone training (Kaldi's acc-tree-stats, sum-tree-stats, cluster-phones + compile-questions,
build-tree, gmm-init-model, convert-ali), behind steps/train_deltas.sh, train_lda_mllt.sh and train_sat.sh.

Usage: esgd-train-tree acc --nj N --job J [front-end options] <data-dir> <lang-dir> <ali-dir> <dir>
       esgd-train-tree build --nj N [--tree-config conf/tree.conf] [--num-leaves L] [--lda-mat ...]
                             <lang-dir> <ali-dir> <dir>
       esgd-train-tree convert-ali --nj N --job J <data-dir> <ali-dir> <dir>
Front-end options: [--lda-mat final.mat --left-context 4 --right-context 4] [--transforms trans.J.ark]

acc:   statistics per (left, centre, right, pdf-class) event of job J's frames, from the alignments
       <ali-dir>/ali.*.ark of the previous system (<ali-dir>/final.mdl); context-independent phones
       (phones/context_indep.int) record no context -> <dir>/J.treeacc.
build: sums the jobs' statistics (-> treeacc), derives questions by clustering phones/sets.int (+
       phones/extra_questions.int; -> questions.int), builds the tree to --num-leaves (-> tree), and makes the
       new model: the tree's TransitionModel and one Gaussian per pdf from its statistics (-> 1.mdl).
convert-ali: maps the alignments of job J's utterances (from all of <ali-dir>/ali.*.ark) to the transition-ids of <dir>/1.mdl (same phones and HMM states, pdfs
       from the new tree) -> <dir>/ali.J.ark.
The new system's features: the previous model's front end, or with --lda-mat per-speaker CMVN, splicing and that
matrix (LDA+MLLT systems); then the speaker transforms of --transforms (SAT).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import numpy as np

from esgd_asr.cli.options import KaldiArgumentParser, parse_bool, run_job_command
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.affine_io import read_matrix
from esgd_asr.gmm.align import read_alignment_dir, write_alignments
from esgd_asr.gmm.front_end import LdaFrontEnd, ModelFeatures
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm, TransitionInfo, init_model_from_tree
from esgd_asr.gmm.questions import lang_questions, read_int_sets, write_int_sets
from esgd_asr.gmm.tree import (ContextTree, TreeOptions, TreeStats, TreeStatsAccumulator, alignment_to_phone_states,
                               build_tree, num_pdf_classes_of, read_roots, transition_id_tables)

log = logging.getLogger("esgd-train-tree")


def new_front_end(args, old: GmmHmm):
    """The new system's front end: LDA(+MLLT) from --lda-mat, else the previous model's."""
    if not args.lda_mat:
        return old.front_end
    cmvn = getattr(old.front_end, "cmvn", True)
    return LdaFrontEnd(read_matrix(args.lda_mat), args.left_context, args.right_context, cmvn)


def cmd_acc(args) -> None:
    ali_dir, out = Path(args.ali_dir), Path(args.dir)
    lang = LangDir.read(args.lang_dir)
    old = GmmHmm.load(ali_dir / "final.mdl")
    lang.check_phones(old.phones(), str(ali_dir / "final.mdl"))
    tables = transition_id_tables(old.transitions(), old.topology())
    ci = [p for row in read_int_sets(lang.path / "phones/context_indep.int") for p in row]
    source = ModelFeatures(args.data_dir, new_front_end(args, old), args.transforms).shard(args.nj, args.job)
    acc = TreeStatsAccumulator(ci_phones=ci, context_width=3, central_position=1, var_floor=args.var_floor)
    alignments = read_alignment_dir(ali_dir)
    used = 0
    for utt in source.utts:
        if utt not in alignments:
            continue
        feats = source.load(utt)
        ali = alignments[utt]
        if len(ali) != feats.shape[0]:
            raise EsgdError(f"{ali_dir}: the alignment of utterance '{utt}' has {len(ali)} frames, its "
                            f"features {feats.shape[0]}")
        acc.add(feats.double().numpy(), *alignment_to_phone_states(ali, tables))
        used += 1
    out.mkdir(parents=True, exist_ok=True)
    stats = acc.result()
    stats.save(out / f"{args.job}.treeacc")
    log.info("job %d: tree statistics of %d utterances, %.0f frames, %d events -> %s", args.job, used,
             stats.num_frames, len(stats), out / f"{args.job}.treeacc")


def cmd_build(args) -> None:
    ali_dir, out = Path(args.ali_dir), Path(args.dir)
    lang = LangDir.read(args.lang_dir)
    old = GmmHmm.load(ali_dir / "final.mdl")
    parts = [out / f"{job}.treeacc" for job in range(1, args.nj + 1)]
    stats = TreeStats.load(parts[0])
    for path in parts[1:]:
        stats = stats + TreeStats.load(path)
    if not len(stats):
        raise EsgdError(f"{out}: the tree statistics are empty (no aligned utterances?)")
    stats.save(out / "treeacc")
    topo = old.topology()
    num_pdf_classes = num_pdf_classes_of(topo)
    questions_text, questions = lang_questions(stats, lang.path, max(num_pdf_classes.values()), seed=args.seed)
    write_int_sets(out / "questions.int", questions_text)
    opts = TreeOptions.from_conf(args.tree_config) if args.tree_config else TreeOptions()
    overrides = {name: getattr(args, name) for name in ("num_leaves", "thresh", "cluster_thresh", "pdf_class_first")
                 if getattr(args, name) is not None}
    opts = dataclasses.replace(opts, **overrides)
    ci = [p for row in read_int_sets(lang.path / "phones/context_indep.int") for p in row]
    tree, report = build_tree(stats, read_roots(lang.path / "phones/roots.int"), questions, num_pdf_classes, opts,
                              ci_phones=ci)
    tree.save(out / "tree")
    model = init_model_from_tree(old.topo_text, tree, tree.pdf_stats(stats), new_front_end(args, old),
                                 var_floor=stats.var_floor)
    model.save(out / "1.mdl")
    for path in parts:
        path.unlink()
    log.info("tree: %s; %d questions; %s: %d pdfs, %d transition-ids, feature dim %d", report.summary(),
             len(questions_text), out / "1.mdl", model.num_pdfs, model.trans_model.num_transition_ids, model.dim)


def convert_alignment(tids: np.ndarray, old: TransitionInfo, tables, tree: ContextTree, new: TransitionInfo,
                      topo) -> np.ndarray:
    """Kaldi's ConvertAlignment for one utterance: the same phones, HMM states and transitions within them, with
    the transition states of the new model's pdfs (from its tree, in each phone's context)."""
    phones, _, starts = alignment_to_phone_states(tids, tables)
    tstate = old.tstate[tids]
    hmm_state = np.asarray(old.tuples, dtype=np.int64)[tstate - 1, 1]
    trans_index = tids - old.first_tid[tstate]
    instance = np.cumsum(starts) - 1
    inst_phone = phones[starts]
    N, P = tree.context_width, tree.central_position
    padded = np.concatenate([np.zeros(P, np.int64), inst_phone, np.zeros(N - 1 - P, np.int64)])
    windows = np.stack([padded[k:k + len(inst_phone)] for k in range(N)], 1)[instance]
    # per (phone, hmm state): its forward and self-loop pdf-classes
    pdf_classes = np.zeros((int(phones.max()) + 1, max(len(topo.topology_for_phone(p)) for p in topo.phones), 2),
                           dtype=np.int64)
    for phone in np.unique(phones).tolist():
        hmm = topo.topology_for_phone(phone)
        for h in range(len(hmm) - 1):
            pdf_classes[phone, h] = hmm[h].forward_pdf_class, hmm[h].self_loop_pdf_class
    forward_cls, loop_cls = pdf_classes[phones, hmm_state, 0], pdf_classes[phones, hmm_state, 1]
    forward_pdf = tree.map_events(np.concatenate([windows, forward_cls[:, None]], 1))
    loop_pdf = tree.map_events(np.concatenate([windows, loop_cls[:, None]], 1))
    if (forward_pdf < 0).any() or (loop_pdf < 0).any():
        raise EsgdError("the new tree has no pdf for a context of the alignment")
    keys = np.stack([phones, hmm_state, forward_pdf, loop_pdf], 1)
    table = np.asarray(new.tuples, dtype=np.int64)  # sorted, as Kaldi keeps them
    tstate = _row_search(table, keys) + 1
    if (tstate == 0).any():
        bad = keys[np.flatnonzero(tstate == 0)[0]].tolist()
        raise EsgdError(f"the new transition model has no transition state {tuple(bad)}")
    return new.first_tid[tstate] + trans_index


def _row_search(sorted_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Index of each of `rows` in the lexicographically sorted unique `sorted_rows`, -1 where absent."""
    scale = np.maximum(sorted_rows.max(0), rows.max(0)) + 1
    def code(r):
        out = np.zeros(len(r), dtype=np.int64)
        for c in range(r.shape[1]):
            out = out * scale[c] + r[:, c]
        return out
    table, query = code(sorted_rows), code(rows)
    pos = np.clip(np.searchsorted(table, query), 0, len(table) - 1)
    return np.where(table[pos] == query, pos, -1)


def cmd_convert_ali(args) -> None:
    ali_dir, out = Path(args.ali_dir), Path(args.dir)
    old = GmmHmm.load(ali_dir / "final.mdl")
    new = GmmHmm.load(out / "1.mdl")
    if not isinstance(new.ctx_dep, ContextTree):
        raise EsgdError(f"{out / '1.mdl'}: convert-ali needs a model with a context tree")
    old_info, new_info = old.transitions(), new.transitions()
    tables = transition_id_tables(old_info, old.topology())
    topo = new.topology()
    alignments = read_alignment_dir(ali_dir)
    utts = ModelFeatures(args.data_dir, new.front_end).shard(args.nj, args.job).utts
    converted = {utt: convert_alignment(alignments[utt], old_info, tables, new.ctx_dep, new_info, topo)
                 for utt in utts if utt in alignments}
    write_alignments(out / f"ali.{args.job}.ark", converted)
    log.info("job %d: converted %d alignments (%d frames) from %s to %s", args.job, len(converted),
             sum(len(a) for a in converted.values()), ali_dir / "final.mdl", out / "1.mdl")


def add_front_end_options(p, transforms: bool) -> None:
    p.add_argument("--lda-mat", default=None, help="LDA(+MLLT) matrix of the new system (spliced CMVN'd features)")
    p.add_argument("--left-context", type=int, default=4, help="frames spliced on the left (with --lda-mat)")
    p.add_argument("--right-context", type=int, default=4, help="frames spliced on the right (with --lda-mat)")
    if transforms:
        p.add_argument("--transforms", default=None,
                       help="per-speaker feature transforms (fMLLR trans.J.ark / .scp)")


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-train-tree", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("acc", help="tree statistics of one job -> J.treeacc")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--job", type=int, required=True)
    add_front_end_options(p, transforms=True)
    p.add_argument("--var-floor", type=float, default=1e-4,
                   help="variance floor of the tree-building objective and of the initial Gaussians (Kaldi: 0.01, "
                        "for MFCC scales; the delta-deltas of this PLP have global variances near 0.005)")
    for name in ("data_dir", "lang_dir", "ali_dir", "dir"):
        p.add_argument(name)
    p.set_defaults(func=cmd_acc)
    p = sub.add_parser("build", help="questions, tree and initial model -> questions.int, tree, 1.mdl")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--tree-config", default=None, help="build-tree options, --name=value lines (conf/tree.conf)")
    p.add_argument("--num-leaves", "--max-leaves", type=int, default=None,
                   help="target number of leaves (pdfs); overrides --tree-config")
    p.add_argument("--thresh", type=float, default=None, help="minimum log-likelihood gain of a split")
    p.add_argument("--cluster-thresh", type=float, default=None,
                   help="merge leaves costing less than this (-1: the smallest split gain)")
    p.add_argument("--pdf-class-first", type=parse_bool, default=None,
                   help="separate the HMM states of shared roots first (true|false)")
    p.add_argument("--seed", type=int, default=0, help="seed of the phone clustering's restarts")
    add_front_end_options(p, transforms=False)
    for name in ("lang_dir", "ali_dir", "dir"):
        p.add_argument(name)
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("convert-ali", help="alignments of the previous system in the new model -> ali.J.ark")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--job", type=int, required=True)
    p.add_argument("data_dir")
    p.add_argument("ali_dir")
    p.add_argument("dir")
    p.set_defaults(func=cmd_convert_ali)
    return parser


@cli_main
def main(argv=None):
    run_job_command(build_parser(), argv)


if __name__ == "__main__":
    main()
