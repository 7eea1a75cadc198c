"""The n-gram LM: normalised distributions, perplexity, G.fst over the lang dir's words."""
import kaldi_hmm_gmm  # noqa: F401  (must precede kaldifst)
import kaldifst
import pytest

from arpa_reference import ArpaModel
from esgd_asr.cli.format_lm import main as format_lm
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.errors import EsgdError
from esgd_asr.graph.lang import prepare_lang
from esgd_asr.graph.lexicon import write_dict_dir
from esgd_asr.graph.lm import perplexity, train_arpa

SENTENCES = ["THE CAT SAT ON THE MAT", "THE DOG SAT ON THE LOG", "A CAT AND A DOG", "THE CAT ATE THE DOG",
             "ON THE MAT SAT A CAT", "THE LOG SAT", "A DOG ATE", "THE MAT AND THE LOG"]


@pytest.fixture
def arpa(tmp_path):
    train_arpa(SENTENCES, 3, tmp_path / "lm.arpa")
    return tmp_path / "lm.arpa"


def test_every_history_distribution_sums_to_one(arpa):
    lm = ArpaModel(arpa)
    assert lm.order == 3
    histories = [()] + [h for h in lm.prob if len(h) < 3 and h[-1] != "</s>"]
    assert len(histories) > 20
    for history in histories:
        assert lm.next_word_mass(history) == pytest.approx(1.0, abs=1e-3), history


def test_perplexity_matches_an_independent_evaluation(arpa):
    dev = ["THE DOG SAT ON THE MAT", "A CAT ATE THE LOG"]
    report = perplexity(arpa, dev)
    lm = ArpaModel(arpa)
    log10 = sum(lm.sentence_log10_prob(s.split()) for s in dev)
    n_tokens = sum(len(s.split()) + 1 for s in dev)
    assert report["ppl"] == pytest.approx(10 ** (-log10 / n_tokens), rel=1e-4)
    assert 1 < report["ppl"] < 12  # 11 words + </s>: far below a uniform model


def test_g_fst_accepts_training_sentences(arpa, tmp_path):
    lexicon = [("<SIL>", ["SIL"]), ("<unk>", ["SPN"])] + [
        (w, list(w.replace("'", ""))[:3]) for w in sorted({w for s in SENTENCES for w in s.split()})]
    write_dict_dir(lexicon, tmp_path / "dict")
    prepare_lang(tmp_path / "dict", "<unk>", tmp_path / "lang")
    format_lm([str(tmp_path / "lang"), str(arpa), str(tmp_path / "lang_test")])
    words = {w: int(i) for w, i in read_table(tmp_path / "lang_test" / "words.txt").items()}
    grammar = kaldifst.StdVectorFst.read(str(tmp_path / "lang_test" / "G.fst"))
    lm = ArpaModel(arpa)
    for sentence in SENTENCES[:3]:
        acceptor = kaldifst.make_linear_acceptor([words[w] for w in sentence.split()])
        kaldifst.arcsort(grammar, sort_type="ilabel")
        best = kaldifst.shortest_path(kaldifst.compose(acceptor, grammar))
        ok, _, _, weight = kaldifst.get_linear_symbol_sequence(best)
        assert ok
        # the best path through G costs at most the exact LM cost (back-off paths are alternatives)
        assert weight.value <= -lm.sentence_log10_prob(sentence.split()) * 2.302585 + 1e-3


def test_lm_word_missing_from_lexicon_is_refused(arpa, tmp_path):
    write_dict_dir([("<SIL>", ["SIL"]), ("<unk>", ["SPN"]), ("THE", ["DH", "AH"])], tmp_path / "dict")
    prepare_lang(tmp_path / "dict", "<unk>", tmp_path / "lang")
    with pytest.raises(SystemExit):
        format_lm([str(tmp_path / "lang"), str(arpa), str(tmp_path / "lang_test")])
    assert not (tmp_path / "lang_test").exists()


def test_empty_training_text_is_refused(tmp_path):
    with pytest.raises(EsgdError, match="no LM training text"):
        train_arpa([], 3, tmp_path / "lm.arpa")
