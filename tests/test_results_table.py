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


def test_stage_wall_times_from_the_markers(tmp_path, capsys):
    stages = tmp_path / "exp" / ".stages"
    stages.mkdir(parents=True)
    (stages / "1.data").write_text("--corpus=synth\ncommand=stage_data\nwall_seconds=61.4\n"
                                   "finished=2025-01-02 03:04:05.123456789\n")
    (stages / "11.tri3").write_text("command=stage_tri3\nwall_seconds=3725.0\nfinished=2025-01-02 05:00:00.5\n")
    (stages / "12.dnn.running").write_text("command=stage_nnet dnn\n")
    (stages / "2.validate").write_text("an older recipe's marker, without times\n")
    show_results.main([str(tmp_path / "data"), str(tmp_path / "exp")])
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("Stage wall times (exp/.stages)")
    assert [line.split() for line in lines[start + 2:]] == [
        ["1", "data", "0:01:01", "2025-01-02", "03:04:05"], ["11", "tri3", "1:02:05", "2025-01-02", "05:00:00"],
        ["12", "dnn", "-", "running", "or", "stopped"], ["total", "1:03:06"]]
