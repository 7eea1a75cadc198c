"""Lexicon and lang dir: L.fst maps words to their phones; disambiguation; topology Kaldi can read."""
import kaldi_hmm_gmm  # noqa: F401  (must precede kaldifst)
import kaldifst
import pytest

from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.errors import EsgdError
from esgd_asr.graph.lang import add_disambig_symbols, position_dependent, prepare_lang
from esgd_asr.graph.lexicon import write_dict_dir

LEXICON = [
    ("<SIL>", ["SIL"]), ("<unk>", ["SPN"]),
    ("A", ["AH"]), ("A", ["EY"]), ("CAT", ["K", "AE", "T"]), ("CATS", ["K", "AE", "T", "S"]),
    ("SAT", ["S", "AE", "T"]), ("SAT'", ["S", "AE", "T"]), ("THE", ["DH", "AH"]), ("ON", ["AA", "N"]),
]


@pytest.fixture
def lang(tmp_path):
    write_dict_dir(LEXICON, tmp_path / "dict")
    prepare_lang(tmp_path / "dict", "<unk>", tmp_path / "lang", sil_prob=0.2)
    return tmp_path / "lang"


def phones_of(lang_dir, words, fst_name="L.fst"):
    """Best phone sequence L assigns to a word sequence (compose L with a word acceptor)."""
    word_ids = {w: int(i) for w, i in read_table(lang_dir / "words.txt").items()}
    id_to_phone = {int(i): p for p, i in read_table(lang_dir / "phones.txt").items()}
    lexicon = kaldifst.StdVectorFst.read(str(lang_dir / fst_name))
    words_fst = kaldifst.make_linear_acceptor([word_ids[w] for w in words])
    best = kaldifst.shortest_path(kaldifst.compose(lexicon, words_fst))
    ok, phone_ids, word_out, _ = kaldifst.get_linear_symbol_sequence(best)
    assert ok
    assert [w for w in word_out if w] == [word_ids[w] for w in words]
    return [id_to_phone[i] for i in phone_ids]


def test_lexicon_fst_maps_words_to_their_phones(lang):
    assert phones_of(lang, ["THE", "CAT", "SAT", "ON", "THE", "CATS"]) == [
        "DH_B", "AH_E", "K_B", "AE_I", "T_E", "S_B", "AE_I", "T_E", "AA_B", "N_E", "DH_B", "AH_E",
        "K_B", "AE_I", "T_I", "S_E"]


def test_lexicon_fst_allows_optional_silence_between_words(lang):
    word_ids = read_table(lang / "words.txt")
    phone_ids = read_table(lang / "phones.txt")
    lexicon = kaldifst.StdVectorFst.read(str(lang / "L.fst"))
    kaldifst.arcsort(lexicon, sort_type="ilabel")
    ph = [int(phone_ids[p]) for p in ["SIL", "K_B", "AE_I", "T_E", "SIL", "AA_B", "N_E", "SIL"]]
    phones_fst = kaldifst.make_linear_acceptor(ph)
    paths = kaldifst.compose(phones_fst, lexicon)
    ok, _, words, _ = kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(paths))
    assert ok and [w for w in words if w] == [int(word_ids["CAT"]), int(word_ids["ON"])]


def test_disambiguation_symbols_mark_homophones_and_prefixes():
    lexicon, top = add_disambig_symbols([(w, position_dependent(p)) for w, p in LEXICON])
    prons = {(w, tuple(p[:-1]) if p[-1].startswith("#") else tuple(p)): p[-1] for w, p in lexicon}
    assert prons[("SAT", ("S_B", "AE_I", "T_E"))] == "#1"
    assert prons[("SAT'", ("S_B", "AE_I", "T_E"))] == "#2"
    assert prons[("CAT", ("K_B", "AE_I", "T_E"))] == "T_E"  # not a prefix: CATS ends in T_I S_E
    assert top == 2


def test_l_disambig_keeps_the_word_mapping_and_loops_on_hash0(lang):
    assert phones_of(lang, ["SAT", "THE"], "L_disambig.fst") == ["S_B", "AE_I", "T_E", "#1", "DH_B", "AH_E"]
    disambig = read_table(lang / "phones/disambig.txt", allow_empty_value=True)
    assert list(disambig) == ["#0", "#1", "#2", "#3"]


def test_lang_dir_files_are_consistent(lang):
    phones = read_table(lang / "phones.txt")
    words = read_table(lang / "words.txt")
    assert phones["<eps>"] == "0" and words["<eps>"] == "0"
    assert list(words)[-3:] == ["#0", "<s>", "</s>"]
    assert (lang / "oov.txt").read_text().strip() == "<unk>"
    for name in ("silence", "nonsilence", "disambig", "optional_silence"):
        ints = (lang / "phones" / f"{name}.int").read_text().split()
        txt = (lang / "phones" / f"{name}.txt").read_text().split()
        assert [phones[p] for p in txt] == ints


def test_topology_is_read_by_kaldi(lang):
    phones = read_table(lang / "phones.txt")
    topo = kaldi_hmm_gmm.HmmTopology()
    topo.read((lang / "topo").read_text())
    topo.check()
    real_phones = [int(i) for p, i in phones.items() if p != "<eps>" and not p.startswith("#")]
    assert list(topo.phones) == sorted(real_phones)
    assert topo.num_pdf_classes(int(phones["SIL"])) == 5
    assert topo.num_pdf_classes(int(phones["AE_B"])) == 3


def test_phone_outside_phone_lists_is_refused(tmp_path):
    write_dict_dir(LEXICON, tmp_path / "dict")
    (tmp_path / "dict" / "lexicon.txt").write_text("<unk> SPN\n<SIL> SIL\nDOG DH AA GG\n")
    with pytest.raises(EsgdError, match="word 'DOG' uses phone 'GG'"):
        prepare_lang(tmp_path / "dict", "<unk>", tmp_path / "lang")
    assert not (tmp_path / "lang").exists()
