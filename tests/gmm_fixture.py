"""The tiny GMM task shared by the GMM and hybrid tests: 5 words over 7 phones, every HMM state of a phone emitting
13-dim Gaussian frames around its own mean, so a correct system recognises the words almost perfectly; its lang
dirs, data dir and a monophone system trained by steps/train_mono.sh's schedule, in-process and shortened."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import math
import shutil

import kaldifst
import kaldiio
import numpy as np

from esgd_asr.cli import align as align_cli
from esgd_asr.cli import gmm_train, train_mono
from esgd_asr.data.kaldi_dir import utt2spk_to_spk2utt, write_table
from esgd_asr.features.cmvn import cmvn_stats
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm
from esgd_asr.graph.lang import prepare_lang

LEXICON = {"BAD": "B AA D", "KID": "K IY D", "SEA": "S IY", "TAB": "T AA B", "SKI": "S K IY"}
PHONES = ["AA", "B", "D", "IY", "K", "S", "T"]
NJ = 2
REALIGN = (1, 2, 3, 5, 7)
NUM_ITERS = 9


def make_lang(root):
    dict_dir = root / "dict"
    dict_dir.mkdir()
    entries = {**LEXICON, "<SIL>": "SIL", "<unk>": "SPN"}
    (dict_dir / "lexicon.txt").write_text("".join(f"{w} {p}\n" for w, p in sorted(entries.items())))
    (dict_dir / "silence_phones.txt").write_text("SIL\nSPN\n")
    (dict_dir / "optional_silence.txt").write_text("SIL\n")
    (dict_dir / "nonsilence_phones.txt").write_text("".join(p + "\n" for p in PHONES))
    prepare_lang(dict_dir, "<unk>", root / "lang")
    # lang_test: a word loop over the five words as G
    test = root / "lang_test"
    shutil.copytree(root / "lang", test)
    words = LangDir.read(root / "lang").words
    cost = math.log(len(LEXICON) + 1)
    g = "".join(f"0 0 {words[w]} {words[w]} {cost}\n" for w in LEXICON) + f"0 {cost}\n"
    kaldifst.compile(s=g, acceptor=False).write(str(test / "G.fst"))
    return root / "lang", test


def synth_data(root, num_utts=40, seed=0):
    """Frames around a mean per (phone, HMM state); silence at both ends and sometimes between words."""
    rng = np.random.default_rng(seed)
    means = {(p, s): rng.normal(0, 3, 13) for p in PHONES + ["SIL"] for s in range(3)}
    data = root / "data"
    data.mkdir()
    text, utt2spk, feats = {}, {}, {}
    for i in range(num_utts):
        spk = f"spk{i % 4}"
        utt = f"{spk}-{i:03d}"
        words = list(rng.choice(sorted(LEXICON), size=rng.integers(2, 5)))
        segments = [("SIL", 12)]
        for w in words:
            segments += [(p, None) for p in LEXICON[w].split()]
            if rng.random() < 0.3:
                segments.append(("SIL", 8))
        segments.append(("SIL", 12))
        frames = []
        for phone, length in segments:
            for s in range(3):
                n = length // 3 if length else int(rng.integers(2, 6))
                frames.append(means[phone, s] + rng.normal(0, 1, (n, 13)))
        text[utt], utt2spk[utt], feats[utt] = " ".join(words), spk, np.concatenate(frames).astype(np.float32)
    kaldiio.save_ark(str(data / "feats.ark"), dict(sorted(feats.items())), scp=str(data / "feats.scp"))
    spk2utt = utt2spk_to_spk2utt(utt2spk)
    stats = {spk: cmvn_stats(np.concatenate([feats[u] for u in utts.split()])).numpy()
             for spk, utts in spk2utt.items()}
    kaldiio.save_ark(str(data / "cmvn.ark"), stats, scp=str(data / "cmvn.scp"))
    write_table(data / "text", text)
    write_table(data / "utt2spk", utt2spk)
    write_table(data / "spk2utt", spk2utt)
    return data


def train(data, lang, exp):
    """steps/train_mono.sh's schedule, in-process and shortened."""
    train_mono.main(["init", str(data), str(lang), str(exp)])
    for job in range(1, NJ + 1):
        align_cli.main(["compile-graphs", f"--nj={NJ}", f"--job={job}", str(data), str(lang), str(exp / "0.mdl"),
                        str(exp)])
        align_cli.main(["align", "--equal", f"--nj={NJ}", f"--job={job}", str(data), str(exp / "0.mdl"), str(exp)])
    numgauss = GmmHmm.load(exp / "0.mdl").am.num_gauss
    for x in range(NUM_ITERS):
        for job in range(1, NJ + 1):
            gmm_train.main(["acc", f"--nj={NJ}", f"--job={job}", f"--realign={x in REALIGN}", str(data), str(exp),
                            str(x)])
        gmm_train.main(["est", f"--nj={NJ}", f"--mix-up={numgauss}", f"--realigned={x == 0 or x in REALIGN}",
                         "--min-gaussian-occupancy=3", str(exp), str(x)])
        numgauss += 4
    shutil.copy(exp / f"{NUM_ITERS}.mdl", exp / "final.mdl")
