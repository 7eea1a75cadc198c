"""Training graphs, alignment and pdf counts of a GMM-HMM system (compile-train-graphs, align-equal-compiled,
gmm-align-compiled, analyze-counts), one job's share of the data at a time.

Usage: esgd-align compile-graphs --nj N --job J [--reuse-from SRC] <data-dir> <lang-dir> <model> <dir>
       esgd-align align --nj N --job J [--equal] [--beam 10] [--retry-beam 40] [--acoustic-scale 0.1]
                        [--transition-scale 1.0] [--self-loop-scale 0.1] [--transforms trans.J.ark]
                        <data-dir> <model> <dir>
       esgd-align counts --nj N <model> <dir>

compile-graphs writes <dir>/fsts.J.ark, fsts_tids.J.ark and fsts.J.id (what they were made from; utterances
with no transcript are skipped and counted); with --reuse-from SRC, SRC's graphs of job J are copied instead when
their fsts.J.id matches (steps/align_si.sh after training on the same data). align reads them and writes <dir>/ali.J.ark (transition-ids per utterance, a Kaldi int-vector archive); utterances whose
Viterbi search fails even with the retry beam are left out and counted, never aligned wrongly. counts writes
<dir>/pdf_counts, frames per pdf over all jobs' alignments as a Kaldi text vector `[ c0 c1 ... ]` (senone priors).
Jobs split the data dir's speakers in contiguous blocks (as Kaldi's split_data.sh).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import numpy as np

from esgd_asr.atomic import atomic_write_text
from esgd_asr.cli.options import KaldiArgumentParser, add_dataclass_options, dataclass_from_args, run_job_command
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.errors import cli_main
from esgd_asr.features.feature_source import FeatureSource, FrontEnd
from esgd_asr.gmm.align import (AlignOptions, TrainingGraphCompiler, align_job, pdf_counts, read_alignments,
                                write_graphs)
from esgd_asr.gmm.front_end import ModelFeatures
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm

log = logging.getLogger("esgd-align")


def graphs_id(model: GmmHmm, lang: LangDir, utts: list[str], text: dict[str, str]) -> str:
    """What a job's training graphs depend on: the transcripts, the lexicon, the topology and transition states."""
    h = hashlib.sha1()
    for utt in utts:
        h.update(f"{utt} {text.get(utt, '')}\n".encode())
    h.update((lang.path / "L.fst").read_bytes())
    h.update(model.topo_text.encode())
    h.update(repr(model.transitions().tuples).encode())
    return h.hexdigest()


def cmd_compile_graphs(args) -> None:
    data, out = Path(args.data_dir), Path(args.dir)
    lang = LangDir.read(args.lang_dir)
    model = GmmHmm.load(args.model)
    utts = FeatureSource(data, FrontEnd(cmvn=False)).shard(args.nj, args.job).utts
    text = read_table(data / "text", allow_empty_value=True)
    job_id = graphs_id(model, lang, utts, text)
    out.mkdir(parents=True, exist_ok=True)
    if args.reuse_from:
        src = Path(args.reuse_from)
        src_id = src / f"fsts.{args.job}.id"
        if src_id.is_file() and src_id.read_text().strip() == job_id and src.resolve() != out.resolve():
            for name in (f"fsts.{args.job}.ark", f"fsts_tids.{args.job}.ark", f"fsts.{args.job}.id"):
                shutil.copyfile(src / name, out / f".{name}.tmp")
                os.replace(out / f".{name}.tmp", out / name)
            log.info("job %d: training graphs of the same transcripts and model copied from %s", args.job, src)
            return
    compiler = TrainingGraphCompiler(model, lang)
    skipped, oov = [], 0

    def graphs():
        nonlocal oov
        for utt in utts:
            words = text.get(utt, "").split()
            if not words:
                skipped.append(utt)
                continue
            ids = lang.word_ids(words, f"{data / 'text'}: utterance '{utt}'")
            oov += sum(1 for w in words if w not in lang.words)
            yield utt, compiler.compile(ids, f"{data / 'text'}: utterance '{utt}'")

    (out / f"fsts.{args.job}.id").unlink(missing_ok=True)
    count = write_graphs(out / f"fsts.{args.job}.ark", graphs())
    atomic_write_text(out / f"fsts.{args.job}.id", job_id + "\n")
    log.info("job %d: compiled %d training graphs; %d utterances without transcript skipped%s; %d OOV words "
             "mapped to %s", args.job, count, len(skipped), f" (e.g. {skipped[0]})" if skipped else "", oov,
             lang.id2word()[lang.oov])


def cmd_align(args) -> None:
    model = GmmHmm.load(args.model)
    source = ModelFeatures(args.data_dir, model.front_end, args.transforms)
    align_job(model, source, Path(args.dir), args.job, dataclass_from_args(AlignOptions, args), args.equal,
              args.seed)


def cmd_counts(args) -> None:
    out = Path(args.dir)
    model = GmmHmm.load(args.model)
    info = model.transitions()
    alis = (ali for job in range(1, args.nj + 1) for _, ali in read_alignments(out / f"ali.{job}.ark"))
    counts = pdf_counts(alis, info, model.num_pdfs)
    atomic_write_text(out / "pdf_counts", "[ " + " ".join(map(str, counts.tolist())) + " ]\n")
    log.info("pdf counts over %d frames: %d of %d pdfs seen -> %s", int(counts.sum()),
             int(np.count_nonzero(counts)), model.num_pdfs, out / "pdf_counts")


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-align", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compile-graphs", help="training graphs of one job -> fsts.J.ark")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--job", type=int, required=True)
    p.add_argument("--reuse-from", default=None,
                   help="a dir whose graphs of this job are copied if made from the same transcripts and model")
    for name in ("data_dir", "lang_dir", "model", "dir"):
        p.add_argument(name)
    p.set_defaults(func=cmd_compile_graphs)
    p = sub.add_parser("align", help="align one job -> ali.J.ark")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--job", type=int, required=True)
    p.add_argument("--equal", action="store_true", help="equal alignment (first pass of flat-start training)")
    p.add_argument("--seed", type=int, default=0, help="seed of equal alignment")
    p.add_argument("--transforms", default=None,
                   help="per-speaker feature transforms (fMLLR trans.J.ark / .scp) applied after the model's front end")
    add_dataclass_options(p, AlignOptions)
    for name in ("data_dir", "model", "dir"):
        p.add_argument(name)
    p.set_defaults(func=cmd_align)
    p = sub.add_parser("counts", help="frames per pdf over all jobs' alignments -> pdf_counts")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("model")
    p.add_argument("dir")
    p.set_defaults(func=cmd_counts)
    return parser


@cli_main
def main(argv=None):
    run_job_command(build_parser(), argv)


if __name__ == "__main__":
    main()
