"""esgd-show-results: one row per system, the decoded sets (dev, test, held-out, then any other) as columns."""
from esgd_asr.cli import show_results


def write_best_wer(exp, system, decoded_set, wer):
    decode_dir = exp / system / f"decode_{decoded_set}"
    decode_dir.mkdir(parents=True)
    (decode_dir / "best_wer").write_text(f"%WER {wer} [ 1 / 5, 0 ins, 0 del, 1 sub ] x\n")


def test_wer_table_has_a_column_per_set_and_rows_in_recipe_order(tmp_path, capsys):
    exp = tmp_path / "exp"
    for system, decoded_set, wer in [("tri3", "test", "14.10"), ("mono", "heldout", "40.00"), ("mono", "dev", "30.00"),
                                     ("mono", "test", "27.50"), ("dnn", "test_ood", "55.00"), ("blstm", "dev", "9.00")]:
        write_best_wer(exp, system, decoded_set, wer)
    show_results.main([str(tmp_path / "data"), str(exp)])
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("system"))
    assert lines[header].split() == ["system", "dev", "WER%", "test", "WER%", "heldout", "WER%", "test_ood", "WER%"]
    rows = [line.split() for line in lines[header + 1:header + 5]]
    assert rows == [["mono", "30.00", "27.50", "40.00", "-"], ["tri3", "-", "14.10", "-", "-"],
                    ["dnn", "-", "-", "-", "55.00"], ["blstm", "9.00", "-", "-", "-"]]
