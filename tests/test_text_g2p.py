"""Text normalisation for the synthesised corpus and the espeak-ng G2P fallback."""
import pytest

from esgd_asr.data.synth.text import fortune_sentences, normalise_sentence
from esgd_asr.graph.g2p import espeak_g2p, ipa_to_arpabet, ipa_units
from esgd_asr.graph.lexicon import build_lexicon


@pytest.mark.parametrize("raw, expected", [
    ("In 1984, I paid $25 for 3 apples & 2 pears.", "IN NINETEEN EIGHTY FOUR I PAID TWENTY FIVE DOLLARS FOR "
     "THREE APPLES AND TWO PEARS"),
    ("\"Don't panic!\" -- said the 2nd guide.", "DON'T PANIC SAID THE SECOND GUIDE"),
    ("It costs 1,000,000 dollars", "IT COSTS ONE MILLION DOLLARS"),
    ("Use C++ or <html> please", None),
])
def test_normalise_sentence(raw, expected):
    assert normalise_sentence(raw) == expected


def test_fortunes_give_a_large_vocabulary():
    sentences = fortune_sentences(("literature", "science", "work"))
    vocab = {w for s in sentences for w in s.split()}
    assert len(sentences) > 500 and len(vocab) > 2000
    assert all(s == s.upper() and 4 <= len(s.split()) <= 18 for s in sentences)


@pytest.mark.parametrize("ipa, arpabet", [
    ("t\u200dʃˈɜːt\u200dʃ", ["CH", "ER", "CH"]),
    ("həlˈo\u200dʊ", ["HH", "AH", "L", "OW"]),
    ("θˈɔːt", ["TH", "AO", "T"]),
    ("sˈɪŋ", ["S", "IH", "NG"]),
    ("zˈɪkswɔː\u200dɹ", ["Z", "IH", "K", "S", "W", "AO", "R"]),
])
def test_ipa_to_arpabet(ipa, arpabet):
    assert ipa_to_arpabet(ipa) == arpabet


def test_ipa_units_keep_tied_letters_together():
    assert ipa_units("d\u200dʒˈʌd\u200dʒ") == ["dʒ", "ʌ", "dʒ"]


def test_unknown_ipa_is_rejected():
    with pytest.raises(ValueError, match="no ARPAbet phone"):
        ipa_to_arpabet("ʘ")


def test_espeak_pronounces_words_cmudict_lacks(tmp_path):
    prons = espeak_g2p(["BLORPTASTIC", "ZYXWAR"])
    assert prons["ZYXWAR"][:2] == ["Z", "IH"]
    assert len(prons["BLORPTASTIC"]) >= 8
    lexicon = build_lexicon({"CAT", "ZYXWAR"}, log_path=tmp_path / "g2p.log")
    assert ("CAT", ["K", "AE", "T"]) in lexicon
    assert (tmp_path / "g2p.log").read_text().startswith("ZYXWAR\tZ IH")
