"""A tiny hybrid task for the DNN / BiLSTM tests: the monophone system of gmm_fixture (5 words, 13-dim frames)
with its alignments split by speaker into a training (spk0-2) and a validation (spk3) alignment dir, a decoding
graph, and online i-vectors (a noisy speaker code, one row per 5 frames)."""
import shutil
from pathlib import Path

import kaldiio
import numpy as np

from esgd_asr.cli import mkgraph
from esgd_asr.gmm.align import read_alignments, write_alignments
from gmm_fixture import make_lang, synth_data, train

REPO = Path(__file__).resolve().parents[1]
IVECTOR_DIM = 3
IVECTOR_PERIOD = 5


def split_alignments(exp: Path, out: Path, keep) -> Path:
    out.mkdir(parents=True)
    shutil.copy(exp / "final.mdl", out / "final.mdl")
    alignments = {utt: ali for path in sorted(exp.glob("ali.*.ark")) for utt, ali in read_alignments(path)
                  if keep(utt)}
    write_alignments(out / "ali.1.ark", alignments)
    (out / "num_jobs").write_text("1\n")
    return out


def write_ivectors(data: Path, out: Path) -> Path:
    out.mkdir(parents=True)
    rng = np.random.default_rng(1)
    matrices = {}
    for utt, feats in kaldiio.load_scp(str(data / "feats.scp")).items():
        code = float(utt[3])  # spkN-...
        rows = -(-len(feats) // IVECTOR_PERIOD)
        matrices[utt] = (code + 0.1 * rng.normal(size=(rows, IVECTOR_DIM))).astype(np.float32)
    kaldiio.save_ark(str(out / "ivector_online.ark"), matrices, scp=str(out / "ivector_online.scp"))
    (out / "ivector_period").write_text(f"{IVECTOR_PERIOD}\n")
    return out


def make_hybrid_task(root: Path) -> dict:
    lang, lang_test = make_lang(root)
    data = synth_data(root)
    exp = root / "exp" / "mono"
    train(data, lang, exp)
    mkgraph.main([str(lang_test), str(exp / "final.mdl"), str(exp / "graph")])
    return {"root": root, "lang": lang, "lang_test": lang_test, "data": data, "exp": exp, "graph": exp / "graph",
            "train_ali": split_alignments(exp, root / "exp" / "ali_train", lambda u: not u.startswith("spk3")),
            "valid_ali": split_alignments(exp, root / "exp" / "ali_valid", lambda u: u.startswith("spk3")),
            "ivectors": write_ivectors(data, root / "exp" / "ivectors")}


# esgd-train-esgd options for the tiny task: the repository's configs and a small, fast population
CONFIGS = ["--esgd-config", str(REPO / "conf/esgd.yaml"), "--nnet-config", str(REPO / "conf/dnn.yaml")]
TINY = {"mu": 5, "offspring": 8, "generations": 2, "pool.batch_sizes": [32, 64], "pool.lr_ranges.sgd": [0.05, 0.5],
        "pool.lr_ranges.adam": [1e-3, 1e-2], "finetune.lr": 0.05, "finetune.max_epochs": 1}


def options(values: dict) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--esgd-opt", f"{key}={value}")]
