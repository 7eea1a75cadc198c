"""esgd-show-results prints the hybrid systems as the ESGD papers' Table 1, with every row's budget; the recipe's
queries of the runs (esgd-recipe-query)."""
import pytest

from conftest import REPO
from esgd_asr.cli import show_results
from esgd_asr.hybrid.model_file import save_hybrid_model
from esgd_asr.models import DNNConfig, build_model

CONFIG = DNNConfig(feat_dim=3, splice=1, hidden=[4], activations=["relu"], num_targets=5)


def decoded(system, name, wer):
    (system / name).mkdir()
    (system / name / "best_wer").write_text(f"%WER {wer} [ 1 / 5, 0 ins, 0 del, 1 sub ] x\n")


def test_table1_lists_the_systems_in_the_papers_order_with_budgets_and_ranges(tmp_path, capsys):
    exp = tmp_path / "exp"
    save_hybrid_model(exp / "esgd_dnn_anchored" / "final.pt", build_model(CONFIG), CONFIG, valid_ce=1.5,
                      fitness_ce=1.5, top_valid_ce=[1.5], member_frames=300000, sgd_frames=1200000)
    (exp / "esgd_dnn_anchored" / "history.jsonl").write_text('{"generation": 1, "seconds": 550.5}\n'
                                                            '{"finish": "esgd", "seconds": 49.5}\n')
    decoded(exp / "esgd_dnn_anchored", "decode_test", "20.10")
    decoded(exp / "esgd_dnn_anchored", "decode_heldout", "31.40")
    save_hybrid_model(exp / "dnn" / "final.pt", build_model(CONFIG), CONFIG, valid_ce=1.75)
    decoded(exp / "dnn", "decode_test", "22.00")
    save_hybrid_model(exp / "esgd_dnn_esgd" / "final.pt", build_model(CONFIG), CONFIG, valid_ce=2.0,
                      fitness_ce=1.9, fitness_frames=20000, top_valid_ce=[2.0, 2.25], member_frames=300000,
                      sgd_frames=2400000)
    (exp / "esgd_dnn_esgd" / "history.tsv").write_text("generation\tbest\tseconds\n1\t2.1\t40\n2\t2.0\t50\n")
    decoded(exp / "esgd_dnn_esgd", "decode_test", "25.00")
    decoded(exp / "esgd_dnn_esgd", "decode_test_rank2", "24.50")
    save_hybrid_model(exp / "esgd_dnn_esgd" / "top" / "rank2.pt", build_model(CONFIG), CONFIG)
    decoded(exp / "esgd_dnn_esgd", "decode_test_rank3", "99.00")   # of an earlier, larger population: not counted
    show_results.main([str(tmp_path / "data"), str(exp)])
    out = capsys.readouterr().out
    table = out[out.index("Table 1"):].splitlines()[2:5]
    single, esgd, anchored = table
    assert "dnn" in single.split()[1:] and "esgd_dnn_esgd" in esgd.split() and "esgd_dnn_anchored" in anchored.split()
    assert "1.750" in single and "22.00" in single and single.split()[-3:] == ["-", "-", "-"]   # no budget recorded
    assert "2.000 (1.900)" in esgd and "[2.000, 2.250]" in esgd and "[24.50, 25.00]" in esgd
    assert esgd.split()[-3:] == ["0.30M", "2.40M", "1.5"]
    assert "1.500 " in anchored and "(" not in anchored.split("anchored")[-1]
    assert anchored.split()[-4:] == ["31.40", "0.30M", "1.20M", "10.0"]
    assert esgd.split()[-4] == "-"   # no held-out decode


def test_recipe_query_picks_the_better_anchor_and_names_a_missing_run(tmp_path, capsys):
    from esgd_asr.cli import recipe_query

    for name, fitness in (("anchored", 2.25), ("anchored_esgd", 2.125)):
        save_hybrid_model(tmp_path / name / "final.pt", build_model(CONFIG), CONFIG, fitness_ce=fitness)
    recipe_query.main(["better-anchor", str(tmp_path / "anchored"), str(tmp_path / "anchored_esgd")])
    assert capsys.readouterr().out == f"{tmp_path / 'anchored_esgd' / 'final.pt'}\n"
    with pytest.raises(SystemExit):
        recipe_query.main(["better-anchor", str(tmp_path / "anchored"), str(tmp_path / "iterated")])
    assert f"{tmp_path / 'iterated' / 'final.pt'}: no fitness of a finished ESGD run" in capsys.readouterr().err
    recipe_query.main(["budget", "--esgd-config", str(REPO / "conf" / "esgd.yaml"), "anchors,blstm_batches"])
    epochs, frames, lr, batch = capsys.readouterr().out.split()
    assert int(epochs) >= 1 and int(frames) >= 0 and float(lr) > 0 and batch == "16"
