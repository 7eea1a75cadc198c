"""WER counting (kaldialign) and Kaldi's report format, checked against jiwer."""
import jiwer
import numpy as np
import pytest

from esgd_asr.decode.scoring import compute_wer


def test_wer_matches_jiwer_on_random_hypotheses():
    rng = np.random.default_rng(0)
    vocab = "A B C D E F G".split()
    refs, hyps = {}, {}
    for i in range(50):
        ref = list(rng.choice(vocab, size=rng.integers(1, 9)))
        hyp = [w for w in ref if rng.random() > 0.2]
        hyp = [w if rng.random() > 0.2 else rng.choice(vocab) for w in hyp]
        if rng.random() < 0.3:
            hyp.insert(int(rng.integers(0, len(hyp) + 1)), rng.choice(vocab))
        refs[f"u{i:02d}"], hyps[f"u{i:02d}"] = ref, hyp
    stats = compute_wer(refs, hyps)
    expected = jiwer.process_words([" ".join(r) for r in refs.values()], [" ".join(h) for h in hyps.values()])
    assert stats.wer == pytest.approx(100 * expected.wer)
    assert stats.errors == expected.substitutions + expected.deletions + expected.insertions
    assert stats.wer_line() == f"%WER {100 * expected.wer:.2f} [ {stats.errors} / {stats.ref_words}, {expected.insertions} ins, " \
        f"{expected.deletions} del, {expected.substitutions} sub ]"


def test_report_format_and_missing_hypotheses():
    refs = {"a": "X Y Z".split(), "b": "P Q".split(), "c": ["R"]}
    hyps = {"a": "X Y Z W".split(), "b": ["Q"]}
    report = compute_wer(refs, hyps).report().splitlines()
    # 1 insertion (W), 1 deletion (P), and c is missing: 1 more deletion
    assert report[0] == "%WER 50.00 [ 3 / 6, 1 ins, 2 del, 0 sub ]"
    assert report[1] == "%SER 100.00 [ 3 / 3 ]"
    assert report[2] == "Scored 3 sentences, 1 not present in hyp."
