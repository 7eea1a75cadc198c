"""esgd-show-results prints the hybrid systems as the ESGD papers' Table 1: validation CE and dev / test WER."""
from esgd_asr.cli import show_results
from esgd_asr.models import DNNConfig, build_model
from esgd_asr.models.anchor import save_hybrid_model

CONFIG = DNNConfig(feat_dim=3, splice=1, hidden=[4], activations=["relu"], num_targets=5)


def test_table1_lists_the_systems_in_the_papers_order(tmp_path, capsys):
    exp = tmp_path / "exp"
    for name, ce, wer in [("esgd_dnn_anchored", 1.5, "20.10"), ("dnn", 1.75, "22.00"), ("esgd_dnn_esgd", 2.0, None)]:
        save_hybrid_model(exp / name / "final.pt", build_model(CONFIG), CONFIG, valid_ce=ce)
        if wer:
            (exp / name / "decode_test").mkdir()
            (exp / name / "decode_test" / "best_wer").write_text(f"%WER {wer} [ 1 / 5, 0 ins, 0 del, 1 sub ] x\n")
    (exp / "mono" / "decode_test").mkdir(parents=True)
    (exp / "mono" / "decode_test" / "best_wer").write_text("%WER 29.31 [ 907 / 3095 ] x\n")
    show_results.main([str(tmp_path / "data"), str(exp)])
    out = capsys.readouterr().out
    assert "mono" in out and "29.31" in out          # the WER listing is kept
    table = out[out.index("Table 1"):].splitlines()[2:]
    assert [line.split()[-4] for line in table] == ["dnn", "esgd_dnn_esgd", "esgd_dnn_anchored"]
    assert table[0].split()[-3:] == ["1.750", "-", "22.00"] and table[1].split()[-3:] == ["2.000", "-", "-"]
    assert "ESGD with anchor (single baseline)" in table[2]
