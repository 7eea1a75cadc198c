"""The one reader of Kaldi option files (`--name=value` lines): commands' --config, the tree's and the LDA's
options."""
from pathlib import Path

import pytest

from esgd_asr.cli.recipe_query import main as recipe_query
from esgd_asr.errors import EsgdError
from esgd_asr.gmm.tree import TreeOptions
from esgd_asr.option_file import expand_option_files, read_option_file

REPO = Path(__file__).resolve().parents[1]


def test_reads_options_in_order_without_comments(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("# a comment\n--thresh=10  # trailing comment\n\n  --thresh=20\n--pdf-class-first=false\n")
    assert read_option_file(conf) == ["--thresh=10", "--thresh=20", "--pdf-class-first=false"]
    assert TreeOptions.from_conf(conf) == TreeOptions(thresh=20.0, pdf_class_first=False)  # the later line wins


def test_bad_lines_and_missing_files_name_the_file(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("--thresh=1\nthresh=2\n")
    with pytest.raises(EsgdError, match=r"bad.conf:2: expected --name=value, got 'thresh=2'"):
        read_option_file(conf)
    conf.write_text("--thresh 2\n")
    with pytest.raises(EsgdError, match=r"bad.conf:1: expected --name=value"):
        TreeOptions.from_conf(conf)
    with pytest.raises(EsgdError, match="missing.conf: config file not found"):
        read_option_file(tmp_path / "missing.conf")


def test_config_files_expand_where_the_command_line_overrides_them(tmp_path):
    first, second = tmp_path / "1.conf", tmp_path / "2.conf"
    first.write_text("--dim=30\n")
    second.write_text("--dim=20\n")
    argv = ["acc-lda", "--config", str(first), "--dim=10", f"--config={second}", "dir"]
    assert expand_option_files(argv) == ["--dim=30", "--dim=20", "acc-lda", "--dim=10", "dir"]
    assert expand_option_files(argv, after=1) == ["acc-lda", "--dim=30", "--dim=20", "--dim=10", "dir"]


def test_lda_context_is_read_as_the_lda_trainer_reads_it(tmp_path, capsys):
    recipe_query(["lda-context", str(REPO / "conf/lda.conf")])
    assert capsys.readouterr().out == "4 4\n"
    conf = tmp_path / "lda.conf"
    conf.write_text("--left-context=3\n--left-context=2  # the later wins\n")
    recipe_query(["lda-context", str(conf)])
    assert capsys.readouterr().out == "2 4\n"  # right: LdaMlltOptions' default
    conf.write_text("--left-contxt=3\n")
    with pytest.raises(SystemExit):
        recipe_query(["lda-context", str(conf)])
    assert "lda.conf: unrecognized arguments: --left-contxt=3" in capsys.readouterr().err
